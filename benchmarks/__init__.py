"""The benchmark harness: ordersaga (engine only and full stack) beside DBOS Transact, with ceilings."""
