"""The `ordersaga` subcommands, one module per group: serve.py (with serve_options.py and
auth_options.py), database.py (migrate, projections rebuild), tokens.py (token), schema.py
(export-schema). api/cli.py puts them together."""
