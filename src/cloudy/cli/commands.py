"""The ``cloudy`` command: the experiment's slave, master and one-machine run, and tools.

Every command has its own --help with examples (texts in `cloudy.cli.help`).

cloudy slave HOST PORT [--heart [--heart-intensity R/T]] [--metrics-port N]
cloudy master HOST PORT [SEND_US GRACE_US SEED] [--send-for 2s --wait-for 1s --with-seed 0]
              [--metrics-port N]
cloudy local [--slaves 4 --send-for 2s --wait-for 1s --with-seed 0]
             [--kill-slave-at T] [--freeze-slave-at T:D] [--fault-slave K]
             [--kill-master-at T] [--freeze-master-at T:D]
cloudy verify --with-seed S COUNT
cloudy sim [--seeds 200 --first 1 --model all --nodes 4 --workers N] [--faults PLAN]
           [--seed S [--trace]] [--json]
cloudy peers HOST; cloudy doctor HOST; cloudy health HOST PORT
cloudy top [NODE...] [--node NODE --once]; cloudy ps NODE [--json]
(slave, master, local, peers, doctor, top and ps also take --cookie C)

Bad arguments give one line on stderr and exit status 2; a failed run exits 1
(`cloudy.cli.errors`: with --json, also {"ok": false, "error": ...} on stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ..aio import run
from ..backend import simplelocalnet as sl
from ..backend import tools
from ..backend.health import health
from ..errors import CloudyError
from ..identity import NodeId
from ..ring.master import ExperimentError, Params, Progress, Report, run_experiment
from .args import UsageError, parse_args, parse_duration
from .display import Display, display_for
from .errors import report_failure
from .faults import Fault, FaultInjector, Victim, plan_faults
from .heart import describe_status, keep_running
from .interrupt import leave_on_ctrl_c
from .local import LocalSlaves, cloudy_command
from .plot import picture
from .report import print_outcomes, print_report
from .slave import run_slave_node
from .tls import tls_contexts, tls_flags
from .top import cmd_ps, cmd_top
from .verify import cmd_verify

__all__ = ["main", "parse_duration"]

# How long `cloudy local` waits for its slaves' result lines once the master has their
# results (they print before they report: the lines are normally there already).
RESULT_LINES_WAIT = 5.0
# How long the slaves a master finds by DNS must stay the same before it forms: pods
# of a StatefulSet start within a second or two of each other (Akka waits 5 s; a
# longer --stable-for suits a slow cluster).
DNS_STABLE_FOR = 2.0


def _params(args: argparse.Namespace) -> Params:
    """The run's parameters: flags win over the seed's positional form; defaults 2s/1s/0."""

    def pick(flag: Any, positional: Any, default: Any, name: str) -> Any:
        if flag is not None and positional is not None and flag != positional:
            raise UsageError(f"{name} given twice with different values")
        return flag if flag is not None else positional if positional is not None else default

    send_for = pick(args.send_for, getattr(args, "send_us", None), 2.0, "the send period")
    wait_for = pick(args.wait_for, getattr(args, "grace_us", None), 1.0, "the grace period")
    seed = pick(args.with_seed, getattr(args, "seed", None), 0, "the seed")
    if send_for <= 0:
        raise UsageError("the send period must be longer than zero")
    return Params(
        send_for=send_for,
        wait_for=wait_for,
        seed=seed,
        model=args.model,
        tokens=args.tokens,
        window=args.window or 0,
    )


# flag (as argparse names it) -> the backend's (and its node's) option
_OPTIONS = {"discovery_port": "multicast_port", "detect": "heartbeat_timeout"}
_OPTIONS |= {"peers": "peers", "peers_dns": "peers_dns", "dns_interval": "dns_interval"}
_OPTIONS |= {"dns_server": "dns_server"}


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"cookie": args.cookie} if args.cookie is not None else {}
    given = {flag: getattr(args, flag, None) for flag in _OPTIONS}
    options |= {_OPTIONS[flag]: value for flag, value in given.items() if value is not None}
    contexts = tls_contexts(args)
    if contexts is not None:
        options["ssl"] = contexts
    if getattr(args, "metrics_port", None) is not None:  # the node serves its metrics
        from ..observe.metrics import Metrics

        options["services"] = [Metrics(args.metrics_port)]
    return options


async def _master(
    host: str,
    port: int,
    params: Params,
    want: int | None,
    options: dict[str, Any],
    progress: Progress,
    on_wait: Callable[[], None] = lambda: None,
    *,
    on_found: Callable[[int], None],
    within: float,
    stable_for: float | None = None,
) -> Report:
    """Find the slaves (*want* of them, if given), run the experiment, end the slaves."""
    backend = sl.initialize_backend(host, port, **options)
    report: list[Report] = []

    async def experiment(slaves: list[NodeId]) -> None:
        try:
            report.append(await run_experiment(slaves, params, progress))
        finally:
            await sl.terminate_slaves(slaves)

    if stable_for is None:  # found by DNS: pods still appearing are waited for
        stable_for = DNS_STABLE_FOR if backend.dns is not None else 0.0
    await sl.run_master(
        backend,
        experiment,
        slaves=want,
        within=within,
        stable_for=stable_for,
        on_wait=on_wait,
        on_found=on_found,
    )
    if not report:
        raise ExperimentError("the master ended without a result")
    return report[0]


def cmd_slave(args: argparse.Namespace) -> int:
    if args.heart:
        return _slave_with_heart(args)
    return run_slave_node(
        args.host,
        args.port,
        _backend_options(args),
        quiet=args.quiet,
        watch_stdin=args.exit_with_stdin,
    )


def _slave_with_heart(args: argparse.Namespace) -> int:
    """Run this slave as a child process that `keep_running` restarts when it dies."""
    if args.port == 0:
        raise UsageError(
            "--heart needs a fixed port, not 0: a restarted slave comes back on the same"
        )
    command = [*cloudy_command(), "slave", args.host, str(args.port), "--exit-with-stdin"]
    if args.quiet:
        command.append("--quiet")
    if args.discovery_port is not None:
        command += ["--discovery-port", str(args.discovery_port)]
    if args.peers is not None:
        command += ["--peers", ",".join(map(str, args.peers))]
    for flag in ("peers_dns", "dns_interval", "dns_server"):
        value = getattr(args, flag)
        if value is not None:
            text = f"{value}s" if flag == "dns_interval" else str(value)
            command += ["--" + flag.replace("_", "-"), text]
    if args.detect is not None:
        command += ["--detect", f"{args.detect}s"]
    if args.metrics_port is not None:
        command += ["--metrics-port", str(args.metrics_port)]
    command += tls_flags(args)
    name = f"slave {NodeId(args.host, args.port)}"
    # the cookie in the environment, not on a command line others can read
    env = None if args.cookie is None else dict(os.environ, CLOUDY_COOKIE=args.cookie)
    return keep_running(
        command, name, args.heart_intensity, env=env, watch_stdin=args.exit_with_stdin
    )


def cmd_master(args: argparse.Namespace) -> int:
    params, options = _params(args), _backend_options(args)
    display = display_for(params, args.slaves, args.discover_timeout)
    with display.shown(), leave_on_ctrl_c(lambda: display.stopped("interrupted")):
        report = run(
            _master(
                *(args.host, args.port, params, args.slaves, options, display),
                on_found=display.found,
                within=args.discover_timeout,
                stable_for=args.stable_for,
            )
        )
        display.done(report)
    print_report(report, args.json, sys.stdout)
    picture(args.plot, report)
    return 0 if report.agree else 1


def cmd_local(args: argparse.Namespace) -> int:
    params, faults = _params(args), _faults(args)
    # the slaves' lines, and the faults', go above the live display, never across it
    display = display_for(params, args.slaves, args.discover_timeout)
    err = display.sink(sys.stderr)
    with LocalSlaves(
        args.slaves,
        args.discovery_port,
        detect=args.detect,
        cookie=args.cookie,
        verbose=args.verbose,
    ) as slaves:
        slaves.start(display.sink(sys.stderr if args.json else sys.stdout), err)
        out = display.writer(sys.stderr)
        with FaultInjector(faults, _victim(slaves), params.send_for, out) as injector:
            if any(f.slave is None for f in faults):  # the master must be a child to fault
                report = _child_master(params, slaves, injector, display, args.discover_timeout)
            else:
                host, port = slaves.host, slaves.master_port
                options = {
                    "multicast_port": slaves.discovery_port,
                    "cookie": slaves.cookie,
                    "heartbeat_timeout": args.detect,
                }
                with display.shown():
                    progress = _starting_faults(display, injector.start)
                    report = run(
                        _master(
                            *(host, port, params, args.slaves, options, progress, slaves.check),
                            on_found=display.found,
                            within=args.discover_timeout,
                        )
                    )
                    display.done(report)
                    # each slave's result line above the display, before the table
                    slaves.wait_for_outcomes(RESULT_LINES_WAIT, {s.node for s in report.slaves})
        if report is None:  # the master was killed: the slaves finished without it
            slaves.finish(0.0)
            picture(args.plot, None)
            return print_outcomes(slaves.outcomes(), params, args.json, sys.stdout)
        slaves.finish()
        print_report(report, args.json, sys.stdout, table=False)
        picture(args.plot, report)
        return 0 if report.agree else 1


def _faults(args: argparse.Namespace) -> list[Fault]:
    try:
        return plan_faults(
            args.slaves,
            kill_slave_at=args.kill_slave_at,
            freeze_slave_at=args.freeze_slave_at,
            kill_master_at=args.kill_master_at,
            freeze_master_at=args.freeze_master_at,
            fault_slave=args.fault_slave,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None


def _victim(slaves: LocalSlaves) -> Victim:
    """Whom a fault hits: a slave's node process (not its heart), or the master's."""

    def victim(fault: Fault) -> tuple[str, int | None]:
        if fault.slave is not None:
            return f"slave {slaves.nodes[fault.slave]}", slaves.node_pid(fault.slave)
        master = slaves.master
        pid = master.pid if master is not None and master.poll() is None else None
        return f"master {NodeId(slaves.host, slaves.master_port)}", pid

    return victim


def _starting_faults(progress: Progress, start: Callable[[], None]) -> Progress:
    """*progress*, calling *start* too once SEND has begun."""

    def update(phase: str, left: float, seen: int) -> None:
        if phase == "SEND":
            start()
        progress(phase, left, seen)

    return update


def _child_master(
    params: Params, slaves: LocalSlaves, injector: FaultInjector, display: Display, within: float
) -> Report | None:
    """Run the master as a child process; its report, or None if it was killed or
    failed during the run (then once every slave has printed its result or that it
    has none, or time ran out)."""

    def watch(line: str) -> None:
        if line.startswith("cloudy: SEND"):
            injector.start()

    master = slaves.start_master(params, watch, display.sink(sys.stderr), within)
    while master.poll() is None:
        if not injector.started:
            slaves.check()
        with contextlib.suppress(subprocess.TimeoutExpired):
            master.wait(0.1)
    report = slaves.master_report()
    if report is not None:
        return report
    if master.returncode != -signal.SIGKILL and not injector.started:
        raise ExperimentError(
            f"the master exited with {describe_status(master.returncode)}; see above"
        )
    # killed, or failed after SEND began (frozen past detection, say): the slaves
    # finish the run without it
    slaves.wait_for_outcomes(params.send_for + params.wait_for + 30.0)
    return None


def cmd_peers(args: argparse.Namespace) -> int:
    return run(tools.peers(args.host, args.wait, **_backend_options(args)))


def cmd_doctor(args: argparse.Namespace) -> int:
    return run(tools.doctor(args.host, **_backend_options(args)))


def cmd_health(args: argparse.Namespace) -> int:
    options = _backend_options(args)
    return run(health(args.host, args.port, timeout=args.timeout, **options))


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "slave": cmd_slave,
    "master": cmd_master,
    "local": cmd_local,
    "verify": cmd_verify,
    "sim": lambda args: _cmd_sim(args),
    "peers": cmd_peers,
    "doctor": cmd_doctor,
    "health": cmd_health,
    "top": cmd_top,
    "ps": cmd_ps,
}


def _cmd_sim(args: argparse.Namespace) -> int:
    from .sim import cmd_sim  # (the simulator is loaded only for `cloudy sim`)

    return cmd_sim(args)


def main(argv: list[str] | None = None) -> int:
    """Run the ``cloudy`` command; return its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args: argparse.Namespace | None = None
    try:
        args = parse_args(argv)
        return _COMMANDS[args.command](args)
    except (UsageError, KeyboardInterrupt, CloudyError, OSError, ValueError) as e:
        return report_failure(e, argv, args)
