"""The shared secret nodes prove to each other: argument, ``CLOUDY_COOKIE``, or a file."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["cookie_path", "resolve_cookie"]


def cookie_path() -> Path:
    """``~/.cloudy/cookie``."""
    return Path.home() / ".cloudy" / "cookie"


def resolve_cookie(cookie: str | bytes | None = None) -> bytes:
    """The cookie to use: *cookie*, else ``$CLOUDY_COOKIE``, else the cookie file.

    The file is created on first use holding a random value, mode 0600. Creation
    is atomic (write a private temp file, then hard-link it into place), so nodes
    started at the same moment on a fresh machine all end up with the same cookie.
    """
    if cookie is None:
        cookie = os.environ.get("CLOUDY_COOKIE") or None
    if cookie is None:
        return _file_cookie(cookie_path())
    value = cookie.encode() if isinstance(cookie, str) else cookie
    if not value:
        raise ValueError("the cookie must not be empty")
    return value


def _file_cookie(path: Path) -> bytes:
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".cookie.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_urlsafe(32).encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another node won the race: then use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    value = path.read_bytes().strip()
    if not value:
        raise ValueError(f"the cookie file {path} is empty")
    return value
