"""A whole cloudy cluster in one process: virtual clock and network, seeded faults,
exact replay. See the docs page "Testing your processes under faults"."""

from .cluster import Sim, SimNode, SimTimeout
from .world import Latency, Trace, World

__all__ = ["Latency", "Sim", "SimNode", "SimTimeout", "Trace", "World"]
