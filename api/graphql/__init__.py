"""The GraphQL schema: types, one module per area of operations, subscriptions, Relay's paging, and
(`edge/`) the rules a request meets before its resolvers, its input checks and error reporting."""
