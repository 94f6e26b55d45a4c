"""SimpleLocalnet: zero-configuration master and slave nodes on a local network.

The Python form of Cloud Haskell's ``Control.Distributed.Process.Backend.SimpleLocalnet``::

    backend = initialize_backend("127.0.0.1", 8080)
    start_slave(backend)                  # a slave: blocks until terminated

    backend = initialize_backend("127.0.0.1", 8084)
    start_master(backend, master)         # finds the slaves, runs master(slaves)

Nodes find each other with signed UDP multicast datagrams (group 224.0.0.99, port
9999 by default) on the interface of the node's own address, or by asking a static
list of peers over TCP where multicast is blocked (``peers=`` or ``CLOUDY_PEERS``).
Where Cloud Haskell differs, this module follows what a user expects:

- `Backend.find_peers` returns only the nodes that answered *this* request and can
  be reached over TCP with our cookie, not every node that ever answered;
- `terminate_all_slaves` returns once every slave has confirmed (or its connection
  dropped), not after a fixed sleep;
- a backend owns one node (a node owns its TCP port): `new_local_node` starts it
  once and returns it on every later call.

This module is the public face only, as Cloud Haskell's module is: the backend and
its discovery of peers live in `cloudy.backend.localnet`, the masters and slaves
built on it in `cloudy.backend.master_slave`.
"""

from __future__ import annotations

from . import localnet, master_slave
from .localnet import *  # noqa: F403
from .master_slave import *  # noqa: F403

__all__ = localnet.__all__ + master_slave.__all__
