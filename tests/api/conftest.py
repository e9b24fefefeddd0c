"""Served instances for the live tests (subscriptions, the dashboard)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.settings import Settings
from tests.api.live import Live, serve_live


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[Live]:
    async with serve_live(Settings(database_url=database_url)) as served:
        yield served


@pytest.fixture
async def live_on_sqlite(tmp_path: Path) -> AsyncIterator[Live]:
    """For what does not depend on the database, such as the WebSocket protocol itself."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    async with serve_live(Settings(database_url=url)) as served:
        yield served
