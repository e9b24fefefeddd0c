"""The pure rules of webhook delivery: the retry schedule (fast at first, capped, about a day in all)
and which addresses a webhook may reach."""

from __future__ import annotations

import ipaddress
import random
from datetime import timedelta

import pytest

from api.outbound.addresses import Reach, reach_problem, url_problem
from api.outbound.resolver import GuardedResolver
from api.outbound.webhooks import FIRST_RETRY_S, LONG_CAP_S, retry_pause


def schedule(seed: int, span: timedelta) -> list[float]:
    """The pauses a delivery that always fails waits, from its first failure until `span` has passed."""
    random.seed(seed)
    pauses: list[float] = []
    elapsed = 0.0
    while elapsed < span.total_seconds():
        pause = retry_pause(len(pauses) + 1, timedelta(seconds=elapsed))
        pauses.append(pause)
        elapsed += pause
    return pauses


@pytest.mark.parametrize("seed", range(20))
def test_the_first_retry_comes_within_seconds_and_no_wait_exceeds_a_minute_for_ten_minutes(seed: int) -> None:
    pauses = schedule(seed, timedelta(days=1))
    assert FIRST_RETRY_S / 2 <= pauses[0] <= FIRST_RETRY_S
    elapsed = 0.0
    for pause in pauses:
        if elapsed + pause > 600:
            break
        assert pause <= 60
        elapsed += pause
    assert max(pauses) <= LONG_CAP_S


@pytest.mark.parametrize("seed", range(5))
def test_a_day_of_failures_is_a_few_dozen_attempts_and_each_wait_is_at_most_a_tenth_of_the_outage(
    seed: int,
) -> None:
    pauses = schedule(seed, timedelta(days=1))
    assert 30 <= len(pauses) <= 120
    elapsed = 0.0
    for pause in pauses:
        assert pause <= max(60.0, elapsed / 10)  # a receiver back after an outage is caught up soon
        elapsed += pause


def test_the_pauses_are_jittered() -> None:
    random.seed(1)
    assert len({round(retry_pause(3, timedelta(seconds=20)), 6) for _ in range(10)}) == 10


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "10.0.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "0.0.0.0",
        "::",
        "224.0.0.251",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "100.64.0.1",
        "192.0.2.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 around 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "64:ff9b:1::a00:1",  # NAT64 local-use around 10.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use around 169.254.169.254
        "64:ff9b:1::808:808",  # NAT64 local-use, whatever it seems to carry: a network's own range
        "64:ff9b:1:a00:1::808:808",  # 10.0.0.1 where a /48 translator puts it (RFC 6052)
        "fec0::1",  # site-local, deprecated
        "fef0::1",  # site-local, deprecated
        "4000::1",  # reserved
    ],
)
def test_addresses_beyond_the_public_internet_are_refused_unless_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not Reach().allows(ip)
    assert Reach(private=True).allows(ip)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "::ffff:0:7f00:1"])
def test_development_mode_reaches_loopback(address: str) -> None:
    assert Reach(loopback=True).allows(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "169.254.169.254", "::ffff:192.168.0.1", "fd00::1", "::ffff:0:a00:1", "fec0::1"]
)
def test_development_mode_reaches_no_other_private_address(address: str) -> None:
    assert not Reach(loopback=True).allows(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
        "::ffff:8.8.8.8",
        "::ffff:0:808:808",  # IPv4-translated 8.8.8.8
        "64:ff9b::808:808",  # NAT64 around 8.8.8.8
        "2002:808:808::",  # 6to4 around 8.8.8.8
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert Reach().allows(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://example.com/hook", None),
        ("http://example.com:8080/a?b=c", None),
        ("ftp://example.com/", "url must be an http or https URL"),
        ("//example.com/", "url must be an http or https URL"),
        ("https:///hook", "url must name a host"),
        (
            "https://u:p@example.com/",
            "url must not hold credentials; authenticate receivers by the signature",
        ),
        ("https://example.com:70000/", "url is not a URL"),
        ("https://[::1/", "url is not a URL"),
        (f"https://{'a' * 64}.example.com/", "url must name a host that can be looked up"),
        ("https://a..example.com/", "url must name a host that can be looked up"),
        ("http://127.0.0.1:0/x", "url must name a port from 1 to 65535, not 0"),
        ("http://127.0.0.1:00/x", "url must name a port from 1 to 65535, not 0"),
        ("http://127.0.0.1:9201/x\r\nX-Injected: 1", "url must not contain whitespace or control characters"),
        ("http://127.0.0.1:9201/x y", "url must not contain whitespace or control characters"),
        ("http://127.0.0.1:9201/x\ty", "url must not contain whitespace or control characters"),
        ("http://127.0.0.1:9201/x\x00", "url must not contain whitespace or control characters"),
        ("http://127.0.0.1:9201/x\x7f", "url must not contain whitespace or control characters"),
        (" http://127.0.0.1:9201/x", "url must not contain whitespace or control characters"),
        ("http://127.0.0.1:9201/x\n", "url must not contain whitespace or control characters"),
        ("http://exa\u00a0mple.com/", "url must not contain whitespace or control characters"),
        ("http://127.0.0.1:1/x", None),
    ],
)
def test_only_absolute_http_urls_with_a_host_and_no_credentials_are_accepted(
    url: str, problem: str | None
) -> None:
    assert url_problem(url) == problem


async def test_the_connection_resolves_only_to_addresses_the_reach_allows() -> None:
    # What a connection is made to is checked in the lookup that makes it: a name that passed the
    # check before and resolves to loopback now reaches nothing.
    with pytest.raises(OSError, match="no address this service may send to"):
        await GuardedResolver(Reach()).resolve("localhost", 80)
    found = await GuardedResolver(Reach(loopback=True)).resolve("localhost", 80)
    assert found and all(ipaddress.ip_address(r["host"]).is_loopback for r in found)


async def test_a_host_name_that_cannot_be_looked_up_is_a_reach_problem_not_an_error() -> None:
    assert await reach_problem(f"https://{'a' * 64}.example.com/", Reach()) is not None
