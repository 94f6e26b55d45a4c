"""``cloudy peers`` and ``cloudy doctor``: who answers discovery, and why nobody does."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import sys
from typing import Any, TextIO

from ..cookie import cookie_path, resolve_cookie
from ..identity import NodeId
from .discovery import DEFAULT_GROUP, DEFAULT_PORT, Discovery, interface_address
from .localnet import DEFAULT_DISCOVERY_TIMEOUT, initialize_backend

__all__ = ["doctor", "peers"]


async def peers(
    host: str, seconds: float = DEFAULT_DISCOVERY_TIMEOUT, out: TextIO | None = None, **options: Any
) -> int:
    """Print the nodes other than ours that answer discovery; 1 if there are none."""
    out = out or sys.stdout
    backend = initialize_backend(host, 0, **options)
    async with backend:
        found = await backend.find_peers(seconds)
        me = backend.node.node_id
    others = [n for n in found if n != me]
    for node in others:
        print(node, file=out)
    if backend.other_cookies:
        print(
            f"cloudy: {backend.other_cookies} node(s) answered with a different cookie",
            file=sys.stderr,
        )
    if not others:
        print(
            f"cloudy: no node answered ({backend.describe_discovery()}); try: cloudy doctor {host}",
            file=sys.stderr,
        )
        return 1
    return 0


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = False

    def ok(self, text: str) -> None:
        print(f"ok    {text}", file=self.out)

    def warn(self, text: str, fix: str) -> None:
        print(f"warn  {text}: {fix}", file=self.out)

    def fail(self, text: str, fix: str) -> None:
        self.failed = True
        print(f"FAIL  {text}: {fix}", file=self.out)


async def doctor(
    host: str,
    out: TextIO | None = None,
    multicast_group: str = DEFAULT_GROUP,
    multicast_port: int = DEFAULT_PORT,
    cookie: str | bytes | None = None,
    **_options: Any,
) -> int:
    """Check what nodes on *host* need to find and reach each other; 1 if a check fails.

    One line per check: the address *host* names, whether it is this machine's,
    whether other machines could reach it, whether multicast comes back on that
    interface, the cookie, and whether nodes with a different cookie answered.
    """
    report = _Report(out or sys.stdout)
    try:
        address = interface_address(host)
    except OSError as e:
        report.fail(str(e), "use a name listed in /etc/hosts or DNS, or the address itself")
        return 1
    report.ok(f"{host} resolves to {address}")

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError as e:
            report.fail(
                f"{address} is not an address of this machine ({e.strerror})",
                "a node listens on its own address: name this machine's host or address",
            )
            return 1
    report.ok(f"{address} is an address of this machine")

    if ipaddress.IPv4Address(address).is_loopback:
        report.warn(
            f"{address} is a loopback address: only nodes on this machine can reach it",
            "for several machines, name an address on their network (on Debian a host "
            "name often maps to 127.0.1.1 in /etc/hosts: use the LAN address instead)",
        )
    else:
        report.ok(f"peers on the network of {address} can reach it, firewall permitting")

    have_cookie = _check_cookie(report, cookie)
    # without a cookie yet, sign with a throw-away one rather than create the file
    secret = resolve_cookie(cookie) if have_cookie else os.urandom(32)
    await _check_multicast(report, address, multicast_group, multicast_port, secret)
    return 1 if report.failed else 0


async def _check_multicast(
    report: _Report, address: str, group: str, port: int, cookie: bytes
) -> None:
    probe = NodeId(address, 1)
    daemon = Discovery(
        cookie=cookie,
        interface=address,
        answer=lambda: probe,
        group=group,
        port=port,
    )
    where = f"{group}:{port} via {address}"
    try:
        await daemon.start()
    except OSError as e:
        report.fail(str(e), "check that the interface has MULTICAST on, or use --peers")
        return
    strangers: set[bytes] = set()
    try:
        answers = await daemon.ask(0.5, lambda _: None, strangers)
    except OSError as e:
        report.fail(f"cannot send on {where}: {e.strerror}", "check the multicast route")
        return
    finally:
        daemon.close()
    if probe not in answers:
        report.fail(
            f"a multicast datagram sent on {where} did not come back",
            "check the firewall (UDP to the group and port) and the interface, or use --peers",
        )
        return
    others = len(answers) - 1
    report.ok(f"multicast on {where} comes back ({others} other node(s) with our cookie answer)")
    if strangers:
        report.warn(
            f"{len(strangers)} node(s) answered with a different cookie",
            "nodes find each other only with the same cookie: give every node the same one "
            "(--cookie, CLOUDY_COOKIE or the file ~/.cloudy/cookie)",
        )


def _check_cookie(report: _Report, cookie: str | bytes | None) -> bool:
    """Report where the cookie comes from; False if there is none yet."""
    if cookie is not None:
        report.ok("the cookie is given as an argument (--cookie)")
        return True
    if os.environ.get("CLOUDY_COOKIE"):
        report.ok("the cookie comes from CLOUDY_COOKIE")
        return True
    path = cookie_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        report.warn(
            f"{path} does not exist yet",
            "the first node creates it; copy that file to every machine of the cluster",
        )
        return False
    if st.st_uid != os.getuid():
        report.fail(f"{path} belongs to uid {st.st_uid}", f"chown {os.getuid()} {path}")
    elif stat.S_IMODE(st.st_mode) & 0o077:
        mode = oct(stat.S_IMODE(st.st_mode))
        report.fail(f"{path} is readable by others (mode {mode})", f"chmod 600 {path}")
    else:
        report.ok(f"{path} exists, mode 600: copy it to every machine of the cluster")
    return True
