"""The edge of ordersaga: the ASGI app, the GraphQL schema, the command line, the composition root."""
