"""What ``cloudy --help`` and ``cloudy COMMAND --help`` say: each command's line, its
description and examples, and a formatter that shows every option's default."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["COMMANDS", "MAIN_DESCRIPTION", "MAIN_EPILOG", "CommandHelp", "HelpFormatter"]


@dataclass(frozen=True)
class CommandHelp:
    """One command's line in ``cloudy --help``, its description, and its examples."""

    line: str
    description: str
    examples: tuple[str, ...]

    @property
    def epilog(self) -> str:
        return "examples:\n" + "\n".join(f"  {e}" for e in self.examples)


MAIN_DESCRIPTION = (
    "The cloudy experiment (a master runs a ring of slave nodes broadcasting numbered "
    "messages; every slave ends with the same <COUNT, SUM>) and its tools. "
    "Each command has its own help: cloudy COMMAND --help."
)
MAIN_EPILOG = "examples:\n  cloudy local --slaves 4 --send-for 2s\n  cloudy doctor 127.0.0.1"

COMMANDS: dict[str, CommandHelp] = {
    "slave": CommandHelp(
        "start a slave node that waits for a master",
        "Start a slave node listening on HOST:PORT. It answers discovery (UDP multicast on "
        "HOST's interface) from nodes with the same cookie, takes part in the runs a master "
        "starts, prints its result as 'NODE <COUNT, SUM>' and exits when the master ends it.",
        (
            "cloudy slave 127.0.0.1 10501",
            "cloudy slave host-a 10501 --heart --cookie s3cret",
        ),
    ),
    "master": CommandHelp(
        "find the slaves and run the experiment",
        "Start a master node on HOST:PORT, find the slaves that answer discovery (or "
        "--peers), run the experiment over them and print the report; the slaves are ended "
        "afterwards. The seed's positional form SEND_US GRACE_US SEED (microseconds) and "
        "the flags --send-for/--wait-for/--with-seed say the same thing.",
        (
            "cloudy master 127.0.0.1 10500 --slaves 4 --send-for 2s --wait-for 1s",
            "cloudy master 127.0.0.1 10500 2000000 1000000 0 --json",
        ),
    ),
    "local": CommandHelp(
        "run the whole experiment on this machine",
        "Run the experiment on this machine: start N slave processes (each under --heart) "
        "and a master, print each slave's result and the report, and end every process it "
        "started. Faults can be injected into the run (see below).",
        (
            "cloudy local --slaves 4 --send-for 2s --wait-for 1s --with-seed 0",
            "cloudy local --slaves 5 --kill-slave-at 1s --json",
        ),
    ),
    "verify": CommandHelp(
        "print the <COUNT, SUM> a run with this seed must give",
        "Print the <COUNT, SUM> every slave of a run with this seed must print when it "
        "agreed on COUNT messages (the oracle; the sum is added left to right, as the "
        "slaves add it). A long count shows its progress on a terminal; Ctrl-C ends it.",
        ("cloudy verify --with-seed 0 28582", "cloudy verify 1000000"),
    ),
    "sim": CommandHelp(
        "run the experiment under faults in the simulator, many seeds",
        "Run the experiment in the simulator (a master and --nodes slaves, each a real "
        "node, in one process on a virtual clock and network) as seeded schedules, each "
        "with a fault plan drawn from its seed (or --faults), on --workers processes; "
        "every run is checked (each result is the oracle's, no two cuts, nobody silent, "
        "no hole in a stream, no peer declared lost without a fault, nothing unhandled) "
        "and every --rerun-every-th is run again to compare trace digests. Prints each "
        "model's runs and violations, every failing seed with the command that replays "
        "it, and any digest mismatch. --seed S runs one schedule: its plan, violations, "
        "digest and replay command; --trace adds what happened, in virtual-time order. "
        "Exit status 1 if a run broke a rule or did not replay exactly.",
        (
            "cloudy sim --seeds 1000 --first 5000",
            "cloudy sim --model ring --seed 17 --faults 'crash:s2@0.1' --trace",
        ),
    ),
    "peers": CommandHelp(
        "list the nodes that answer discovery",
        "List the nodes with our cookie that answer discovery on HOST's interface (and "
        "the --peers asked over TCP); exit status 1 if there are none.",
        ("cloudy peers 127.0.0.1", "cloudy peers host-a --discovery-port 9998 --wait 3s"),
    ),
    "doctor": CommandHelp(
        "check that discovery and connections can work",
        "Check what nodes on HOST need to find and reach each other: the address HOST "
        "names, whether it is this machine's, multicast on its interface, the cookie, and "
        "whether nodes with a different cookie answer. One line per check; exit status 1 "
        "if one fails.",
        ("cloudy doctor 127.0.0.1", "cloudy doctor host-a --cookie s3cret"),
    ),
    "health": CommandHelp(
        "check that a node answers (a container probe)",
        "Connect to the node on HOST:PORT, complete the handshake (only a node with the "
        "same cookie does) and wait for its answer to one request. Exit status 0 when it "
        "answered within --timeout, else 1 with one line saying so: usable as Docker's "
        "HEALTHCHECK or a Kubernetes readiness or liveness probe.",
        ("cloudy health 127.0.0.1 10501", 'cloudy health "$POD_IP" 7000 --timeout 2s'),
    ),
    "top": CommandHelp(
        "watch the nodes and the processes of one, refreshing",
        "Show every node that answers discovery (or each NODE given): uptime, processes, "
        "connections, messages and bytes in and out per second, the heartbeat of each peer; "
        "then the processes of one node: pid, names, what it waits in, mailbox, links, "
        "monitors, messages in and out per second. On a terminal it redraws every "
        "--interval: n/p (or the arrow keys) select the next/previous node, q or Ctrl-C "
        "quits. Piped, or with --once, it prints one view.",
        (
            "cloudy top --discovery-port 9998 --node 127.0.0.1:10501",
            "cloudy top 127.0.0.1:10501 127.0.0.1:10502 --once",
        ),
    ),
    "ps": CommandHelp(
        "print the processes of a node once",
        "Print the processes of NODE once, as cloudy top shows them: pid, names, what it "
        "waits in, mailbox, links, monitors, messages in and out per second (over "
        "--interval); --json prints them as a JSON list, with the totals too.",
        ("cloudy ps 127.0.0.1:10501", "cloudy ps 127.0.0.1:10501 --json --cookie s3cret"),
    ),
}


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions but keeps the lines of a text that has several (the examples);
    adds ``(default: X)`` to each option's help that has a default worth naming and does
    not name it already."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unnamed = default is None or default is False or default == argparse.SUPPRESS
        if "default" in text or unnamed or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"
