"""Native libraries' chatter kept off the terminal, and shown on ``--verbose``.

TensorFlow's converter and the LiteRT interpreter write from C++ straight to file descriptor 2
(``fully_quantize: 0, inference_type: 6 ...``, ``INFO: Created TensorFlow Lite XNNPACK delegate
for CPU.``) and TensorFlow warns from Python (``tf.lite.Interpreter is deprecated``), whatever
Python's log levels say. Those lines are not the user's business: they broke the one-line error
contract and drew over the live progress bar. :func:`native_chatter` wraps the calls that make
them (converter, interpreter creation): fd 2 goes to a temporary file for the duration, and
every line written there is re-logged at DEBUG on the ``hx.native`` logger. :func:`set_verbose`
(the commands' ``--verbose``) sends that logger to stderr, so nothing is lost, only kept quiet;
it also sets ``HX_VERBOSE=1`` for child processes (``stream``'s audio worker), which this module
reads when it is imported.

Standard library only (the runtime uses it on the board).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["LOGGER", "VERBOSE_ENV", "native_chatter", "set_verbose"]

LOGGER = logging.getLogger("hx.native")
VERBOSE_ENV = "HX_VERBOSE"

# fd 2 is per process: one capture at a time. A nested or concurrent capture would see its
# lines re-logged (and, with --verbose, written into the outer capture) twice.
_lock = threading.Lock()
_depth = 0


def set_verbose(verbose: bool) -> None:
    """``--verbose``: show the captured native lines on stderr (prefixed with where they came from)."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # the audio worker and other child processes show theirs too
    LOGGER.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if verbose and not any(getattr(h, "_hx_native", False) for h in LOGGER.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._hx_native = True  # type: ignore[attr-defined]
        LOGGER.addHandler(h)
    LOGGER.propagate = False  # never through the root logger's handlers (pytest's, an application's)


@contextmanager
def native_chatter(source: str) -> Iterator[None]:
    """Capture what native code (and Python) writes to fd 2 inside the block; log it at DEBUG.

    ``source`` names the caller in each re-logged line (``[litert] INFO: Created ...``). Without
    a real fd 2 (an embedding host closed it) the block runs uncaptured.
    """
    global _depth
    with _lock:
        outer = _depth == 0
        _depth += 1
    saved = None
    tmp = None
    try:
        if outer:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
                tmp = tempfile.TemporaryFile(mode="w+b")
                os.dup2(tmp.fileno(), 2)
            except OSError:  # no fd 2 to redirect: run the block as it is
                if saved is not None:
                    os.close(saved)
                saved = None
        yield
    finally:
        if saved is not None and tmp is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            tmp.close()
            for line in text.splitlines():
                if line.strip():
                    LOGGER.debug("[%s] %s", source, line.rstrip())
        elif tmp is not None:
            tmp.close()
        with _lock:
            _depth -= 1


if os.environ.get(VERBOSE_ENV) == "1":  # a child of a --verbose command
    set_verbose(True)
