"""Outbound adapters: what ordersaga sends to other systems (webhooks, the event stream, a remote
warehouse). Each signs and sends; what to send, and when, comes from the journal."""
