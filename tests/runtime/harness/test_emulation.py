"""The Pi, emulated: ``python -m runtime run`` inside an aarch64 Debian python3.11 under
qemu-aarch64 -cpu cortex-a72 (sysroot and wheels from scripts/pi_sysroot.sh, cached), with only
``runtime/`` and ``csrc/`` on its path, gives the host's output byte for byte.

Select with ``pytest -k emulated`` (or ``-m emulated``). The first run builds the sysroot (a
minute or two: apt downloads + pip wheels); later runs reuse it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.harness.emulation import cross_build_ckernel, pi_python
from runtime.wavio import read_wav, write_wav_atomic
from tests.conftest import REPO

pytestmark = pytest.mark.emulated

DEMO = REPO / "toolchain" / "assets" / "demo_speech.wav"


@pytest.fixture(scope="module")
def pi():
    t0 = time.perf_counter()
    p = pi_python(timeout=3000)
    print(f"emulated Pi python ready in {time.perf_counter() - t0:.1f} s: {p.python} (qemu -cpu {p.cpu})")
    return p


@pytest.fixture(scope="module")
def board_tree(tmp_path_factory):
    """What a board has: the runtime package and the C sources, nothing of the toolchain."""
    root = tmp_path_factory.mktemp("board")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build")
    shutil.copytree(REPO / "runtime", root / "runtime", ignore=ignore)
    shutil.copytree(REPO / "csrc", root / "csrc", ignore=ignore)
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1.2 s of the demo speech at the model's rate, PCM 16, louder parts included."""
    x, sr = read_wav(DEMO)
    assert sr == 16000
    x = x[: int(1.2 * sr)] * np.float32(2.5)  # drive the limiter too
    p = tmp_path_factory.mktemp("clip") / "in.wav"
    write_wav_atomic(p, x, sr)
    return p


def run_host(board_tree: Path, bundle: Path, clip: Path, out: Path, backend: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(board_tree))
    return subprocess.run([sys.executable, "-m", "runtime", "run", str(bundle), "--input", str(clip), "--output", str(out),
                           "--backend", backend], capture_output=True, text=True, timeout=300, env=env, cwd=board_tree)


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("backend", ["litert", "ckernel"])
def test_emulated_pi_output_equals_the_host_byte_for_byte(pi, board_tree, default_bundle, clip, tmp_path, backend):
    host_out, pi_out = tmp_path / "host.wav", tmp_path / "pi.wav"
    r = run_host(board_tree, default_bundle, clip, host_out, backend)
    assert r.returncode == 0, r.stderr
    # The emulated board's own cache (its C kernel build, keyed by the sources' digest) lives beside
    # the sysroot, so an unchanged csrc/ is cross-built once, not once per test session.
    env = {"HX_CACHE_DIR": str(pi.sysroot.parent / "hx-cache")}
    if backend == "ckernel":
        # The board would compile csrc/ on first use; the emulated one has no compiler, so the
        # extension is cross-built (aarch64-linux-gnu-gcc, NEON kernels) where the loader looks.
        lib = cross_build_ckernel(pi, board_tree, env["HX_CACHE_DIR"])
        assert "aarch64" in lib.name and "neon" in lib.name
    t0 = time.perf_counter()
    r = pi.run(["-m", "runtime", "run", str(default_bundle), "--input", str(clip), "--output", str(pi_out),
                "--backend", backend], pythonpath=[board_tree], env=env, cwd=board_tree, timeout=1200)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"emulated Pi ({pi.cpu}) {backend}: {wall:.1f} s for {read_wav(clip)[0].size / 16000:.1f} s of audio\n{r.stdout}")
    assert pi_out.read_bytes() == host_out.read_bytes()
    if backend != "litert":
        return
    # It really ran on aarch64 without the toolchain, torch or TensorFlow.
    probe = pi.run(["-c", "import platform, sys, runtime.engine, runtime.cli; "
                          "bad = [m for m in ('torch', 'tensorflow', 'toolchain', 'soundfile', 'scipy') if m in sys.modules]; "
                          "print(platform.machine(), bad)"], pythonpath=[board_tree], timeout=600)
    assert probe.returncode == 0 and probe.stdout.split() == ["aarch64", "[]"], probe.stdout + probe.stderr
