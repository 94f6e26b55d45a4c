"""Supervisors: Erlang/OTP's ``supervisor`` behaviour, on cloudy's public API.

`spec`: what a supervisor is told and reports (child specs, `SupervisorError`);
`protocol`: one message type per request of the run-time API; `client`: that API
(`start_supervisor`, `start_child`, `which_children`, ...), called by other
processes; `server`: the supervisor process (strategies, restarts, intensity);
`child`: a local child's side. Everything public is importable from here.
"""

from .client import (
    count_children,
    delete_child,
    restart_child,
    start_child,
    start_supervisor,
    terminate_child,
    which_children,
)
from .server import supervisor, supervisor_child
from .spec import (
    MAX_INTENSITY_REASON,
    RETRY_AFTER,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    SupervisorError,
)

__all__ = [
    "MAX_INTENSITY_REASON",
    "RETRY_AFTER",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "SupervisorError",
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "start_supervisor",
    "supervisor",
    "supervisor_child",
    "terminate_child",
    "which_children",
]
