"""Several processes over one PostgreSQL: saga leases, commit notifications and the listener that
hears other processes' commits."""
