"""The package's layer rules, read from src/cloudy with ``ast``: every import counts (in
functions and ``if TYPE_CHECKING:`` too); ``from pkg import x`` targets ``pkg.x`` if that is a
submodule (and pkg/__init__ does not bind ``x`` to something else), else ``pkg``."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "cloudy"
MAX_LINES = 400

# Bottom to top; "x.*" means the package x and everything under it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cloudy.identity", "cloudy.cookie", "cloudy.aio", "cloudy.clock"),
    # errors name the reason a linked process died (a message), so they sit with messages
    ("cloudy.errors", "cloudy.message", "cloudy.messages", "cloudy.closure"),
    ("cloudy.wire.*",),
    ("cloudy.transport.*",),
    # metrics: a node's counters for Prometheus, served by the node that has them
    ("cloudy.node.*", "cloudy.metrics"),
    (
        "cloudy.process",
        "cloudy.receiving",
        "cloudy.channels",
        "cloudy.links",
        "cloudy.combinators",
        "cloudy.introspection",
        "cloudy",
    ),
    (
        "cloudy.backend.*",
        "cloudy.ring.*",
        "cloudy.testing.*",
        "cloudy.supervisor_spec",
        "cloudy.supervisor",
    ),
    (
        "cloudy.local",
        "cloudy.heart",
        "cloudy.faults",
        "cloudy.plot",
        "cloudy.cli_help",
        "cloudy.top_args",
        "cloudy.sim_args",
        "cloudy.cli_values",
        "cloudy.cli_args",
        "cloudy.cli_errors",
        "cloudy.cli_progress",
        "cloudy.cli_verify",
        "cloudy.cli_sim",
        "cloudy.display",
        "cloudy.interrupt",
        "cloudy.slave_cmd",
    ),
    ("cloudy.top_view", "cloudy.top", "cloudy.cli"),
)
# Modules that may use only cloudy's public API, and the modules that API consists of
# (besides the names in cloudy.__all__).
RESTRICTED: tuple[str, ...] = ("cloudy.ring.*", "cloudy.backend.*", "cloudy.cli", "cloudy.local")
RESTRICTED += ("cloudy.heart", "cloudy.cli_args", "cloudy.supervisor", "cloudy.supervisor_spec")
RESTRICTED += ("cloudy.faults", "cloudy.plot", "cloudy.cli_help", "cloudy.cli_errors")
RESTRICTED += (
    "cloudy.cli_verify",
    "cloudy.cli_sim",
    "cloudy.top",
    "cloudy.top_view",
    "cloudy.top_args",
)
PUBLIC: tuple[str, ...] = ("cloudy.aio", "cloudy.errors", "cloudy.identity", "cloudy.cookie")
PUBLIC += ("cloudy.clock", "cloudy.testing.*")
PUBLIC += ("cloudy.transport.discovery", "cloudy.wire.discovery", "cloudy.local")
PUBLIC += ("cloudy.backend.*", "cloudy.ring.*", "cloudy.heart", "cloudy.cli_args")
PUBLIC += ("cloudy.supervisor_spec", "cloudy.supervisor", "cloudy.faults", "cloudy.plot")
PUBLIC += ("cloudy.cli_help", "cloudy.cli_errors", "cloudy.cli_verify", "cloudy.cli_sim")
PUBLIC += ("cloudy.top", "cloudy.top_view", "cloudy.top_args", "cloudy.sim_args")
RESTRICTED += ("cloudy.display", "cloudy.interrupt", "cloudy.slave_cmd", "cloudy.cli_values")
PUBLIC += ("cloudy.display", "cloudy.interrupt", "cloudy.slave_cmd", "cloudy.cli_values")
RESTRICTED += ("cloudy.cli_progress",)
PUBLIC += ("cloudy.cli_progress",)


@dataclass(frozen=True)
class Module:
    name: str
    file: str
    is_package: bool
    source: str


@dataclass(frozen=True)
class Import:
    importer: str
    file: str
    line: int
    target: str
    name: str | None  # the name after `from x import`; None for `import x`

    def __str__(self) -> str:
        what = self.target if self.name is None else f"{self.name} (from {self.target})"
        return f"{self.file}:{self.line}: {self.importer} imports {what}"


def matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return module == pattern[:-2] or module.startswith(pattern[:-1])
    return module == pattern


def layer_of(module: str) -> int | None:
    for index, patterns in enumerate(LAYERS):
        if any(matches(module, p) for p in patterns):
            return index
    return None


@cache
def real_modules() -> tuple[Module, ...]:
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        file = path.relative_to(ROOT).as_posix()
        found.append(Module(name, file, is_package, path.read_text(encoding="utf-8")))
    return tuple(found)


def shadowing_names(init: Module) -> set[str]:
    """Top-level names a package's __init__ binds to something else than its submodule
    (``from .closure import closure`` makes ``from cloudy import closure`` the function)."""
    names: set[str] = set()
    for node in ast.parse(init.source, init.file).body:
        if isinstance(node, ast.ImportFrom) and node.module:  # not `from . import sub`
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def parse_imports(modules: Iterable[Module]) -> list[Import]:
    modules = list(modules)
    known = {m.name for m in modules}
    known -= {f"{m.name}.{n}" for m in modules if m.is_package for n in shadowing_names(m)}
    result: list[Import] = []
    for mod in modules:
        package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
        for node in ast.walk(ast.parse(mod.source, mod.file)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "cloudy" or alias.name.startswith("cloudy."):
                        result.append(Import(mod.name, mod.file, node.lineno, alias.name, None))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                if base != "cloudy" and not base.startswith("cloudy."):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in known else base
                    result.append(Import(mod.name, mod.file, node.lineno, target, alias.name))
    return result


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, each sorted."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            if (v := todo.pop()) not in seen:
                seen.add(v)
                todo.extend(graph.get(v, ()))
        reach[start] = seen
    cycles = {
        tuple(sorted(w for w in reach[v] if v in reach.get(w, ()))) for v in graph if v in reach[v]
    }
    return sorted(list(c) for c in cycles)


def import_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, set())
        if imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    return graph


def layer_violations(imports: Iterable[Import]) -> list[tuple[Import, str]]:
    found = []
    for imp in imports:
        mine, theirs = layer_of(imp.importer), layer_of(imp.target)
        if mine is None or theirs is None:
            found.append((imp, f"not placed in LAYERS ({imp.importer} / {imp.target})"))
        elif theirs > mine:
            found.append((imp, f"layer {mine} imports layer {theirs}"))
    return found


def package_dir(module: str, packages: set[str]) -> str:
    return module if module in packages else module.rpartition(".")[0]


@cache
def exported_names() -> frozenset[str]:
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return frozenset(ast.literal_eval(node.value))
    raise AssertionError("src/cloudy/__init__.py has no literal __all__")


def report(title: str, lines: Iterable[str]) -> str:
    return title + "\n  " + "\n  ".join(lines)


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = [f"{m.file} ({m.name})" for m in real_modules() if layer_of(m.name) is None]
    assert not unplaced, report("modules missing from LAYERS in test_layers.py:", unplaced)


def test_modules_import_only_their_own_or_lower_layers() -> None:
    found = layer_violations(parse_imports(real_modules()))
    bad = [f"{imp}: {why}" for imp, why in found]
    assert not bad, report("imports against the layer order:", bad)


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(parse_imports(real_modules())))
    assert not cycles, report("import cycles (modules of each):", map(", ".join, cycles))


def test_api_users_import_only_public_api() -> None:
    bad = []
    for imp in parse_imports(real_modules()):
        if not any(matches(imp.importer, p) for p in RESTRICTED):
            continue
        if imp.target == "cloudy":
            if imp.name is None or (imp.name != "*" and imp.name not in exported_names()):
                bad.append(f"{imp}: not in cloudy.__all__")
        elif not any(matches(imp.target, p) for p in PUBLIC):
            bad.append(f"{imp}: {imp.target} is not public API")
    assert not bad, report("non-public imports in ring/backend/cli/local/supervisor:", bad)


def test_no_private_names_imported_across_packages() -> None:
    packages = {m.name for m in real_modules() if m.is_package}
    bad = [
        f"{imp}: private name from another package"
        for imp in parse_imports(real_modules())
        if imp.name is not None
        and imp.name.startswith("_")
        and package_dir(imp.importer, packages) != package_dir(imp.target, packages)
    ]
    assert not bad, report("private names imported across package directories:", bad)


def test_modules_are_at_most_400_lines() -> None:
    sizes = {m.file: len(m.source.splitlines()) for m in real_modules()}
    over = {file for file, n in sizes.items() if n > MAX_LINES}
    bad = [f"{file}: {sizes[file]} lines" for file in sorted(over)]
    assert not bad, report(f"modules over {MAX_LINES} lines:", bad)


def test_checkers_catch_synthetic_violations() -> None:
    fake = [
        Module("cloudy.node.a", "a.py", False, "from . import b\n"),
        Module("cloudy.node.b", "b.py", False, "def f() -> None:\n    from .a import x\n"),
        Module("cloudy", "init.py", True, "from .node import a\nfrom .errors import errors\n"),
        Module("cloudy.errors", "errors.py", False, "if T:\n    from .node.a import y\n"),
        Module("cloudy.ring.r", "r.py", False, "from .. import errors\n"),  # the shadowing name
    ]
    imports = parse_imports(fake)
    assert {(i.importer, i.target) for i in imports} == {
        ("cloudy.node.a", "cloudy.node.b"),
        ("cloudy.node.b", "cloudy.node.a"),
        ("cloudy", "cloudy.node.a"),
        ("cloudy", "cloudy.errors"),
        ("cloudy.errors", "cloudy.node.a"),
        ("cloudy.ring.r", "cloudy"),
    }
    assert find_cycles(import_graph(imports)) == [["cloudy.node.a", "cloudy.node.b"]]
    found = layer_violations(imports)
    assert [(i.file, i.line, i.target) for i, _ in found] == [("errors.py", 2, "cloudy.node.a")]
    assert "layer 1 imports layer 4" in found[0][1]
