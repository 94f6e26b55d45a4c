"""The seed's minimal example: four slaves, one master that prints them.

python examples/minimal.py slave 127.0.0.1 8080 &    # and 8081, 8082, 8083
python examples/minimal.py master 127.0.0.1 8084
"""

import sys

from cloudy import CloudyError, NodeId
from cloudy.backend.simplelocalnet import (
    Backend,
    initialize_backend,
    start_master,
    start_slave,
    terminate_all_slaves,
)


async def master(backend: Backend, slaves: list[NodeId]) -> None:
    # Do something interesting with the slaves
    print(f"Slaves: [{', '.join(map(str, slaves))}]", flush=True)
    # Terminate the slaves when the master terminates (this is optional)
    await terminate_all_slaves(backend)


def main() -> None:
    match sys.argv[1:]:
        case ["master", host, port]:
            backend = initialize_backend(host, port)
            start_master(backend, lambda slaves: master(backend, slaves))
        case ["slave", host, port]:
            backend = initialize_backend(host, port)
            start_slave(backend)
        case _:
            sys.exit(f"usage: {sys.argv[0]} (master | slave) HOST PORT")


if __name__ == "__main__":
    try:
        main()
    except (CloudyError, OSError) as e:  # a busy port, an address not this machine's, ...
        sys.exit(f"minimal.py: {e}")
    except KeyboardInterrupt:
        pass
