"""Atomic file writes: write to a hidden temp name in the destination folder, then
``os.replace``. A crash or Ctrl-C leaves either the old file or the new one, never a
partial file (the timm checkpoint-saver habit)."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ResourceError

PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``dst``; on success it is renamed onto ``dst``.

    On any exception the temp file is removed and the exception re-raised; ENOSPC and
    permission errors become ``ResourceError`` so the CLI exits with code 5.
    """
    dst = Path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=PARTIAL_SUFFIX + dst.suffix, dir=dst.parent)
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
