"""Names for processes: ``register``, ``whereis`` and the rest, freed when the owner ends.

Ownership rule: both directions of the name table live here — name -> pid, and
for each local process the names it holds (so its end frees them at once). A
name given to a process of another node is freed when that process ends or its
node is lost: the node is told (``on_remote``) and watches it (Cloud Haskell's
rule).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ProcessRegistrationException
from ..identity import ProcessId
from .table import ProcessTable

__all__ = ["Registry"]


class Registry:
    """The names registered on one node."""

    __slots__ = ("_held", "_names", "_table", "on_remote")

    def __init__(self, table: ProcessTable) -> None:
        self._table = table
        # called with (name, pid) when a name is given to a process of another node
        self.on_remote: Callable[[str, ProcessId], object] | None = None
        self._names: dict[str, ProcessId] = {}
        self._held: dict[int, set[str]] = {}  # lid -> names, for local processes

    def __repr__(self) -> str:
        return f"<Registry {len(self._names)} names>"

    def register(self, name: str, pid: ProcessId) -> None:
        """Register *name* for *pid*; raises `ProcessRegistrationException` if taken."""
        if name in self._names:
            raise ProcessRegistrationException(f"{name!r} is already registered")
        self._bind(name, pid)
        self._table.tracer.emit("registered", pid, detail=name)

    def reregister(self, name: str, pid: ProcessId) -> None:
        """Point an already registered *name* at *pid*."""
        if name not in self._names:
            raise ProcessRegistrationException(f"{name!r} is not registered")
        self._check_alive(name, pid)  # refused: the name stays as it was
        old = self._unbind(name)
        self._bind(name, pid)
        self._table.tracer.emit("unregistered", old, detail=name)
        self._table.tracer.emit("registered", pid, detail=name)

    def unregister(self, name: str) -> None:
        """Remove *name*; raises `ProcessRegistrationException` if it is not registered."""
        if name not in self._names:
            raise ProcessRegistrationException(f"{name!r} is not registered")
        self._table.tracer.emit("unregistered", self._names[name], detail=name)
        self._unbind(name)

    def __len__(self) -> int:
        return len(self._names)

    def whereis(self, name: str) -> ProcessId | None:
        """The pid registered as *name*, or None."""
        return self._names.get(name)

    def items(self) -> list[tuple[str, ProcessId]]:
        """Every name and the pid it stands for (some may be of other nodes)."""
        return list(self._names.items())

    def names_of(self, pid: ProcessId) -> list[str]:
        """The names local process *pid* holds, sorted."""
        return sorted(self._held.get(pid.lid, ()))

    def process_ended(self, pid: ProcessId) -> None:
        """Free every name *pid* (a local process) held."""
        names = self._held.pop(pid.lid, None)
        if names:
            for name in sorted(names):
                self.free_if(name, pid)

    def _check_alive(self, name: str, pid: ProcessId) -> None:
        if pid.node == self._table.node_id and self._table.local(pid) is None:
            raise ProcessRegistrationException(f"cannot register {name!r}: {pid} is not alive")

    def _bind(self, name: str, pid: ProcessId) -> None:
        self._check_alive(name, pid)
        if pid.node == self._table.node_id:
            self._held.setdefault(pid.lid, set()).add(name)
        self._names[name] = pid
        if pid.node != self._table.node_id and self.on_remote is not None:
            self.on_remote(name, pid)

    def free_if(self, name: str, pid: ProcessId) -> None:
        """Free *name* if it still names *pid* (a process that ended)."""
        if self._names.get(name) == pid:
            del self._names[name]
            self._table.tracer.emit("unregistered", pid, detail=name)

    def _unbind(self, name: str) -> ProcessId:
        pid = self._names.pop(name)
        if pid.node == self._table.node_id:
            names = self._held.get(pid.lid)
            if names is not None:
                names.discard(name)
        return pid
