"""The IPv4 arithmetic the network set-up needs, on 32-bit integers.

The set-up runs in the network helper, whose imports a bridge `run` waits for: the
stdlib's ipaddress costs 2-4 ms of them here. Subnets are "a.b.c.d/p" strings that
request.py validated (with ipaddress, where good error messages matter) or that the
kernel reported, so nothing here parses loosely: inet_pton takes only dotted quads.
"""

import socket
from collections.abc import Iterator

_ALL = 0xFFFFFFFF


def to_int(address: str) -> int:
    return int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")


def to_str(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))


def mask(prefixlen: int) -> int:
    return (_ALL << (32 - prefixlen)) & _ALL


def split(subnet: str) -> tuple[int, int]:
    """"a.b.c.d/p" -> (network address as an int, p)."""
    address, _, prefixlen = subnet.partition("/")
    p = int(prefixlen)
    return to_int(address) & mask(p), p


def network(address: str, prefixlen: int) -> str:
    """The subnet an interface address belongs to: ("10.0.0.7", 24) -> "10.0.0.0/24"."""
    return f"{to_str(to_int(address) & mask(prefixlen))}/{prefixlen}"


def first_host(subnet: str) -> str:
    """The gateway minirun gives a bridge it makes: the subnet's .1."""
    return to_str(split(subnet)[0] + 1)


def hosts(subnet: str) -> Iterator[str]:
    """The usable addresses, lowest first: neither the network nor the broadcast one,
    except in a /31 (both, RFC 3021) and a /32 (its one), as ipaddress has it."""
    base, p = split(subnet)
    size = 1 << (32 - p)
    first, end = (base, base + size) if p >= 31 else (base + 1, base + size - 1)
    return (to_str(n) for n in range(first, end))


def overlaps(a: str, b: str) -> bool:
    (na, pa), (nb, pb) = split(a), split(b)
    return (na ^ nb) & mask(min(pa, pb)) == 0
