"""libFuzzer + ASan + UBSan on the C kernel: a short, deterministic run of each harness (csrc/fuzz/)
per host kernel set, seeded from the test model's real blob, must end with no crash and no
sanitizer report. The long run is benchmarks/fuzz_ckernel.py. clang and its sanitizer runtimes
are installed by scripts/setup.sh, so a missing toolchain fails here rather than skipping.
"""

from __future__ import annotations

import subprocess

import pytest
from csrc_helpers import host_archs

from toolchain.verify import fuzz as F

# Executions per harness: a few seconds each here (hx_fuzz_blob validates and sets up a 60 kB blob
# per input, ~100/s under the instrumentation; hx_fuzz_process runs ~300 programs/s).
RUNS = {"hx_fuzz_blob": 1200, "hx_fuzz_process": 3000}
MAX_SECONDS = 45


@pytest.fixture(scope="module")
def fuzz_setup(seanet, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    blob = root / "model.hxb"
    blob.write_bytes(seanet.blob)
    try:
        exes = {arch: F.build(root / f"build-{arch}", arch) for arch in host_archs()}
    except F.FuzzError as e:
        pytest.fail(str(e))
    return {"root": root, "blob": blob, "exes": exes, "seeds": F.seed_corpus(seanet.blob, root / "seeds")}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("arch", host_archs())
@pytest.mark.parametrize("harness", F.HARNESSES)
def test_fuzz_run_is_clean(fuzz_setup, harness, arch):
    s = fuzz_setup
    r = F.run(s["exes"][arch][harness], s["seeds"][harness], harness=harness, arch=arch,
              blob=s["blob"] if harness == "hx_fuzz_process" else None, seed=1, runs=RUNS[harness],
              max_seconds=MAX_SECONDS, artifact_dir=s["root"] / "artifacts")
    print(f"{harness} ({arch}): {r.executions} executions in {r.seconds:.1f} s, coverage {r.coverage} edges, "
          f"{r.features} features, corpus {r.corpus_units}, peak RSS {r.peak_rss_mb} MB; crashes {r.crashes}, "
          f"sanitizer reports {r.sanitizer_reports}")
    assert r.clean, r.log_tail
    # It really ran: past the seeds, into new coverage (a harness that returned early would not).
    assert r.executions >= min(RUNS[harness], 300), r.log_tail
    assert r.corpus_units > len(list(s["seeds"][harness].iterdir())) and r.coverage > 100


def test_regression_inputs_replay_clean(fuzz_setup):
    """Every input that once crashed a harness (csrc/fuzz/regressions/) now runs clean, on every kernel set."""
    s = fuzz_setup
    total = 0
    for arch, exes in s["exes"].items():
        for harness in F.HARNESSES:
            inputs = F.regression_inputs(harness)
            if not inputs:
                continue
            total += len(inputs)
            r = F.replay(exes[harness], inputs, blob=s["blob"] if harness == "hx_fuzz_process" else None)
            assert r.returncode == 0 and "ERROR" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-3000:]
    assert total > 0  # the directory holds the findings of the first long run (see csrc/README.md)


def test_the_driver_reports_a_planted_bug(tmp_path):
    """A harness with a heap overflow behind a 3-byte guard: the run must come back with the crash
    input saved and the AddressSanitizer report parsed, or a clean result would mean nothing."""
    src = tmp_path / "planted.c"
    src.write_text(
        "#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n"
        "volatile int sink;\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {\n"
        "  if (n >= 4 && d[0] == 'H' && d[1] == 'X' && d[2] == '!') {\n"
        "    uint8_t *p = malloc(4); memcpy(p, d, 4); sink = p[d[3] % 8 + 4]; free(p); }\n"
        "  return 0; }\n")
    exe = tmp_path / "planted"
    subprocess.run(["clang", "-g", "-O1", *F.FUZZ_SANITIZE, str(src), "-o", str(exe)], check=True,
                   capture_output=True)
    corpus = tmp_path / "seeds"
    corpus.mkdir()
    (corpus / "s").write_bytes(b"HX?\x00")
    r = F.run(exe, corpus, harness="planted", arch="test", blob=None, seed=1, runs=200000, max_seconds=60,
              artifact_dir=tmp_path / "art")
    assert not r.clean and r.crashes, r.log_tail
    assert any("AddressSanitizer: heap-buffer-overflow" in line for line in r.sanitizer_reports), r.sanitizer_reports
    assert open(r.crashes[0], "rb").read().startswith(b"HX!")


@pytest.fixture(scope="module")
def fuzz_setup16(seanet16, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz16")
    blob = root / "model16.hxb"
    blob.write_bytes(seanet16.blob)
    try:
        exes = {arch: F.build(root / f"build-{arch}", arch) for arch in host_archs()}
    except F.FuzzError as e:
        pytest.fail(str(e))
    return {"root": root, "blob": blob, "exes": exes, "seeds": F.seed_corpus(seanet16.blob, root / "seeds")}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("arch", host_archs())
@pytest.mark.parametrize("harness", F.HARNESSES)
def test_fuzz_run_is_clean_16x8(fuzz_setup16, harness, arch):
    """The same short runs seeded from the 16x8 test model's blob: the s16 kernels and validator."""
    s = fuzz_setup16
    r = F.run(s["exes"][arch][harness], s["seeds"][harness], harness=harness, arch=arch,
              blob=s["blob"] if harness == "hx_fuzz_process" else None, seed=2, runs=RUNS[harness],
              max_seconds=MAX_SECONDS, artifact_dir=s["root"] / "artifacts")
    print(f"16x8 {harness} ({arch}): {r.executions} executions in {r.seconds:.1f} s, coverage {r.coverage} edges; "
          f"crashes {r.crashes}, sanitizer reports {r.sanitizer_reports}")
    assert r.clean, r.log_tail
    assert r.executions >= min(RUNS[harness], 300), r.log_tail
    assert r.corpus_units > len(list(s["seeds"][harness].iterdir())) and r.coverage > 100
