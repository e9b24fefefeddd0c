"""Outbound adapters: what ordersaga sends to other systems (webhooks, the event stream, a remote
warehouse). Each signs and sends; what to send, and when, comes from the journal."""

from importlib.metadata import version

# Every request sent out says what sent it.
USER_AGENT = f"ordersaga/{version('ordersaga')}"
