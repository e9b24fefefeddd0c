"""What a participant answers a step's command: done, taken to answer later, refused, or not now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from domain.model.values import Pick


@dataclass(frozen=True, slots=True)
class Succeeded:
    picks: tuple[Pick, ...] = ()
    # What a remote warehouse calls the shipment it created.
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A remote warehouse took the command and reports its outcome later."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A business failure (a shortage, say): retrying cannot help."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A transient failure (a participant down, a contended row): a later attempt may succeed, not
    before `retry_after` if the participant asked for that (HTTP's Retry-After)."""

    reason: str
    retry_after: timedelta | None = None


Outcome = Succeeded | Rejected | Unavailable | Accepted
