"""Peers from DNS: a name's SRV records, or its A and AAAA records and a port.

How a cluster in containers finds its nodes (libcluster's DNS strategies, Akka's
Cluster Bootstrap): a headless Kubernetes Service, docker compose's service name or
any DNS zone names the nodes. `lookup` asks for ``_cloudy._tcp.NAME`` (SRV: each
record's target and port) and for NAME itself (A and AAAA: each address, at the
given port); the SRV records win when there are any. The resolver is dnspython's
(pure Python, asyncio-native, SRV records and answers checked for us), with its cache
off: an answer is never kept past the poll that asked for it, whatever TTL it claims.

An answer is only a list of hints. What it cannot be trusted with is refused here,
with a log line naming the name and why, and costs nothing else: a record of another
type, a target or address that does not parse, a port out of range, or more than
`MAX_RECORDS` records (a poisoned or runaway zone; the whole answer is refused and the
last good one kept). A record pointing at something that is not a cloudy node is
found out later, when the node cannot be reached with our cookie.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

__all__ = [
    "DEFAULT_INTERVAL",
    "MAX_RECORDS",
    "DnsError",
    "Lookup",
    "Record",
    "dns_lookup",
    "parse_server",
]

log = logging.getLogger("cloudy.backend.dns")

#: How often a name is asked again once it has answered (libcluster's 5 s): often
#: enough that a new pod joins within seconds, rarely enough that a thousand nodes
#: asking cost a DNS server nothing. Until the first answer that names a peer, it is
#: asked every second (Akka starts at 1 s).
DEFAULT_INTERVAL = 5.0
#: The most records an answer may hold: more is taken for a runaway or hostile zone.
MAX_RECORDS = 1024
#: How long one lookup (every query of it) may take.
LOOKUP_TIMEOUT = 3.0
#: The service and protocol labels of cloudy's SRV records.
SERVICE = "_cloudy._tcp"


class DnsError(Exception):
    """A lookup that gave no usable answer (the server down, a refused answer)."""


class _Refused(DnsError):
    """Every server answered the query with an error (REFUSED, SERVFAIL)."""


@dataclass(frozen=True)
class Record:
    """One peer a DNS answer names: where to reach it, and its SRV record's priority
    and weight (0 for an A or AAAA record). They only order the list: lower priority
    first, then higher weight; every record is a peer."""

    priority: int
    weight: int
    host: str
    port: int

    def order(self) -> tuple[int, int, str, int]:
        return (self.priority, -self.weight, self.host, self.port)


#: A lookup of a name: its records, or `DnsError` (the simulator gives its own).
Lookup = Callable[[str, int], Awaitable[list[Record]]]


def parse_server(text: str) -> tuple[str, int]:
    """``ADDRESS`` or ``ADDRESS:PORT`` (``[v6]:PORT``) of a DNS server; port 53 by default.

    Raises `ValueError` naming what is wrong.
    """
    host, port = text.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), text)
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
        port = _port(port_text, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"a DNS server is an address (or address:port), not {text!r}") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise ValueError(f"not a port in {whole!r}")
    return int(text)


def dns_lookup(server: tuple[str, int] | None = None, *, timeout: float = LOOKUP_TIMEOUT) -> Lookup:
    """A `Lookup` by dnspython: asking *server* (address, port), else the system's
    resolvers (/etc/resolv.conf: a pod's cluster DNS, with its search domains)."""

    def resolver() -> dns.asyncresolver.Resolver:
        r = dns.asyncresolver.Resolver(configure=server is None)
        if server is not None:
            r.nameservers, r.port = [server[0]], server[1]
        r.cache = None  # every poll asks: a huge TTL keeps nothing stale here
        r.lifetime = timeout
        return r

    async def lookup(name: str, port: int) -> list[Record]:
        try:
            async with asyncio.timeout(timeout):  # the whole lookup, every query of it
                return await _lookup(resolver(), name, port)
        except TimeoutError:
            raise DnsError(f"no whole answer for {name} within {timeout:g} s") from None

    return lookup


async def _lookup(r: dns.asyncresolver.Resolver, name: str, port: int) -> list[Record]:
    srv = await _srv(r, name)
    if srv is not None:
        return srv
    records = [Record(0, 0, host, port) for host in await _addresses(r, name)]
    if records and not port:
        raise DnsError(f"{name} has A/AAAA records but no port: listen on a fixed one")
    if not records:
        raise DnsError(f"{name} has no SRV ({SERVICE}.{name}), A or AAAA records")
    return sorted(set(records), key=Record.order)


async def _srv(r: dns.asyncresolver.Resolver, name: str) -> list[Record] | None:
    """The peers *name*'s SRV records give; None when it has none (then its A/AAAA)."""
    try:
        answer = await _ask(r, f"{SERVICE}.{name}", "SRV")
    except _Refused:
        answer = None  # a server that will not say (REFUSED, SERVFAIL): try the addresses
    if answer is None:
        return None
    _check_size(name, len(answer))
    # Targets' addresses are taken from the answer's additional section where the
    # server gave them (a headless Service's do), else asked for.
    glue: dict[str, list[str]] = {}
    for rrset in answer.response.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            glue.setdefault(rrset.name.to_text(), []).extend(rd.address for rd in rrset)
    out: list[Record] = []
    for rd in answer:
        if rd.rdtype != dns.rdatatype.SRV:
            raise DnsError(f"{name}: a {dns.rdatatype.to_text(rd.rdtype)} record in an SRV answer")
        if rd.target == dns.name.root:
            continue  # "no such service here" (RFC 2782)
        if not 0 < rd.port <= 65535:
            raise DnsError(f"{name}: an SRV record with port {rd.port}")
        target = rd.target.to_text()
        hosts = glue.get(target)
        if hosts is None:
            hosts = await _addresses(r, target)
        out += [Record(rd.priority, rd.weight, _address(name, h), rd.port) for h in hosts]
        _check_size(name, len(out))
    if not out:  # SRV records win, even when they name nothing reachable
        raise DnsError(f"{name}: its SRV records ({SERVICE}.{name}) name no target with an address")
    return sorted(set(out), key=Record.order)


async def _addresses(r: dns.asyncresolver.Resolver, name: str) -> list[str]:
    hosts: list[str] = []
    for kind in ("A", "AAAA"):
        answer = await _ask(r, name, kind)
        if answer is not None:
            _check_size(name, len(answer) + len(hosts))
            hosts += [_address(name, rd.address) for rd in answer]
    return hosts


async def _ask(r: dns.asyncresolver.Resolver, name: str, kind: str) -> dns.resolver.Answer | None:
    """The answer to one query; None when the name or that type of record does not exist."""
    try:
        return await r.resolve(name, kind, search=True)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.resolver.NoNameservers as e:
        raise _Refused(f"no DNS server answered for {name} ({_first_line(e)})") from None
    except dns.exception.Timeout:
        raise DnsError(f"no answer for {name} within {r.lifetime:g} s") from None
    except dns.exception.DNSException as e:
        raise DnsError(f"{name}: {_first_line(e)}") from None


def _address(name: str, text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise DnsError(f"{name}: {text!r} is not an address") from None
    if address.is_unspecified or address.is_multicast:
        raise DnsError(f"{name}: {address} cannot be a node's address")
    return str(address)


def _check_size(name: str, count: int) -> None:
    if count > MAX_RECORDS:
        raise DnsError(
            f"{name}: more than {MAX_RECORDS} records; the answer is refused "
            "(a cluster that large needs a partial mesh: see docs/mesh.md)"
        )


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]
