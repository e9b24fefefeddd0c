"""The application service that runs sagas: driver tasks, timers, steps, interventions, waiting for
outcomes and lease rounds, over the ports of domain/ports.py."""
