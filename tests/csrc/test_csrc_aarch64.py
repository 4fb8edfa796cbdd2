"""The C kernel cross-built for the boards (aarch64, flags from boards/<board>.toml) and run under
qemu-aarch64: the on-device streaming tests until a board is attached.

Select with ``pytest -k aarch64`` (or ``-m aarch64``)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from csrc_helpers import (
    AARCH64_CC,
    BLOCK,
    QEMU,
    build_tool,
    check_opcheck_output,
    host_archs,
    opcheck_bytes,
    random_add16_case,
    random_add_case,
    random_conv16_case,
    random_conv_case,
    random_leaky16_case,
    random_prelu_case,
    run_aarch64,
)

from runtime.backends.ckernel import CKernelBackend
from runtime.boards import resolve_target

pytestmark = [pytest.mark.aarch64]


@pytest.fixture(autouse=True)
def _qemu_present():
    # A missing tool is a broken set-up, not a reason to skip: scripts/setup.sh installs qemu-user.
    if QEMU is None:
        pytest.fail("qemu-aarch64 not installed" + ' (run scripts/setup.sh, which installs it)')


def board_compiler(board: str) -> tuple[str, list[str]]:
    spec = resolve_target(board).compiler
    cc = shutil.which(f"{spec.triple}-gcc")
    if cc is None:
        pytest.fail(f"{spec.triple}-gcc not installed (run scripts/setup.sh, which installs it)")
    return cc, list(spec.cflags)


@pytest.fixture(scope="module")
def host_output(seanet) -> np.ndarray:
    return CKernelBackend(seanet.blob, arch="ref").process(seanet.audio_q)


@pytest.fixture(scope="module")
def stream_files(seanet, tmp_path_factory):
    d = tmp_path_factory.mktemp("aarch64-stream")
    (d / "model.hxb").write_bytes(seanet.blob)
    (d / "in.raw").write_bytes(seanet.audio_q.tobytes())
    return d


@pytest.mark.parametrize("board,arch,seconds", [("rpi4", "ref", None), ("rpi4", "neon", None), ("rpi5", "ref", 4.0),
                                                ("rpi5", "neon", 4.0)])
def test_aarch64_stream_equals_host(seanet, host_output, stream_files, tools_dir, board, arch, seconds):
    """rpi4 flags: the whole signal; rpi5 flags: its first 4 s (the same code, another -mcpu)."""
    cc, cflags = board_compiler(board)
    exe = build_tool("hx_stream", tools_dir / f"hx_stream-{board}-{arch}", arch=arch, cc=cc, cflags=cflags)
    n = host_output.size if seconds is None else int(seconds * 16000) // BLOCK * BLOCK
    src = stream_files / "in.raw"
    if n != host_output.size:
        src = stream_files / f"in-{n}.raw"
        src.write_bytes(seanet.audio_q[:n].tobytes())
    out = stream_files / f"out-{board}-{arch}.raw"
    t0 = time.perf_counter()
    r = run_aarch64(exe, str(stream_files / "model.hxb"), str(src), str(out))
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    y = np.frombuffer(out.read_bytes(), np.int8)
    n_diff = int(np.count_nonzero(y != host_output[:n])) if y.size == n else -1
    print(f"qemu-aarch64 {board} {arch}: {y.size} samples ({y.size / 16000:.1f} s audio) in {wall:.1f} s, "
          f"{n_diff} differ from the host build")
    assert n_diff == 0
    info = run_aarch64(exe, "--info", str(stream_files / "model.hxb"))
    assert info.returncode == 0 and f"arch {arch}" in info.stdout


def test_aarch64_neon_ops_match_numpy(tools_dir, tmp_path):
    """Op by op under qemu: NEON kernels (all remainder paths) against the numpy reference."""
    cc, cflags = board_compiler("rpi4")
    rng = np.random.default_rng(2024)
    cases = []
    for i in range(240):
        kind = i % 3
        if kind == 0:
            cases.append(random_conv_case(rng, rounding=i // 3 % 3))
        elif kind == 1:
            cases.append(random_prelu_case(rng))
        else:
            cases.append(random_add_case(rng))
    # Shapes of the deployed model's hot loops, at the vector-width boundaries.
    for c_in, k in ((16, 1), (8, 2), (16, 2), (15, 1), (17, 1), (32, 8), (48, 2)):
        for rounding in (0, 1, 2):
            cases.append(random_conv_case(rng, c_in=c_in, kernel=k, c_out=13, stride=1, dilation=1, out_frames=3,
                                          rounding=rounding))
    (tmp_path / "cases.bin").write_bytes(opcheck_bytes(cases))
    for arch in ("neon", "ref"):
        exe = build_tool("hx_opcheck", tools_dir / f"hx_opcheck-{arch}", arch=arch, cc=cc, cflags=cflags)
        out = tmp_path / f"out-{arch}.bin"
        r = run_aarch64(exe, str(tmp_path / "cases.bin"), str(out))
        assert r.returncode == 0, r.stderr
        assert check_opcheck_output(cases, out.read_bytes()) == [], arch


@pytest.mark.parametrize("arch", host_archs())
def test_host_opcheck_tool(tools_dir, tmp_path, arch):
    """The same op-check driver on the host: keeps the tool itself honest."""
    rng = np.random.default_rng(7)
    cases = [random_conv_case(rng), random_prelu_case(rng), random_add_case(rng)] * 5
    exe = build_tool("hx_opcheck", tools_dir / f"hx_opcheck-host-{arch}", arch=arch)
    (tmp_path / "c.bin").write_bytes(opcheck_bytes(cases))
    import subprocess

    r = subprocess.run([str(exe), str(tmp_path / "c.bin"), str(tmp_path / "o.bin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert check_opcheck_output(cases, (tmp_path / "o.bin").read_bytes()) == []


def test_aarch64_toolchain_present():
    assert AARCH64_CC is not None


# ------------------------------------------------------------------------------------------ 16x8
@pytest.mark.parametrize("arch", ["ref", "neon"])
def test_aarch64_16x8_stream_equals_host(seanet16, tools_dir, tmp_path, arch):
    """The 16x8 model, rpi4 flags, the whole ≥ 10 s signal: the same int16 bytes as the host build."""
    cc, cflags = board_compiler("rpi4")
    exe = build_tool("hx_stream", tools_dir / f"hx_stream16-rpi4-{arch}", arch=arch, cc=cc, cflags=cflags)
    host = CKernelBackend(seanet16.blob, arch="ref").process(seanet16.audio_q)
    (tmp_path / "m.hxb").write_bytes(seanet16.blob)
    (tmp_path / "in.raw").write_bytes(seanet16.audio_q.astype("<i2").tobytes())
    t0 = time.perf_counter()
    r = run_aarch64(exe, str(tmp_path / "m.hxb"), str(tmp_path / "in.raw"), str(tmp_path / "out.raw"))
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    y = np.frombuffer((tmp_path / "out.raw").read_bytes(), "<i2")
    n_diff = int(np.count_nonzero(y != host)) if y.size == host.size else -1
    print(f"qemu-aarch64 rpi4 {arch} 16x8: {y.size} samples ({y.size / 16000:.1f} s audio) in {wall:.1f} s, "
          f"{n_diff} differ from the host build")
    assert n_diff == 0
    info = run_aarch64(exe, "--info", str(tmp_path / "m.hxb"))
    assert info.returncode == 0 and f"arch {arch}" in info.stdout and "act_bits 16" in info.stdout


def test_aarch64_neon_s16_ops_match_numpy(tools_dir, tmp_path):
    """Op by op under qemu: the s16 NEON kernels (vector bodies and tails) against the numpy reference."""
    cc, cflags = board_compiler("rpi4")
    rng = np.random.default_rng(2025)
    cases = [f(rng) for _ in range(60) for f in (random_conv16_case, random_leaky16_case, random_add16_case)]
    for c_in, k in ((1, 48), (2, 48), (8, 7), (32, 8), (48, 2), (300, 1), (15, 1), (17, 1)):
        cases.append(random_conv16_case(rng, c_in=c_in, kernel=k, c_out=13, stride=1, dilation=1, out_frames=3))
    for n in (15, 16, 17, 31, 32, 33, 128):
        cases += [random_add16_case(rng, count=n, mode=0), random_leaky16_case(rng, count=n)]
    (tmp_path / "cases.bin").write_bytes(opcheck_bytes(cases))
    for arch in ("neon", "ref"):
        exe = build_tool("hx_opcheck", tools_dir / f"hx_opcheck16-{arch}", arch=arch, cc=cc, cflags=cflags)
        out = tmp_path / f"out-{arch}.bin"
        r = run_aarch64(exe, str(tmp_path / "cases.bin"), str(out))
        assert r.returncode == 0, r.stderr
        assert check_opcheck_output(cases, out.read_bytes()) == [], arch
