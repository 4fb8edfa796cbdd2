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
    from toolchain.models.seanet import SEANetConfig, save_seanet

    tmp = tmp_path_factory.mktemp("leaky")
    ckpt = tmp / "leaky.pt"
    save_seanet(randomised_seanet(0, SEANetConfig(activation="leaky_relu")), str(ckpt))
    opts = ExportOptions(board=resolve_target("rpi"), audiogram=Audiogram.preset("moderate-sloping"),
                         out_dir=tmp / "bundle", checkpoint=ckpt, quant="16x8", calib_clips=2, calib_blocks=300,
                         test_clips=1, clip_seconds=1.0, drift_clips=1, qat_steps=2)
    return export_bundle(opts).bundle.path
