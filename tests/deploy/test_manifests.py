"""deploy/: the Kubernetes manifests are valid objects, no file holds a cookie, every
command the files run is one the CLI accepts, and the image runs as a non-root user."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from cloudy.cli.args import UsageError, parse_args
from deploy.manifests import (
    DEPLOY,
    DOCKERFILE,
    compose_commands,
    compose_file,
    container_commands,
    containers,
    dockerfile_healthcheck,
    dockerfile_instructions,
    final_stage,
    kubernetes_documents,
    kubernetes_files,
    load_documents,
)

# The newest Kubernetes schema the installed kubernetes-validate ships.
K8S_VERSION: str = kubernetes_validate.latest_version()


def _name(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in kubernetes_documents() if doc["kind"] == kind]
    return doc


# -- the Kubernetes schema


@pytest.mark.parametrize("path", kubernetes_files(), ids=lambda p: p.name)
def test_manifest_is_valid(path: Path) -> None:
    docs = load_documents(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        try:
            _validate(doc)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name}: {_name(doc)} against Kubernetes {K8S_VERSION}: {e}")


def test_manifests_are_the_expected_objects() -> None:
    names = sorted(_name(doc) for doc in kubernetes_documents())
    assert names == ["Job/cloudy-master", "Service/cloudy-slaves", "StatefulSet/cloudy-slave"]


def _misspell_replicas(doc: dict[str, Any]) -> None:
    doc["spec"]["replica"] = doc["spec"].pop("replicas")


def _misspell_pull_policy(doc: dict[str, Any]) -> None:
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["imagePulPolicy"] = container.pop("imagePullPolicy")


def _replicas_as_text(doc: dict[str, Any]) -> None:
    doc["spec"]["replicas"] = "four"


@pytest.mark.parametrize("spoil", [_misspell_replicas, _misspell_pull_policy, _replicas_as_text])
def test_a_spoilt_statefulset_is_refused(spoil: Any) -> None:
    """The validation has teeth: a misspelt field or a wrong type fails it."""
    doc = copy.deepcopy(_by_kind("StatefulSet"))
    _validate(doc)
    spoil(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)


def test_the_headless_service_serves_the_slaves_dns_name() -> None:
    """`--peers-dns cloudy-slaves` finds the slaves: SRV _cloudy._tcp.cloudy-slaves."""
    service, slaves = _by_kind("Service"), _by_kind("StatefulSet")
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert {"name": "cloudy", "port": 7000, "protocol": "TCP"}.items() <= spec["ports"][0].items()
    assert spec["selector"].items() <= slaves["spec"]["template"]["metadata"]["labels"].items()
    assert slaves["spec"]["serviceName"] == service["metadata"]["name"]
    for doc in (slaves, _by_kind("Job")):
        for argv in container_commands(doc):
            if "--peers-dns" in argv:
                assert argv[argv.index("--peers-dns") + 1] == service["metadata"]["name"]


def test_containers_are_limited_and_not_root() -> None:
    for doc in kubernetes_documents():
        for container in containers(doc):
            where = f"{_name(doc)} {container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), where
            assert "memory" in resources.get("limits", {}), where
            sc = container.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("runAsUser", 0) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where


# -- no cookie in any file

# `CLOUDY_COOKIE=VALUE` or `CLOUDY_COOKIE: VALUE` anywhere in a file of deploy/
_COOKIE_SETTING = re.compile(r"CLOUDY_COOKIE[\"']?\s*[:=]\s*[\"']?(\S*)")


def _deploy_files() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*") if path.is_file())


@pytest.mark.parametrize("path", _deploy_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_no_cookie_in_the_file(path: Path) -> None:
    text = path.read_text()
    assert "--cookie" not in text, f"{path.name} passes --cookie (visible in ps)"
    for m in _COOKIE_SETTING.finditer(text):
        # a reference to the variable, or a command that makes one up; never a value
        assert m[1].startswith(("${CLOUDY_COOKIE", "$(")), f"{path.name}: {m[0]!r}"


def test_kubernetes_cookie_comes_from_a_secret() -> None:
    seen = 0
    for doc in kubernetes_documents():
        assert doc["kind"] != "Secret", "the Secret is made with kubectl, not kept in a file"
        for container in containers(doc):
            (var,) = [var for var in container.get("env", []) if var["name"] == "CLOUDY_COOKIE"]
            assert "value" not in var
            ref = var["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == ("cloudy-cookie", "cookie")
            seen += 1
    assert seen == 2


def test_compose_cookie_is_passed_through() -> None:
    for name, service in compose_file()["services"].items():
        env = service.get("environment", {})
        if isinstance(env, list):
            env = dict(item.partition("=")[::2] for item in env)
        assert re.fullmatch(r"\$\{CLOUDY_COOKIE(:?[?-][^}]*)?\}", env.get("CLOUDY_COOKIE", "")), (
            f"service {name}: CLOUDY_COOKIE must be ${{CLOUDY_COOKIE...}}, not a value"
        )


def test_dockerfile_sets_no_cookie() -> None:
    for keyword, rest in dockerfile_instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            assert "COOKIE" not in rest.upper(), f"{keyword} {rest}"


# -- every command names real CLI options


def _commands() -> list[tuple[str, list[str]]]:
    found = [("Dockerfile HEALTHCHECK", dockerfile_healthcheck())]
    found += [("docker-compose.yml", argv) for argv in compose_commands()]
    for doc in kubernetes_documents():
        found += [(_name(doc), argv) for argv in container_commands(doc)]
    return found


def test_the_commands_are_all_found() -> None:
    """Dockerfile 1, compose 2, slave's args and 2 probes, master's args."""
    assert len(_commands()) == 1 + 2 + 3 + 1


@pytest.mark.parametrize(
    ("where", "argv"),
    _commands(),
    ids=[f"{where}: {shlex.join(argv)}" for where, argv in _commands()],
)
def test_command_parses(where: str, argv: list[str]) -> None:
    shown = f"{where}: {shlex.join(argv)}"
    assert argv[0] == "cloudy", shown
    assert not any("$" in word for word in argv), f"{shown}: a variable left unexpanded"
    refused = ""
    try:
        args = parse_args(argv[1:])
    except (SystemExit, UsageError) as e:
        refused = str(e) or repr(e)
    else:
        assert args.command == argv[1], shown
    if refused:  # failed outside the handler: one message, not a chain of three
        pytest.fail(f"the CLI refuses {shown}: {refused}", pytrace=False)


# -- the image


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_user() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "a builder stage, then the final one"
    assert any("pip wheel" in rest for keyword, rest in instructions[:-1] if keyword == "RUN")
    stage = final_stage()
    assert stage[0][1].split()[0] == "python:3.11-slim"
    runs = [rest for keyword, rest in stage if keyword == "RUN"]
    assert any(re.search(r"pip install .*\.whl", rest) for rest in runs), runs
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert ("ENTRYPOINT", '["cloudy"]') in stage
    assert ("EXPOSE", "7000") in stage
    assert any(keyword == "HEALTHCHECK" for keyword, _ in stage)
    assert DOCKERFILE.with_name("Dockerfile.dockerignore").exists()
