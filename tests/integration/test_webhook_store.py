"""The webhook endpoints' store on each database: an admin's change sets only the columns it names,
so what a relay recorded meanwhile (a disabling, the endpoint's health) is kept."""

from __future__ import annotations

from datetime import UTC, datetime

from persistence.database import make_engine
from persistence.webhooks import WebhookStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def test_a_change_sets_only_what_it_names(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        store = WebhookStore(engine, engine)
        created = await store.create("https://example.com/a", None, "first", "whsec_one", NOW)
        # The relay disables it while an admin edits the description from what they read before.
        await store.disable(created.id, "failing for a day", NOW)
        changed = await store.change(created.id, {"description": "second", "events": frozenset({"B", "A"})})
        assert changed is not None
        assert (changed.description, changed.events) == ("second", frozenset({"A", "B"}))
        assert (changed.enabled, changed.disabled_reason) == (False, "failing for a day")
        assert changed.secret == "whsec_one"
        assert await store.change("no-such-endpoint", {"description": "x"}) is None
        unchanged = await store.change(created.id, {})  # an update that names nothing changes nothing
        assert unchanged is not None and unchanged.description == "second"
    finally:
        await engine.dispose()
