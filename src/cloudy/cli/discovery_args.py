"""The options of every command that finds nodes: multicast, static peers, DNS."""

from __future__ import annotations

import argparse

from ..backend.discovery import DEFAULT_PORT
from ..backend.dns import DEFAULT_INTERVAL
from . import values as v

__all__ = ["add_discovery_arguments"]


def add_discovery_arguments(p: argparse.ArgumentParser) -> None:
    """How a command finds nodes: multicast's port, static peers, a DNS name."""
    p.add_argument(
        "--discovery-port",
        type=v.port,
        default=None,
        metavar="PORT",
        help=f"UDP port of discovery (default: {DEFAULT_PORT})",
    )
    p.add_argument(
        "--peers",
        type=v.peers,
        default=None,
        metavar="HOST:PORT,...",
        help="static peers asked over TCP (default: $CLOUDY_PEERS)",
    )
    g = p.add_argument_group("discovery by DNS")
    g.add_argument(
        "--peers-dns",
        type=v.dns_name,
        default=None,
        metavar="NAME",
        help="find the peers by DNS instead of multicast: the SRV records of "
        "_cloudy._tcp.NAME, else NAME's A/AAAA records at this node's port "
        "(default: $CLOUDY_PEERS_DNS)",
    )
    g.add_argument(
        "--dns-interval",
        type=v.duration,
        default=None,
        metavar="T",
        help=f"ask the name again this often (default: {DEFAULT_INTERVAL:g}s; "
        "every 1s until it names a peer)",
    )
    g.add_argument(
        "--dns-server",
        type=v.dns_server,
        default=None,
        metavar="ADDR[:PORT]",
        help="ask this DNS server (default: $CLOUDY_DNS_SERVER, else the system's "
        "/etc/resolv.conf)",
    )
