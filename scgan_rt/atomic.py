"""Atomic file writes and owner files: write to a hidden temp name in the destination
folder, then ``os.replace``. A crash or Ctrl-C leaves either the old file or the new one,
never a partial file (the timm checkpoint-saver habit).

Temp names carry their owner (a host tag and the pid), so a sweep removes only the temp
files of processes that are gone; lock files (``take_lock``) hold ``host pid`` the same way.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import ResourceError, UsageError

PARTIAL_SUFFIX = ".partial"
# Room a temp name needs beyond the output's name: owner tag (4 + up to 7 pid digits + "-"),
# mkstemp's 8 random characters and two dots.
_TEMP_EXTRA = 12 + 8 + 2
LOCK_POLL_S = 0.5


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system under ``folder`` holds."""
    for d in (folder, *folder.parents):
        try:
            return int(os.pathconf(d, "PC_NAME_MAX"))
        except (OSError, ValueError):
            continue
    return 255


def name_fits(path: Path) -> bool:
    return len(os.fsencode(path.name)) <= name_max(path.parent)


def _cut(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes, never inside a character."""
    raw = os.fsencode(name)
    return name if len(raw) <= limit else raw[:max(1, limit)].decode("utf-8", "ignore") or "x"


def hidden_name(dst: Path, tail: str, reserve: int = 0) -> str:
    """``.NAME{tail}`` beside ``dst``, with NAME shortened so that the name (plus ``reserve``
    bytes more) fits the file system: a long output name never makes its temp name fail."""
    room = name_max(dst.parent) - reserve - len(os.fsencode(tail)) - 1
    return "." + _cut(dst.name, room) + tail


def temp_prefix(dst: Path) -> str:
    """Every temp file of ``dst`` starts with this (then the owner tag)."""
    return hidden_name(dst, ".", reserve=_TEMP_EXTRA + len(os.fsencode(PARTIAL_SUFFIX + dst.suffix)))


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]


def owner_alive(temp: Path, dst: Path) -> bool:
    """Whether the process that named temp file ``temp`` (of ``dst``) may still be writing
    it: another host's, our own, or a live pid. Unnamed (older) temp files count as dead."""
    m = re.match(r"([0-9a-f]{4})(\d+)-", temp.name[len(temp_prefix(dst)):])
    if m is None:
        return False
    host, pid = m.group(1), int(m.group(2))
    return host != _host_tag() or pid == os.getpid() or pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``dst``; on success it is renamed onto ``dst``.

    On any exception the temp file is removed and the exception re-raised; ENOSPC and
    permission errors become ``ResourceError`` so the CLI exits with code 5.
    """
    dst = Path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{temp_prefix(dst)}{_host_tag()}{os.getpid()}-",
                                   suffix=PARTIAL_SUFFIX + dst.suffix, dir=dst.parent)
    except OSError as e:
        raise ResourceError(f"cannot write to {dst.parent}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, dst)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ResourceError(f"disk full writing {dst}") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ResourceError(f"cannot write {dst}: {e.strerror}") from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def take_lock(path: Path) -> str | None:
    """Create the lock file ``path`` holding ``host pid``; None when taken, else who holds
    it. A lock of a process of this host that no longer runs is taken over."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None:
                return holder
            path.unlink(missing_ok=True)
            continue
        os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
        os.close(fd)
        return None
    return _holder(path) or "unknown"


def _holder(lock: Path) -> str | None:
    """``host pid`` of a live (or possibly live) holder; None when the lock is stale."""
    try:
        text = lock.read_text()
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return "unknown"
    parts = text.split()
    if len(parts) != 2 or not parts[1].isdigit():
        return None if age > 5 else "unknown"  # being written, or left empty by a crash
    host, pid = parts
    if host == socket.gethostname() and not pid_alive(int(pid)):
        return None
    return f"host {host}, pid {pid}"


@contextlib.contextmanager
def holding_lock(path: Path, wait: bool = False) -> Iterator[None]:
    """Hold the lock file ``path`` for the block: ``UsageError`` naming the holder when
    another run has it, or with ``wait`` poll until it is free."""
    while (holder := take_lock(path)) is not None:
        if not wait:
            raise UsageError(f"{path.parent} is in use by another scgan-rt run ({holder}; lock {path.name}); "
                             f"add --wait-lock to wait for it")
        time.sleep(LOCK_POLL_S)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
