"""Where the runtime finds its non-Python files: the C kernel sources and the board TOMLs.

A wheel carries them inside the package (``runtime/_csrc/``, ``runtime/_boards/``: setup.py's
build step copies the top-level ``csrc/`` and ``boards/`` there), so ``pip install '.[runtime]'``
gives a board a working runtime without the checkout. A checkout, or an editable install, has
them at the top level beside ``runtime/``. The environment variables (``HX_CSRC_DIR``,
``HX_BOARDS_DIR``) still come first; their modules read those.

Standard library only: this module runs on the boards.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["packaged_dir"]

#: Top-level folder of the checkout -> its copy inside the installed package (see setup.py).
INSTALLED_NAMES = {"csrc": "_csrc", "boards": "_boards"}


def packaged_dir(name: str) -> Path:
    """The installed copy of the checkout's top-level ``name`` folder (``csrc`` or ``boards``) if
    the package carries one, else that folder beside the ``runtime/`` package (a checkout)."""
    installed = resources.files(__package__ or "runtime") / INSTALLED_NAMES[name]
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / name
