from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from api.service import Service
from tests.integration.support import start_service, stock_catalog


@pytest.fixture
async def svc(database_url: str) -> AsyncIterator[Service]:
    service = await start_service(database_url)
    await stock_catalog(service)
    yield service
    await service.stop()
