"""A participant gate for tests: it holds a participant's calls until the test releases them."""

from __future__ import annotations

import asyncio

from domain.model.saga import Participant


class Hold:
    def __init__(self, *held: Participant) -> None:
        self._released: dict[Participant, asyncio.Event] = {}
        for participant in held:
            self.hold(participant)

    def hold(self, participant: Participant) -> None:
        self._released[participant] = asyncio.Event()

    def release(self, participant: Participant) -> None:
        self._released.pop(participant).set()

    def refusal(self, participant: Participant, warehouse_code: str) -> str | None:
        return None  # every warehouse takes its shipments

    async def admit(self, participant: Participant) -> None:
        if participant in self._released:
            await self._released[participant].wait()
