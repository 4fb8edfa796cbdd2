"""ASan + UBSan builds (gcc -fsanitize=address,undefined -fno-sanitize-recover=all) run the model, the
blob validation cases, fuzzed blobs and random op cases clean."""

from __future__ import annotations

import os
import struct
import subprocess

import numpy as np
import pytest
from csrc_helpers import (
    BLOCK,
    HOST_CC,
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
    recrc,
)
from test_csrc_validation import bad_blobs, bad_blobs16

from runtime.backends.ckernel import CKernelBackend

SAN_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
SAN_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


def _sanitized(tool: str, tools_dir, arch: str = "ref"):
    try:
        return build_tool(tool, tools_dir / f"{tool}-asan-{arch}", arch=arch, cflags=SAN_FLAGS, ldflags=SAN_FLAGS)
    except AssertionError as e:  # pragma: no cover - compiler without sanitizer runtimes
        if "cannot find" in str(e) or "libasan" in str(e) or "libubsan" in str(e):
            pytest.fail("sanitizer runtimes not installed (run scripts/setup.sh, which installs it)")
        raise


def _run(args, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=SAN_ENV, timeout=600, **kw)
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr[-4000:]
    return r


@pytest.fixture(scope="module")
def asan_stream(tools_dir):
    return _sanitized("hx_stream", tools_dir)


@pytest.mark.parametrize("arch", host_archs())
def test_model_runs_clean(seanet, tools_dir, tmp_path, arch):
    asan_stream = _sanitized("hx_stream", tools_dir, arch)
    n = 24000 // BLOCK * BLOCK  # 1.5 s of speech + 0.5 s of the saturating tail
    x = np.concatenate([seanet.audio_q[:n], seanet.audio_q[-n // 3 // BLOCK * BLOCK:]])
    (tmp_path / "m.hxb").write_bytes(seanet.blob)
    (tmp_path / "in.raw").write_bytes(x.tobytes())
    r = _run([asan_stream, tmp_path / "m.hxb", tmp_path / "in.raw", tmp_path / "out.raw"])
    assert r.returncode == 0, r.stderr
    y = np.frombuffer((tmp_path / "out.raw").read_bytes(), np.int8)
    assert np.array_equal(y, CKernelBackend(seanet.blob, arch="ref").process(x))


def test_validation_cases_run_clean(seanet, asan_stream, tmp_path):
    cases = bad_blobs(seanet.blob)
    paths = []
    for name, (blob, _) in cases.items():
        (tmp_path / name).write_bytes(blob)
        paths.append(tmp_path / name)
    r = _run([asan_stream, "--check", *paths])
    assert r.returncode == 0, r.stderr
    got = dict(line.split()[::-1] for line in r.stdout.splitlines())
    assert {os.path.basename(k): v for k, v in got.items()} == {k: v for k, (_, v) in cases.items()}


def test_fuzzed_blobs_run_clean(seanet, asan_stream, tmp_path):
    rng = np.random.default_rng(99)
    paths = []
    body = len(seanet.blob) - 4
    for i in range(300):
        b = bytearray(seanet.blob)
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.integers(0, 4096 if rng.random() < 0.7 else body - 4))
            pos = min(pos, body - 4)
            val = int(rng.choice([0, 1, 0xFF, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 24, 65536,
                                  int(rng.integers(0, 1 << 32))]))
            struct.pack_into("<I", b, pos, val)
        p = tmp_path / f"fuzz{i:03d}.hxb"
        p.write_bytes(recrc(b) if rng.random() < 0.9 else bytes(b[: int(rng.integers(0, len(b)))]))
        paths.append(p)
    r = _run([asan_stream, "--check", *paths])
    assert r.returncode == 0, r.stderr
    statuses = [line.split()[0] for line in r.stdout.splitlines()]
    assert len(statuses) == len(paths)
    assert set(statuses) <= {"HX_OK", "HX_E_TRUNCATED", "HX_E_MAGIC", "HX_E_VERSION", "HX_E_MALFORMED",
                             "HX_E_UNSUPPORTED", "HX_E_CHECKSUM"}
    assert "HX_OK" in statuses and "HX_E_MALFORMED" in statuses


@pytest.mark.parametrize("arch", host_archs())
def test_kernels_run_clean_on_random_cases(tools_dir, tmp_path, arch):
    exe = _sanitized("hx_opcheck", tools_dir, arch)
    rng = np.random.default_rng(5)
    cases = [f(rng) for _ in range(40) for f in (random_conv_case, random_prelu_case, random_add_case)]
    (tmp_path / "c.bin").write_bytes(opcheck_bytes(cases))
    r = _run([exe, tmp_path / "c.bin", tmp_path / "o.bin"])
    assert r.returncode == 0, r.stderr
    assert check_opcheck_output(cases, (tmp_path / "o.bin").read_bytes()) == []


def test_sanitizer_build_really_checks(tmp_path):
    """Guard against a silently ineffective sanitizer build: a heap overflow and a signed overflow are caught."""
    src = tmp_path / "bad.c"
    src.write_text("#include <stdlib.h>\n#include <string.h>\n#include <limits.h>\n"
                   "int main(int c, char **v) { (void)v; if (c > 1) { int x = INT_MAX - 1 + c; return x & 1; }\n"
                   "  char *p = malloc(16); memset(p, 1, (size_t)(16 + c)); int r = p[3]; free(p); return r - 1; }\n")
    exe = tmp_path / "bad"
    subprocess.run([HOST_CC, *SAN_FLAGS, str(src), "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=SAN_ENV)
    assert r.returncode != 0 and "AddressSanitizer" in r.stderr
    r = subprocess.run([str(exe), "x", "y"], capture_output=True, text=True, env=SAN_ENV)
    assert r.returncode != 0 and "runtime error" in r.stderr


# ------------------------------------------------------------------------------------------ 16x8
@pytest.mark.parametrize("arch", host_archs())
def test_16x8_model_runs_clean(seanet16, tools_dir, tmp_path, arch):
    exe = _sanitized("hx_stream", tools_dir, arch)
    n = 24000 // BLOCK * BLOCK  # 1.5 s of speech + 0.5 s of the saturating tail
    x = np.concatenate([seanet16.audio_q[:n], seanet16.audio_q[-n // 3 // BLOCK * BLOCK:]])
    (tmp_path / "m.hxb").write_bytes(seanet16.blob)
    (tmp_path / "in.raw").write_bytes(x.astype("<i2").tobytes())
    r = _run([exe, tmp_path / "m.hxb", tmp_path / "in.raw", tmp_path / "out.raw"])
    assert r.returncode == 0, r.stderr
    y = np.frombuffer((tmp_path / "out.raw").read_bytes(), "<i2")
    assert np.array_equal(y, CKernelBackend(seanet16.blob, arch="ref").process(x))


def test_16x8_validation_cases_run_clean(seanet16, asan_stream, tmp_path):
    cases = bad_blobs16(seanet16.blob)
    paths = []
    for name, (blob, _) in cases.items():
        (tmp_path / name).write_bytes(blob)
        paths.append(tmp_path / name)
    (tmp_path / "good").write_bytes(seanet16.blob)
    r = _run([asan_stream, "--check", *paths, tmp_path / "good"])
    assert r.returncode == 0, r.stderr
    got = {os.path.basename(k): v for k, v in (line.split()[::-1] for line in r.stdout.splitlines())}
    assert got == {**{k: v for k, (_, v) in cases.items()}, "good": "HX_OK"}


@pytest.mark.parametrize("arch", host_archs())
def test_16x8_kernels_run_clean_on_random_cases(tools_dir, tmp_path, arch):
    exe = _sanitized("hx_opcheck", tools_dir, arch)
    rng = np.random.default_rng(6)
    cases = [f(rng) for _ in range(40) for f in (random_conv16_case, random_leaky16_case, random_add16_case)]
    (tmp_path / "c.bin").write_bytes(opcheck_bytes(cases))
    r = _run([exe, tmp_path / "c.bin", tmp_path / "o.bin"])
    assert r.returncode == 0, r.stderr
    assert check_opcheck_output(cases, (tmp_path / "o.bin").read_bytes()) == []
