"""The node: processes, their mailboxes, routing, names, monitors and the controller.

`LocalNode` composes the parts, one idea per module (see ``local_node.py``).
"""

from .flow import Policy
from .local_node import (
    CURRENT_NODE,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEARTBEAT_TIMEOUT,
    LocalNode,
    current_node,
)
from .logger import log_time
from .mailbox import CURRENT_PROCESS, REDUCTIONS, Process, ReceivePortState, current_process
from .receive import Match, expect, receive_all, take

__all__ = [
    "CURRENT_NODE",
    "CURRENT_PROCESS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "REDUCTIONS",
    "LocalNode",
    "Match",
    "Policy",
    "Process",
    "ReceivePortState",
    "current_node",
    "current_process",
    "expect",
    "log_time",
    "receive_all",
    "take",
]
