"""runtime/package_data.py: the installed copy of csrc/ and boards/ (a wheel's runtime/_csrc,
runtime/_boards) wins over the checkout's folders, which are the fallback; the environment
variables come first in the modules that read them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from runtime.backends.ckernel_build import csrc_dir
from runtime.boards import BOARDS_DIR, boards_dir
from tests.conftest import REPO

_PROBE = ("from runtime.package_data import packaged_dir; "
          "print(packaged_dir('csrc')); print(packaged_dir('boards'))")


def _where(root: Path) -> list[Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HX_")}
    env["PYTHONPATH"] = str(root)
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    return [Path(line) for line in r.stdout.split()]


def test_the_installed_copy_wins_and_the_checkout_is_the_fallback(tmp_path):
    pkg = tmp_path / "site" / "runtime"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copyfile(REPO / "runtime" / "package_data.py", pkg / "package_data.py")
    # A checkout: no copy inside the package, so the folders beside it.
    assert _where(tmp_path / "site") == [tmp_path / "site" / "csrc", tmp_path / "site" / "boards"]
    # An installed wheel: runtime/_csrc and runtime/_boards.
    (pkg / "_csrc").mkdir()
    (pkg / "_boards").mkdir()
    assert _where(tmp_path / "site") == [pkg / "_csrc", pkg / "_boards"]


def test_this_checkout_uses_its_own_folders_unless_the_environment_says_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv("HX_CSRC_DIR", raising=False)
    monkeypatch.delenv("HX_BOARDS_DIR", raising=False)
    assert csrc_dir() == REPO / "csrc" and BOARDS_DIR == REPO / "boards" and boards_dir() == REPO / "boards"
    monkeypatch.setenv("HX_CSRC_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("HX_BOARDS_DIR", str(tmp_path / "b"))
    assert csrc_dir() == (tmp_path / "c").resolve() and boards_dir() == tmp_path / "b"
