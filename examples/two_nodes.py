"""Two nodes, two terminals: one serves, the other spawns a registered function on it.

python examples/two_nodes.py serve 127.0.0.1 9000
python examples/two_nodes.py spawn 127.0.0.1 9001 nid://127.0.0.1:9000:0
"""

from __future__ import annotations

import asyncio
import sys
import warnings

from cloudy import (
    CloudyError,
    LocalNode,
    Message,
    NodeId,
    ProcessId,
    call,
    closure,
    expect,
    get_self_node,
    get_self_pid,
    remotable,
    send,
    spawn,
)

# Both terminals run this same script, so the names cloudy gives what is defined here
# (`__main__.greeter`, `__main__.Greet`) are the same on both nodes: the warning that
# other programs would not know them does not apply.
warnings.filterwarnings("ignore", message=".* is defined in __main__")


class Greet(Message):
    reply_to: ProcessId
    name: str


@remotable
async def greeter() -> None:
    greet = await expect(Greet)
    send(greet.reply_to, f"hello {greet.name}, from {get_self_node()}")


@remotable
def add(a: int, b: int) -> int:
    return a + b


async def client(server: NodeId) -> None:
    pid = await spawn(server, closure(greeter))
    send(pid, Greet(get_self_pid(), "world"))
    print(await expect(str))
    print("2 + 3 =", await call(server, closure(add, 2, 3)))


async def main(role: str, host: str, port: str, server: str | None) -> None:
    async with LocalNode(host, port) as node:
        if role == "serve":
            print(f"serving on {node.node_id}; Ctrl-C to stop", flush=True)
            await asyncio.Event().wait()
        else:
            assert server is not None
            await node.run_process(client, NodeId.parse(server))


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in ("serve", "spawn"):
        sys.exit(__doc__)
    try:
        server = sys.argv[4] if len(sys.argv) == 5 else None
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], server))
    except (CloudyError, OSError) as e:  # a dead node, a wrong cookie, a busy port, ...
        sys.exit(f"two_nodes.py: {e}")
    except KeyboardInterrupt:
        pass
