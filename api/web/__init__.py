"""The HTTP and WebSocket edge: the ASGI app, the transports held to their specifications, GraphiQL
and the console's files."""
