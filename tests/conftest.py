"""Session fixtures shared across the suite (exporting a bundle takes about a minute)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_toolchain(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m toolchain ARGS`` in a subprocess, as a user would run it."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "toolchain", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO, env=env)


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory) -> Path:
    """The shipped default compensator exported for rpi4 through the real CLI (moderate-sloping)."""
    out = tmp_path_factory.mktemp("bundles") / "default-rpi4"
    r = run_toolchain("export", "--target", "rpi", "--preset", "moderate-sloping", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    return out
