"""The GraphQL schema: types, one module per area of operations, subscriptions, input checks and
error reporting."""
