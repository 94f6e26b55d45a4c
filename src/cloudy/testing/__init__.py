"""Helpers for users' tests: nodes in child OS processes (`NodeProcess`), and a whole
cluster in one process under a virtual clock and network (`cloudy.testing.sim`)."""

from .nodes import NodeProcess, NodeStartError, free_port

__all__ = ["NodeProcess", "NodeStartError", "free_port"]
