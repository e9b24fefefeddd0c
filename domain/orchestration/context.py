"""The saga (and step) the current task is working on, so that whoever records what happens (logs,
traces) can tell which saga it is about without every call passing it along. A driver task runs in a
copy of its creator's context, so what it sets here is its own."""

from __future__ import annotations

from contextvars import ContextVar

current_saga: ContextVar[str | None] = ContextVar("current_saga", default=None)
current_step: ContextVar[str | None] = ContextVar("current_step", default=None)
