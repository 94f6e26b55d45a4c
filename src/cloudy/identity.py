"""Who is who: node and process identifiers, monitor references and send ports.

All four are immutable, hashable msgspec Structs, so they can be dictionary keys,
set members, and fields of messages that cross the wire. They print the way Cloud
Haskell prints them: ``nid://host:port:0`` and ``pid://host:port:0:N``.

A node restarted on the same host and port counts its processes from 1 again, so a
pid and a monitor ref also carry the *creation* of the node that made them: a random
nonzero 32-bit number drawn when the node starts (Erlang's creation, Cloud Haskell's
``lpidUnique``). A node refuses whatever is addressed to a pid of another creation
than its own, as it would a pid that never existed: a pid held from before a restart
cannot reach a new process that happens to have the same number. Creation 0
(`UNKNOWN_CREATION`, the default of a pid built by hand) is no node's: such a pid
names no live process. The creation is not printed (neither Erlang nor Cloud Haskell
prints it); compare ``pid.creation`` when it matters.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "CREATION_BITS",
    "UNKNOWN_CREATION",
    "MonitorRef",
    "NodeId",
    "ProcessId",
    "SendPort",
    "port_number",
]

#: A node's creation is a nonzero number of this many bits.
CREATION_BITS = 32
#: The creation of a pid or ref whose node is not known: no running node has it.
UNKNOWN_CREATION = 0


def port_number(port: int | str) -> int:
    """A TCP port given as an int or a string; raises `ValueError` if it is not 0-65535."""
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"port must be a number, not {port!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range 0-65535")
    return number


class NodeId(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="cloudy.NodeId"):
    """The address of a node: the host name or address the user gave, and its TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"nid://{self.host}:{self.port}:0"

    def __repr__(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """Parse ``nid://host:port:0`` (or ``host:port``) into a `NodeId`.

        Raises `ValueError` when *text* is not of that form.
        """
        nid = text.startswith("nid://")
        if nid and not text.endswith(":0"):  # not ours: "nid://h:1:5" is no host "h:1"
            host, port_text = "", ""
        elif nid:
            host, _, port_text = text[6:-2].rpartition(":")
        else:
            host, _, port_text = text.rpartition(":")
        host = host.strip("[]")
        # port 0 only means "pick one" when listening: no running node has it
        if not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"not a node id: {text!r} (expected nid://host:port:0 or host:port)")
        return cls(host, int(port_text))


class ProcessId(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="cloudy.ProcessId"):
    """A process: the node it lives on, its number there (unique for the node's life),
    and the node's creation (which run of that node: see the module's docstring)."""

    node: NodeId
    lid: int
    creation: int = UNKNOWN_CREATION

    def __str__(self) -> str:
        return f"pid://{self.node.host}:{self.node.port}:0:{self.lid}"

    def __repr__(self) -> str:
        return str(self)


class MonitorRef(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="cloudy.MonitorRef"):
    """Names one monitor (or link) set up by a process on *node*; unique for that node's
    life, and across its restarts by its *creation* (as a pid's)."""

    node: NodeId
    ident: int
    creation: int = UNKNOWN_CREATION

    def __repr__(self) -> str:
        return f"MonitorRef({self.node}#{self.ident})"


class SendPort(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="cloudy.SendPort"):
    """The sending end of a typed channel; a message itself, so it can be handed to others."""

    pid: ProcessId
    cid: int
    kind: str | None = None  # the element type's name, if the channel names one

    def __repr__(self) -> str:
        of = f" of {self.kind}" if self.kind else ""
        return f"SendPort({self.pid}#{self.cid}{of})"
