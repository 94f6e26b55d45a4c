"""What the layer rules leave to a test: module size, and what ``import cloudy`` loads.

The layers themselves — each module imports only from the layers below its own, the
layers above the process API use only the public API, the runtime needs no optional
extra — are import-linter's contracts in pyproject.toml, checked by ``make lint``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "cloudy"
MAX_LINES = 400
# What `import cloudy` must not load: the command line, the views, the experiment,
# the simulator, and the optional extras (and rich, which only the command line uses).
NOT_LOADED: tuple[str, ...] = ("cloudy.cli", "cloudy.observe", "cloudy.ring", "cloudy.testing")
NOT_LOADED += ("prometheus_client", "matplotlib", "rich", "uvloop")


def test_modules_are_at_most_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in PACKAGE_DIR.rglob("*.py")
    }
    over = [f"{file}: {n} lines" for file, n in sorted(sizes.items()) if n > MAX_LINES]
    assert over == [], f"modules over {MAX_LINES} lines: {over}"


def test_import_cloudy_loads_no_command_line_view_experiment_or_extra() -> None:
    code = "import json, sys, cloudy; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stdout)
    unwanted = [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_LOADED)]
    assert unwanted == []
    assert "cloudy.node.local_node" in loaded  # (it did load the runtime)


def test_python_m_cloudy_is_the_cloudy_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cloudy", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("cloudy "), done
