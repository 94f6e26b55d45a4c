"""Remote children for tests/test_supervisor.py, run on nodes in other OS processes.

Imported by name (``supervisor_funcs``) in the test process and in each node process.
"""

from __future__ import annotations

from cloudy import Message, NodeId, ProcessId, expect, get_self_node, get_self_pid, remotable, send


class RemoteStarted(Message):
    name: str
    node: NodeId
    pid: ProcessId


@remotable
async def remote_worker(report_to: ProcessId, name: str) -> None:
    """Tell *report_to* where it started, then idle until stopped."""
    send(report_to, RemoteStarted(name, get_self_node(), get_self_pid()))
    await expect(bytes)
