"""Helpers for tests that start OS processes."""

from __future__ import annotations

import os

__all__ = ["processes_mentioning"]


def processes_mentioning(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains *marker*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    continue  # a zombie has ended; its parent has yet to reap it
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    return found
