"""The tutorial's code runs as it stands: its Python blocks, put together in one file,
serve on one node and spawn from another, each in its own OS process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cloudy.testing import free_port

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


def test_the_tutorial_runs_across_two_os_processes(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.S)
    script = tmp_path / "tour.py"
    script.write_text("\n".join(blocks))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(script), "serve", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "serving on" in server.stdout.readline()
        done = subprocess.run(
            [sys.executable, str(script), "spawn", "0", f"nid://127.0.0.1:{port}:0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "world", "42"]
