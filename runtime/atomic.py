"""Write a file atomically, and only over what is ours: a checked path, a temp file, one rename.

Every writer in the project (wavs, JSON and HTML reports, plots, keys, signatures, checkpoints)
goes through :func:`atomic_write`, so a crash, a full disk or a bad value found halfway never
leaves a half-written file, and an existing file is replaced only by a complete new one.

Before anything is written, :func:`check_output_path` refuses (one line, :class:`OutputPathError`):
an empty path, a file name longer than the file system allows, an output that is one of the
command's inputs (the same file, also through a symlink or a hard link), a directory, and any
non-regular file (character or block device, FIFO, socket): a rename over ``/dev/null`` would
replace the device node with a regular file. A symlink to a regular file is written THROUGH:
the link stays and its target gets the new contents (a dangling link creates its target).
Commands call it before their work starts, so a bad ``--output`` costs no minutes.

The temporary name is short (``.hx-XXXXXXXX.tmp``), so a legal 255-byte file name still works.
Standard library only (the runtime uses it on the board).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

__all__ = ["OutputPathError", "atomic_write", "check_output_path", "describe_mode", "name_max"]

#: Prefix and suffix of every temporary file: 4 + 8 random + 4 characters.
TMP_PREFIX = ".hx-"
TMP_SUFFIX = ".tmp"


class OutputPathError(OSError):
    """An output path that must not be written; ``str()`` is one line naming the path.

    An ``OSError`` (``strerror`` is the reason), so writers that already turn ``OSError`` into
    their own one-line error keep doing so.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, code: int = errno.EINVAL) -> None:
        super().__init__(code, reason, str(path))
        self.message = f"{path}: {reason}" if str(path) else reason

    def __str__(self) -> str:
        return self.message


def describe_mode(mode: int) -> str:
    """'a directory', 'a character device', ... for a ``st_mode``."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return what
    return "not a regular file"


def name_max(directory: Path) -> int:
    """The longest file name ``directory``'s file system allows (255 on ext4/tmpfs/xfs)."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _check_name_length(p: Path) -> None:
    """A file name longer than the file system allows is one line (naming the start of it), not ENAMETOOLONG."""
    n = len(os.fsencode(p.name))
    parent = p.parent if str(p.parent) else Path(".")
    try:
        limit = name_max(parent) if parent.is_dir() else 255
    except OSError:
        limit = 255
    if n > limit:
        shown = p.parent / (p.name[:40] + "…")
        raise OutputPathError(shown, f"file name is {n} bytes long; the file system allows at most {limit}",
                              errno.ENAMETOOLONG)


def _stat(p: Path, follow: bool) -> os.stat_result | None:
    """``os.stat``/``lstat`` or None when the path does not exist; other errors are one line."""
    try:
        return os.stat(p) if follow else os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise OutputPathError(p, f"cannot write there ({e.strerror or e})", e.errno or errno.EINVAL) from None


def check_output_path(path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = (),
                      what: str = "output") -> Path:
    """The file an atomic write of ``path`` will replace, or :class:`OutputPathError`.

    ``inputs``: files the command reads; writing over one of them is refused (compared by
    device and inode, so links are seen through). See the module docstring for the rules.
    """
    if not str(path).strip():
        raise OutputPathError("", f"the {what} path is empty")
    p = Path(path)
    if str(path).endswith(os.sep):
        raise OutputPathError(p, f"names a directory; expected a file name for the {what}")
    _check_name_length(p)
    st = _stat(p, follow=False)
    target = p
    if st is not None and stat.S_ISLNK(st.st_mode):
        # Write through the link: the new contents go to its target, the link stays.
        target = Path(os.path.realpath(p))
        st = _stat(target, follow=False)
    _check_name_length(target)
    parent = target.parent if str(target.parent) else Path(".")
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise OutputPathError(p, f"is {describe_mode(st.st_mode)}; refusing to replace it with the {what} "
                                  "(name a regular file)")
        for src in inputs:
            if not str(src):
                continue
            s = _stat(Path(src), follow=True)
            if s is not None and (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                same = "is the input file" if os.path.abspath(src) == os.path.abspath(p) else f"is the same file as the input {src}"
                raise OutputPathError(p, f"{same}; refusing to overwrite it (choose another {what} name)")
    pst = _stat(parent, follow=True)
    if pst is None:
        raise OutputPathError(p, f"cannot write there ({parent} does not exist)", errno.ENOENT)
    if not stat.S_ISDIR(pst.st_mode):
        raise OutputPathError(p, f"cannot write there ({parent} is not a directory)", errno.ENOTDIR)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(p, f"cannot write there ({parent} is not writable)", errno.EACCES)
    return target


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None,
                 perm: int | None = None, inputs: Iterable[str | os.PathLike[str]] = ()) -> Iterator[IO[Any]]:
    """Yield a file object; on a clean exit it becomes ``path``, on an exception it vanishes.

    ``path`` is checked first (:func:`check_output_path`, with ``inputs``): a device, FIFO,
    socket, directory or input file is never replaced, a symlink is written through.
    ``perm``: the file's mode bits (e.g. ``0o600`` for a private key); default the mode a plain
    ``open()`` would give (0666 less the umask). The temporary file is 0600 from its creation,
    so a secret is never readable by others, not even briefly.
    ``OSError`` (including :class:`OutputPathError`) propagates: callers turn it into their own
    one-line error naming ``path``.
    """
    target = check_output_path(path, inputs=inputs)
    parent = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=TMP_PREFIX, suffix=TMP_SUFFIX)
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
        # Checked again just before the rename: the path may have changed while we worked.
        check_output_path(path, inputs=inputs)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
