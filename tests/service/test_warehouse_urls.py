"""Which warehouses are remote, as a process knows it: the URL it just committed holds at once, and a
scheduled read of the catalog that the change overtook does not undo it."""

from __future__ import annotations

import asyncio

from api.outbound.addresses import Reach
from api.outbound.warehouse import WarehouseService


async def test_a_read_that_a_new_url_overtook_does_not_bring_the_old_one_back() -> None:
    catalog = {"BER": "http://127.0.0.1:9/old"}
    read, answer = asyncio.Event(), asyncio.Event()

    async def read_urls() -> dict[str, str]:
        urls = dict(catalog)
        read.set()
        await answer.wait()
        return urls

    warehouses = WarehouseService(read_urls, default_url=None, signer=None, reach=Reach())
    refreshing = asyncio.create_task(warehouses.refresh())
    await read.wait()  # it has read the old URL
    catalog["BER"] = "http://127.0.0.1:9/new"  # committed, then learnt
    warehouses.learn("BER", catalog["BER"])
    answer.set()
    await refreshing
    assert warehouses.url_of("BER") == "http://127.0.0.1:9/new"

    del catalog["BER"]
    warehouses.learn("BER", None)  # back to the built-in warehouse
    await warehouses.refresh()  # a read begun after the change finds it in the catalog
    assert warehouses.url_of("BER") is None
