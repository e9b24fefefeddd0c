"""Loopback ports for servers a test must know the port of before they start: a receiver or a NATS
server stopped and started again on the same port to stage an outage, another release's `serve`.

A port found free by binding port 0 comes from the kernel's ephemeral range, where every port-0 bind
and every outgoing connection of every test process draws too: another test's server or client
could take it between the probe and the server's bind. These ports come from below that range
(Linux's default starts at 32768), from a block of its own for each pytest-xdist process, in turn
from a random start (so that two runs at once seldom meet), skipping any that cannot be bound now.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

# Ports 20000-31999, below the ephemeral range: 24 blocks, enough for the four test processes and
# the ones xdist starts in place of those that a timeout ends (gw4, gw5, ...).
FIRST, BLOCK, BLOCKS = 20_000, 500, 24


def _block() -> int:
    """This process's block: pytest-xdist's worker number (gw0, gw1, ...), 0 without workers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0) % BLOCKS


_offsets = itertools.count(random.randrange(BLOCK))


def free_port() -> int:
    """A loopback port that no other test process of this run is given (unless xdist has replaced
    more than twenty of them), free when asked. Raises RuntimeError if no port of this process's
    block can be bound."""
    first = FIRST + _block() * BLOCK
    for _ in range(BLOCK):
        port = first + next(_offsets) % BLOCK
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or in TIME_WAIT after an earlier server on it
            return port
    raise RuntimeError(f"no loopback port of {first}-{first + BLOCK - 1} is free")
