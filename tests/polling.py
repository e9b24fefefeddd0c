"""Waiting for a state the test cannot be told about, with a bound and without timing assumptions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    """Poll until `condition()` holds; fail, saying `what` was awaited, after `seconds`."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited {seconds:g}s for {what}")
