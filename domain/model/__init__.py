"""The pure model: values, the order saga (events, state, fold, decider), allocation, shipment,
interventions and the problems a request can have. No tasks, no clocks, no I/O."""
