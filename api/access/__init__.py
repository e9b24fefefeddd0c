"""Who may do what: bearer tokens, the rules table, the guard that enforces it, rate limits."""
