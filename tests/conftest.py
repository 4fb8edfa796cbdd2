"""Session fixtures shared across the suite (exporting a bundle takes about a minute)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


#: Modules the runtime must never load (a board has none of them): tests/runtime/test_imports.py and
#: tests/runtime/test_install.py check sys.modules after a run against it.
RUNTIME_FORBIDDEN = ("torch", "tensorflow", "toolchain", "soundfile", "scipy", "soxr", "rich", "onnx", "typer", "keras")


def run_toolchain(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m toolchain ARGS`` in a subprocess, as a user would run it."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "toolchain", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO, env=env)


def make_char_device(path: Path, major: int = 1, minor: int = 3) -> Path:
    """A character device node at ``path`` (default 1:3, what /dev/null is), made by the test in its own
    temporary directory, never a system path: as root with ``os.mknod``, else through passwordless
    ``sudo -n mknod`` (what scripts/setup.sh also needs). Neither: the test fails, saying so."""
    import stat

    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    except PermissionError:
        try:
            r = subprocess.run(["sudo", "-n", "mknod", "-m", "666", str(path), "c", str(major), str(minor)],
                               capture_output=True, text=True, timeout=30)
            why = r.stderr.strip() if r.returncode else ""
        except FileNotFoundError:
            why = "sudo is not installed"
        if why:
            pytest.fail(f"cannot make a device node for this test (not root, no passwordless sudo): {why}")
    assert stat.S_ISCHR(os.stat(path).st_mode)
    return path


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture
def one_thread():
    """Single-threaded torch for the test: block-sized ops (and CARFAC's thousands of tiny backward
    ops) on a loaded 2-core machine are orders of magnitude slower with a second intra-op thread."""
    from toolchain.export.process_cache import torch_threads  # lazy: pulls torch

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def default_bundle(tmp_path_factory) -> Path:
    """The shipped default compensator exported for rpi4 through the real CLI (moderate-sloping)."""
    out = tmp_path_factory.mktemp("bundles") / "default-rpi4"
    r = run_toolchain("export", "--target", "rpi", "--preset", "moderate-sloping", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def leaky_bundle(tmp_path_factory) -> Path:
    """A randomised leaky-ReLU compensator exported with ``quant="16x8"`` and 2 QAT steps (int8 + 16x8
    graphs, C kernel).

    A reduced export (short calibration and test sets) so the 16x8 path, the QAT path, the LEAKY_RELU
    C kernel and the 16x8-vs-int8 comparison share one run; the full-size figures are in the README.
    """
    from runtime.boards import resolve_target
    from tests.helpers import randomised_seanet
    from toolchain.audio.audiogram import Audiogram
    from toolchain.export.pipeline import ExportOptions, export_bundle
    from toolchain.models.compensators.seanet import SEANetConfig, save_seanet

    tmp = tmp_path_factory.mktemp("leaky")
    ckpt = tmp / "leaky.pt"
    save_seanet(randomised_seanet(0, SEANetConfig(activation="leaky_relu")), str(ckpt))
    opts = ExportOptions(board=resolve_target("rpi"), audiogram=Audiogram.preset("moderate-sloping"),
                         out_dir=tmp / "bundle", checkpoint=ckpt, quant="16x8", calib_clips=2, calib_blocks=300,
                         test_clips=1, clip_seconds=1.0, drift_clips=1, qat_steps=2)
    return export_bundle(opts).bundle.path
