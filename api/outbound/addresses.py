"""Which URLs ordersaga may send to (server-side request forgery): an admin who may register a webhook,
or give a warehouse a service URL, must not thereby reach what only the server reaches, its own
loopback, the private network it sits in, or a cloud's metadata service on a link-local address.

A URL is checked when it is registered and again before every round of deliveries, since what a name
resolves to can change in between; and the connection itself resolves through `GuardedResolver`
(api/outbound/resolver.py), which answers only allowed addresses, so a name cannot pass the check and
then connect elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2000
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Reach:
    """Which addresses beyond the public internet a URL may resolve to: any (`private`, for
    `serve --allow-private-webhook-urls`, or `--allow-private-warehouse-urls` for a warehouse's own
    URL), or this machine's loopback (`loopback`, in development mode, where no authentication is
    configured)."""

    private: bool = False
    loopback: bool = False

    def allows(self, address: Address) -> bool:
        """Whether `address` may be connected to; an IPv6 address that carries an IPv4 one (mapped,
        translated, NAT64, 6to4, IPv4-compatible) as that one is, since that is where it leads."""
        if address in _NAT64_LOCAL_USE:
            # Where it leads is the local translator's to say (RFC 6052 lets the IPv4 address sit at
            # several places in it): a network's own range, never the public internet (RFC 8215).
            return self.private
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return self.allows(embedded)
        if self.private or (self.loopback and address.is_loopback):
            return True
        # Not global: loopback, private, link-local, unspecified, shared, documentation (RFC 6890's
        # registries). `is_global` alone is not enough: Python 3.11 calls reserved ranges (IPv6's
        # deprecated site-local fec0::/10 among them) global. Multicast is never a receiver.
        site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
        return address.is_global and not (address.is_reserved or site_local or address.is_multicast)


# IPv6 networks whose addresses lead to the IPv4 address in their last 32 bits.
_CARRYING_IPV4 = [
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped (RFC 4291 2.5.5.2)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64's well-known prefix (RFC 6052)
    # IPv4-compatible (RFC 4291 2.5.5.1), deprecated, still routed by some; :: and ::1 are not.
    ipaddress.IPv6Network("::/96"),
]


# NAT64's local-use prefix (RFC 8215).
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to, if it carries one: ::ffff:127.0.0.1 reaches 127.0.0.1,
    2002:7f00:1:: (6to4) too."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if int(address) > 1 and any(address in network for network in _CARRYING_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook's (None if it can): only absolute http and https URLs with a
    host, a port from 1 to 65535 if any, no credentials, no whitespace or control characters, at
    most MAX_URL characters."""
    if len(url) > MAX_URL:
        return f"url is longer than {MAX_URL} characters"
    # Checked on the text as given: urlsplit drops tabs and line breaks and strips the ends, so a URL
    # stored as it came could still carry them (a CR LF would add a header to a request line).
    if any(c.isspace() or (c.isascii() and not c.isprintable()) for c in url):
        return "url must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # it raises for a port that is not one
    except ValueError:
        return "url is not a URL"
    if port == 0:
        return "url must name a port from 1 to 65535, not 0"
    if parts.scheme not in ("http", "https"):
        return "url must be an http or https URL"
    if not parts.hostname:
        return "url must name a host"
    if parts.username is not None or parts.password is not None:
        return "url must not hold credentials; authenticate receivers by the signature"
    try:
        parts.hostname.encode("idna")
    except UnicodeError:  # a label longer than 63 characters, or an empty one
        return "url must name a host that can be looked up"
    return None


async def reach_problem(url: str, reach: Reach) -> str | None:
    """Why `url` (one `url_problem` accepts) may not be sent to (None if it may): its host does not
    resolve, or resolves to an address `reach` does not allow (every address it resolves to must be
    allowed, since the client may connect to any)."""
    host = urlsplit(url).hostname or ""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        return f"{host} does not resolve: {error.strerror or error}"
    except UnicodeError:  # a label longer than 63 characters, or an empty one
        return f"{host} is not a host name"
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not reach.allows(address):
            return f"{host} resolves to {address}, which is not a public address"
    return None
