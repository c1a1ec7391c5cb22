"""Which IP addresses a tenant's connection may reach: public unicast only.

Python's `ipaddress.is_global` alone is not enough (3.11 calls multicast, 6to4 and NAT64 of
loopback global), so the refused ranges are listed here with their reason, IPv6 forms that embed an
IPv4 address (mapped, NAT64) are judged by that address, and numeric host spellings are read the way
the C library reads them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]
"""A host name -> the addresses it resolves to (text); raises OSError (socket.gaierror) when it cannot."""

_NUMERIC_PART: Final = re.compile(r"^(?:0[xX][0-9A-Fa-f]*|[0-9]+)$")
_IPV4_PARTS: Final = 4
_BYTE_MAX: Final = 0xFF

_METADATA: Final[dict[IPAddress, str]] = {
    ipaddress.ip_address(address): who
    for address, who in (
        ("169.254.169.254", "the instance metadata service of AWS, GCP, Azure and OCI"),
        ("169.254.170.2", "the AWS ECS task metadata endpoint"),
        ("100.100.100.200", "the Alibaba Cloud metadata service"),
        ("168.63.129.16", "the Azure WireServer"),
        ("fd00:ec2::254", "the AWS instance metadata service over IPv6"),
    )
}
_V4_REFUSED: Final = tuple(
    (ipaddress.IPv4Network(network), why)
    for network, why in (
        ("255.255.255.255/32", "the broadcast address"),
        ("0.0.0.0/8", "an unspecified address ('this host', RFC 1122; 0.0.0.0 reaches loopback)"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address (RFC 1918)"),
        ("172.16.0.0/12", "a private address (RFC 1918)"),
        ("192.168.0.0/16", "a private address (RFC 1918)"),
        ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
        ("169.254.0.0/16", "a link-local address"),
        ("192.0.0.0/24", "an IETF protocol assignment (RFC 6890)"),
        ("192.0.2.0/24", "a documentation address (RFC 5737)"),
        ("198.51.100.0/24", "a documentation address (RFC 5737)"),
        ("203.0.113.0/24", "a documentation address (RFC 5737)"),
        ("192.88.99.0/24", "the deprecated 6to4 relay anycast range (RFC 7526)"),
        ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address (RFC 1112)"),
    )
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are the IPv4 address
_V6_REFUSED: Final = tuple(
    (ipaddress.IPv6Network(network), why)
    for network, why in (
        ("::/128", "the unspecified address"),
        ("::1/128", "the loopback address"),
        ("::/96", "a deprecated IPv4-compatible address (RFC 4291)"),
        ("64:ff9b:1::/48", "a local-use NAT64 address (RFC 8215)"),
        ("::/8", "a reserved address"),
        ("100::/64", "a discard-only address (RFC 6666)"),
        ("2001::/32", "a Teredo tunnel address"),
        ("2001:db8::/32", "a documentation address (RFC 3849)"),
        ("3fff::/20", "a documentation address (RFC 9637)"),
        ("2002::/16", "a 6to4 tunnel address (deprecated, RFC 7526)"),
        ("fc00::/7", "a unique local (private) address (RFC 4193)"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a deprecated site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)


def resolve_host(host: str) -> list[str]:
    """The system resolver (getaddrinfo, as libpq and PyMySQL use it): every address of `host`."""
    answers = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


def address_refusal(address: IPAddress) -> str | None:
    """What kind of address this is when saas mode must not connect to it; None for public unicast."""
    if address in _METADATA:
        return f"a cloud metadata address ({_METADATA[address]})"
    if isinstance(address, ipaddress.IPv4Address):
        why = next((why for network, why in _V4_REFUSED if address in network), None)
        return why if why is not None or address.is_global else "not a globally routable address"
    return _ipv6_refusal(address)


def _ipv6_refusal(address: ipaddress.IPv6Address) -> str | None:
    if address.scope_id:
        return f"a scoped address (zone {address.scope_id}), local to one network interface"
    embedded = address.ipv4_mapped or (
        ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
    )
    if embedded is not None:  # the connection goes to the embedded IPv4 address: judge that one
        kind = "an IPv4-mapped" if address.ipv4_mapped else "a NAT64"
        inner = address_refusal(embedded)
        return None if inner is None else f"{kind} IPv6 address of {embedded}, {inner}"
    why = next((why for network, why in _V6_REFUSED if address in network), None)
    if why is not None:
        tunnelled = address.sixtofour
        return why if tunnelled is None else f"{why} embedding {tunnelled}"
    return None if address.is_global else "not a globally routable address"


def is_numeric_host(host: str) -> bool:
    """Every dot-separated part is a number (decimal, 0x hex, 0 octal): the C library reads an address."""
    return all(_NUMERIC_PART.match(part) for part in host.split("."))


def inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The address the C library's inet_aton (and so getaddrinfo) reads from `host`, or None: 1-4
    parts, each decimal, 0x hex or 0 octal, the last filling the remaining bytes (`127.1`,
    `2130706433`, `0x7f000001`, `0177.0.0.1`)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= _IPV4_PARTS or not is_numeric_host(host):
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                numbers.append(int(part[2:], 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *leading, last = numbers
    if any(n > _BYTE_MAX for n in leading) or last >= 1 << (8 * (_IPV4_PARTS - len(leading))):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)
