"""The read side: the projection of sagas into read tables, the queries over them, analytics,
paging and the rebuild of projections from the journal."""
