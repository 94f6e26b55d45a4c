"""Supervisors: Erlang/OTP's ``supervisor`` behaviour, on cloudy's public API.

`server` is the supervisor process (its strategies, restarts and intensity); `spec`
what it is told and answers: child specs, reports, errors and the run-time API
(`start_child`, `which_children`, ...). Everything public is importable from here.
"""

from .server import (
    MAX_INTENSITY_REASON,
    RETRY_AFTER,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    SupervisorError,
    count_children,
    delete_child,
    restart_child,
    start_child,
    start_supervisor,
    supervisor,
    supervisor_child,
    terminate_child,
    which_children,
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
