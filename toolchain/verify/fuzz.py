"""Fuzzing the C kernel: build the libFuzzer harnesses of ``csrc/fuzz/``, seed them from a real blob,
run them under ASan + UBSan, and report executions, coverage and findings.

Two harnesses (see their headers): ``hx_fuzz_blob`` feeds arbitrary blobs to
``hx_model_state_size`` / ``hx_model_init`` and streams through whatever is accepted;
``hx_fuzz_process`` runs command programs (process, reset, set/get state, bad lengths, in place)
on two instances of a real model. Both are built by ``make -C csrc fuzz`` with clang
(``-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all``), for the ``ref`` kernels and,
on an AVX2 host, the ``x86`` ones.

A run is deterministic for a given ``seed`` and ``runs`` (one process, no parallel jobs); a time
cap (``max_seconds``) bounds it on a slow machine. Any crash, sanitizer report or leak is a
finding: libFuzzer writes the input to ``artifact_dir``; :func:`replay` runs saved inputs (the
regression corpus under ``csrc/fuzz/regressions/<harness>/``) through a harness once each.

Used by tests/csrc/test_fuzz.py (a short run) and benchmarks/fuzz_ckernel.py (a long one).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
HARNESSES = ("hx_fuzz_blob", "hx_fuzz_process")
#: Longest input each harness is given: a whole blob (plus its flags byte) for hx_fuzz_blob; a
#: program of a few dozen commands for hx_fuzz_process (longer ones only repeat the same calls).
MAX_LEN = {"hx_fuzz_blob": None, "hx_fuzz_process": 512}
REGRESSIONS = CSRC / "fuzz" / "regressions"
#: The instrumentation of every harness (the Makefile's FUZZ_FLAGS use the same).
FUZZ_SANITIZE = ("-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


class FuzzError(RuntimeError):
    """The fuzzers could not be built or run (one-line message)."""


@dataclass
class FuzzResult:
    """One harness run."""

    harness: str
    arch: str
    seed: int
    executions: int = 0
    seconds: float = 0.0
    exec_per_sec: float = 0.0
    coverage: int = 0  # libFuzzer's "cov" (edges) at the end
    features: int = 0  # "ft"
    corpus_units: int = 0
    peak_rss_mb: int = 0
    returncode: int = 0
    crashes: list[str] = field(default_factory=list)  # artifact files written
    sanitizer_reports: list[str] = field(default_factory=list)  # first line of each report
    progress: list[tuple[int, int, int]] = field(default_factory=list)  # (executions, cov, ft) per status line
    log_tail: str = ""

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and not self.crashes and not self.sanitizer_reports


def clang_available() -> str | None:
    return shutil.which("clang")


def build(out_dir: Path, arch: str = "ref", *, jobs: int = 2) -> dict[str, Path]:
    """``make -C csrc fuzz HX_ARCH=arch OUT=out_dir``; returns harness name -> executable."""
    if clang_available() is None:
        raise FuzzError("clang not found: the fuzz harnesses need clang with libFuzzer and the sanitizer "
                        "runtimes (scripts/setup.sh installs clang and libclang-rt-14-dev)")
    out_dir = Path(out_dir)
    r = subprocess.run(["make", "-C", str(CSRC), f"-j{jobs}", "fuzz", f"HX_ARCH={arch}", f"OUT={out_dir}"],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        hint = (" (install libclang-rt-14-dev: the libFuzzer/ASan runtimes)"
                if "libclang_rt" in r.stderr or "cannot find" in r.stderr else "")
        raise FuzzError(f"building the {arch} fuzzers failed{hint}: {' / '.join(tail)}")
    exes = {h: out_dir / "fuzz" / h for h in HARNESSES}
    for h, p in exes.items():
        if not p.is_file():
            raise FuzzError(f"make fuzz did not produce {p}")
    return exes


def recrc(blob: bytes) -> bytes:
    """Fix the CRC-32 trailer of an edited blob (the checksum covers the declared length - 4)."""
    b = bytearray(blob)
    total = struct.unpack_from("<I", b, 12)[0] if len(b) >= 16 else len(b)
    if not 68 <= total <= len(b):
        total = len(b)
    if total >= 4:
        struct.pack_into("<I", b, total - 4, zlib.crc32(bytes(b[: total - 4])) & 0xFFFFFFFF)
    return bytes(b)


def seed_corpus(blob: bytes, out_dir: Path) -> dict[str, Path]:
    """Seed corpora generated from a real blob: ``{"hx_fuzz_blob": dir, "hx_fuzz_process": dir}``.

    hx_fuzz_blob: the blob with each flags value that matters (raw, CRC fixed, length fixed,
    misaligned arena), truncated at the header / tables / data, a few header fields set to
    boundary values and a few graph-structure edits (swapped ops, an op reading its own output),
    each with the CRC fixed, so the structural and dataflow checks are reached from the start.
    hx_fuzz_process: short command programs touching every command.
    """
    out_dir = Path(out_dir)
    d_blob, d_proc = out_dir / "hx_fuzz_blob", out_dir / "hx_fuzz_process"
    for d in (d_blob, d_proc):
        d.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, bytes] = {
        "raw": b"\x00" + blob,
        "crc": b"\x01" + blob,
        "crc_len": b"\x03" + blob,
        "misaligned": bytes([0x03 | (5 << 2)]) + blob,
        "header_only": b"\x03" + blob[:64],
        "tables_only": b"\x03" + blob[: min(len(blob), 64 + 4096)],
        "half": b"\x01" + blob[: len(blob) // 2],
    }
    for name, off, val in (("n_ops_max", 20, 0xFFFF), ("state_huge", 52, 0x3FFFFFFF), ("block_2", 40, 2),
                           ("act_bits_other", 60, 24 - struct.unpack_from("<I", blob, 60)[0] if len(blob) >= 64 else 1),
                           ("tensor0_frames", 64 + 8, 0x01000000)):
        b = bytearray(blob)
        struct.pack_into("<I", b, off, val)
        seeds[name] = b"\x01" + recrc(bytes(b))
    # Graph-structure mutations a byte mutator rarely builds: adjacent op records swapped (an op
    # then reads what its neighbour has not written yet) and an op's input pointed at its output.
    n_ops, o_table = (struct.unpack_from("<I", blob, 20)[0], struct.unpack_from("<I", blob, 28)[0]) \
        if len(blob) >= 64 else (0, 0)
    for k in (0, n_ops // 2):
        if 0 < k + 1 < n_ops and o_table + 128 * (k + 2) <= len(blob):
            b = bytearray(blob)
            a0, a1 = o_table + 128 * k, o_table + 128 * (k + 1)
            b[a0:a0 + 128], b[a1:a1 + 128] = blob[a1:a1 + 128], blob[a0:a0 + 128]
            seeds[f"swap_ops_{k}"] = b"\x01" + recrc(bytes(b))
    if n_ops and o_table + 128 <= len(blob):
        b = bytearray(blob)
        struct.pack_into("<I", b, o_table + 4 * 2, struct.unpack_from("<I", blob, o_table + 4 * 6)[0])
        seeds["self_input"] = b"\x01" + recrc(bytes(b))
    for name, data in seeds.items():
        (d_blob / name).write_bytes(data)

    rng = random.Random(20240611)
    progs = {
        "stream": bytes([0, 3]) + bytes(rng.randrange(256) for _ in range(64)),
        "reset_stream": bytes([1, 0, 1]) + bytes(rng.randrange(256) for _ in range(40)),
        "set_state": bytes([2]) + bytes(rng.randrange(256) for _ in range(17)) + bytes([0, 0]) + bytes(32),
        "snapshot": bytes([3]) + bytes(rng.randrange(256) for _ in range(17)),
        "bad_length": bytes([4, 2]) + bytes(range(60)),
        "in_place": bytes([5]) + bytes(rng.randrange(256) for _ in range(17)),
        "loud": bytes([0, 3]) + bytes([127, 128] * 40),
    }
    for name, data in progs.items():
        (d_proc / name).write_bytes(data)
    return {"hx_fuzz_blob": d_blob, "hx_fuzz_process": d_proc}


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_ANY = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_REPORTS = re.compile(r"^(==\d+==ERROR: \w+Sanitizer.*|.*runtime error: .*|==\d+== ERROR: libFuzzer: .*|"
                      r"SUMMARY: \w+Sanitizer: .*)$", re.M)


def run(exe: Path, corpus: Path, *, harness: str, arch: str, blob: Path | None, seed: int = 1,
        runs: int | None = None, max_seconds: float = 60.0, artifact_dir: Path, work_corpus: Path | None = None,
        extra: Sequence[str] = ()) -> FuzzResult:
    """Run one harness from ``corpus`` (copied to ``work_corpus`` so the seed directory stays as it is)."""
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    work = Path(work_corpus) if work_corpus else artifact_dir / f"corpus-{harness}-{arch}"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(corpus, work)
    env = dict(os.environ, **SAN_ENV)
    if blob is not None:
        env["HX_FUZZ_BLOB"] = str(blob)
    prefix = artifact_dir / f"{harness}-{arch}-"
    cmd = [str(exe), f"-seed={seed}", "-print_final_stats=1", f"-artifact_prefix={prefix}",
           f"-max_total_time={max(1, int(max_seconds))}", "-timeout=60", "-rss_limit_mb=2048",
           "-malloc_limit_mb=1024", "-print_pcs=0"]
    if runs is not None:
        cmd.append(f"-runs={int(runs)}")
    if MAX_LEN.get(harness):
        cmd.append(f"-max_len={MAX_LEN[harness]}")
    cmd += [*extra, str(work)]

    before = set(artifact_dir.glob(f"{harness}-{arch}-*"))
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=max_seconds + 600)
    dt = time.monotonic() - t0
    log = r.stdout + r.stderr
    res = FuzzResult(harness=harness, arch=arch, seed=seed, returncode=r.returncode, seconds=dt)
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    res.executions = stats.get("number_of_executed_units", 0)
    res.exec_per_sec = stats.get("average_exec_per_sec", 0)
    res.peak_rss_mb = stats.get("peak_rss_mb", 0)
    lines = _DONE.findall(log) or _ANY.findall(log)
    res.progress = [(int(n), int(c), int(f)) for n, c, f, _ in _ANY.findall(log)]
    if lines:
        _, cov, ft, corp = lines[-1]
        res.coverage, res.features, res.corpus_units = int(cov), int(ft), int(corp)
    res.crashes = sorted(str(p) for p in set(artifact_dir.glob(f"{harness}-{arch}-*")) - before)
    res.sanitizer_reports = [m.strip() for m in _REPORTS.findall(log)]
    res.log_tail = "\n".join(log.strip().splitlines()[-40:])
    return res


def replay(exe: Path, inputs: Sequence[Path], *, blob: Path | None = None) -> subprocess.CompletedProcess:
    """Run each saved input through a harness once (libFuzzer's file mode): the regression check."""
    env = dict(os.environ, **SAN_ENV)
    if blob is not None:
        env["HX_FUZZ_BLOB"] = str(blob)
    return subprocess.run([str(exe), "-runs=1", *map(str, inputs)], capture_output=True, text=True, env=env,
                          timeout=600)


def regression_inputs(harness: str) -> list[Path]:
    """The saved inputs that once crashed ``harness`` (csrc/fuzz/regressions/<harness>/*)."""
    d = REGRESSIONS / harness
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) if d.is_dir() else []
