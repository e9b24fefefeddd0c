"""The peer side of the saga benchmark: the same four-step order saga on DBOS Transact."""
