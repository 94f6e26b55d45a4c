"""The commands that deploy/ runs, read from its files.

Each command is a full argv starting with ``cloudy``, with the node's own address (the
pod's IP, the container's ``hostname -i``) replaced by *host*: the manifests' tests parse
them, and a test that runs nodes can run them with an address of its own.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"

# The address put in place of the node's own.
HOST = "10.0.0.1"
# The image's ENTRYPOINT: what a container runs when it names only args.
ENTRYPOINT = ["cloudy"]

# `$(hostname -i | cut -d' ' -f1)`, the container's own address in compose and Docker.
_HOSTNAME = re.compile(r"\$\(hostname\b[^)]*\)")
# `$NAME` or `${NAME}` in a shell script; `$(NAME)` in a Kubernetes args entry.
_SHELL_VAR = re.compile(r"\$\{?(\w+)\}?")
_KUBE_VAR = re.compile(r"\$\((\w+)\)")
_SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}


def kubernetes_files() -> list[Path]:
    """The YAML files under deploy/kubernetes/, sorted."""
    return sorted([*KUBERNETES.glob("*.yaml"), *KUBERNETES.glob("*.yml")])


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of *path* (empty ones left out)."""
    with path.open() as f:
        docs = [doc for doc in yaml.safe_load_all(f) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValueError(f"{path.name}: a document is not a mapping: {doc!r}")
    return docs


def kubernetes_documents() -> list[dict[str, Any]]:
    """Every Kubernetes object of deploy/kubernetes/, file by file."""
    return [doc for path in kubernetes_files() for doc in load_documents(path)]


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a Pod, a workload (its template) or a CronJob; None for others."""
    spec: Any = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return dict(spec)
    if doc.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template = spec.get("template")
    return None if template is None else dict(template.get("spec") or {})


def containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The containers (init containers first) of *doc*'s pods."""
    spec = pod_spec(doc)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container_env(container: Mapping[str, Any], host: str = HOST) -> dict[str, str]:
    """The variables a container's commands can use: literal values, and the pod's IP as
    *host*; a secret's value is not known here, so it is left out."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[var["name"]] = host
    return env


def container_commands(doc: Mapping[str, Any], host: str = HOST) -> list[list[str]]:
    """Each container's command (its args after the image's entrypoint), then its probes'
    commands, with the env's variables put in: ``$(VAR)`` in args as Kubernetes does, and
    ``$VAR`` where a probe's ``sh -c`` script expands it. A probe's ``$(VAR)`` is left as
    it is, since Kubernetes does not expand it there."""
    commands: list[list[str]] = []
    for container in containers(doc):
        env = container_env(container, host)
        argv = [*container.get("command", ENTRYPOINT), *container.get("args", [])]
        argv = [_expand(_KUBE_VAR, word, env) for word in argv]
        commands.append(_unwrap_shell(argv, env, host))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            exec_ = container.get(probe, {}).get("exec")
            if exec_ is not None:
                commands.append(_unwrap_shell(list(exec_["command"]), env, host))
    return commands


def compose_file() -> dict[str, Any]:
    """deploy/docker-compose.yml, read."""
    (doc,) = load_documents(COMPOSE_FILE)
    return doc


def compose_commands(host: str = HOST) -> list[list[str]]:
    """Each compose service's command: its entrypoint (else the image's) and command."""
    commands: list[list[str]] = []
    for name, service in compose_file()["services"].items():
        argv = [*_words(service.get("entrypoint", ENTRYPOINT)), *_words(service.get("command"))]
        for word in argv:
            if "$" in word.replace("$$", ""):
                raise ValueError(f"service {name}: compose would fill in the $ of {word!r}")
        argv = [word.replace("$$", "$") for word in argv]
        commands.append(_unwrap_shell(argv, {}, host))
    return commands


def dockerfile_instructions() -> list[tuple[str, str]]:
    """deploy/Dockerfile's instructions as (INSTRUCTION, rest), lines joined, comments out."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage, its FROM first."""
    instructions = dockerfile_instructions()
    start = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


def dockerfile_healthcheck(host: str = HOST) -> list[str]:
    """The command of the final stage's HEALTHCHECK (shell or exec form)."""
    checks = [rest for keyword, rest in final_stage() if keyword == "HEALTHCHECK"]
    if not checks:
        raise ValueError("the Dockerfile's final stage has no HEALTHCHECK")
    _, found, cmd = checks[-1].partition("CMD ")
    if not found:
        raise ValueError(f"HEALTHCHECK without CMD: {checks[-1]!r}")
    cmd = cmd.strip()
    argv = json.loads(cmd) if cmd.startswith("[") else ["/bin/sh", "-c", cmd]
    return _unwrap_shell(argv, {}, host)


def _words(value: str | list[str] | None) -> list[str]:
    """A compose entrypoint or command as argv (a string is split as a shell would)."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def _expand(pattern: re.Pattern[str], text: str, env: Mapping[str, str]) -> str:
    """*text* with the variables that *pattern* matches and *env* knows put in."""
    return pattern.sub(lambda m: env.get(m[1], m[0]), text)


def _unwrap_shell(argv: list[str], env: Mapping[str, str], host: str) -> list[str]:
    """*argv*; for ``sh -c SCRIPT`` the command that SCRIPT runs, which must be one simple
    command (``exec`` allowed before it), with its substitutions put in."""
    if len(argv) < 3 or Path(argv[0]).name not in ("sh", "bash") or argv[1] != "-c":
        return argv
    script = _HOSTNAME.sub(host, argv[2])
    script = _expand(_SHELL_VAR, script, env)
    words = shlex.split(script)
    if words[:1] == ["exec"]:
        words = words[1:]
    if not words or any(word in _SHELL_OPERATORS or word.endswith(";") for word in words):
        raise ValueError(f"not one simple command: {argv[2]!r}")
    return words
