"""Write a file atomically: a temporary file beside it, fsync, then one rename.

Every writer in the project goes through :func:`atomic_write`, so a crash, a full disk or a
bad value found halfway never leaves a half-written file, and an existing file is replaced
only by a complete new one. Standard library only (the runtime uses it on the board).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None,
                 perm: int | None = None) -> Iterator[IO[Any]]:
    """Yield a file object; on a clean exit it becomes ``path``, on an exception it vanishes.

    ``perm``: the file's mode bits (e.g. ``0o600`` for a private key); default the mode a plain
    ``open()`` would give (0666 less the umask). The temporary file is 0600 from its creation,
    so a secret is never readable by others, not even briefly.
    ``OSError`` from creating or renaming the temporary file propagates: callers turn it into
    their own one-line error naming ``path``.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if perm is None:
            umask = os.umask(0)  # mkstemp creates 0600; give the file the mode a plain open() would
            os.umask(umask)
            perm = 0o666 & ~umask
        os.chmod(tmp, perm)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
