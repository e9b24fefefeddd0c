"""`GuardedResolver`: aiohttp's resolver, held to what a `Reach` allows (api/outbound/addresses.py).

A module of its own, so that the checks of api/outbound/addresses.py, which every start of the
service imports, do without aiohttp: it took about a tenth of a second of CPU, and is needed only
once a webhook is delivered.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from api.outbound.addresses import Reach


class GuardedResolver(ThreadedResolver):
    """aiohttp's resolver, answering only the addresses `reach` allows: the connection is made to an
    address checked in the same lookup, so a name that resolves to a public address when checked and
    to a private one when connecting (DNS rebinding) reaches nothing. A name left with no allowed
    address fails to connect, as one that does not resolve."""

    def __init__(self, reach: Reach) -> None:
        super().__init__()
        self._reach = reach

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        allowed = [r for r in found if self._reach.allows(ipaddress.ip_address(r["host"].split("%")[0]))]
        if not allowed:
            raise OSError(f"{host} resolves to no address this service may send to")
        return allowed
