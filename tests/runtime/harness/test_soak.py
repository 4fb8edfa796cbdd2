"""Soak: minutes of audio through each backend (the hour-long run is benchmarks/soak.py).

Each backend soaks in its own process (``python -m runtime.harness.soak``) so the RSS figures are its
own; the three run side by side to keep the wall time down. The checks that make a soak mean
something are tested too: a one-sample difference from offline, a slow leak and a miscounted
counter are all caught.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.bundle import load_bundle
from runtime.engine import Engine
from runtime.harness.soak import RSS_GROWTH_LIMIT_KB, WindowHasher, check_counters, output_reach, soak, soak_signal
from tests.conftest import REPO

# Two minutes of audio for the int8 backends; ONNX steps ~5x slower per block (onnxruntime's
# per-call overhead), so it soaks one minute here and the full hour in benchmarks/soak.py.
SOAK_SECONDS = {"ckernel": 120.0, "litert": 120.0, "onnx": 60.0}


@pytest.fixture(scope="module")
def soak_results(default_bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("soak")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {}
    for backend, seconds in SOAK_SECONDS.items():
        cmd = [sys.executable, "-m", "runtime.harness.soak", str(default_bundle), "--backend", backend, "--seconds", str(seconds),
               "--warmup-seconds", str(seconds / 3), "--json", str(d / f"{backend}.json"), "--quiet"]
        procs[backend] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for backend, p in procs.items():
        try:
            stdout, stderr = p.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out[backend] = (p.returncode, stdout, stderr, d / f"{backend}.json")
    return out


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", list(SOAK_SECONDS))
def test_soak_streams_minutes_without_drift_leak_or_miscount(soak_results, default_bundle, backend):
    rc, stdout, stderr, js = soak_results[backend]
    assert js.is_file(), stderr[-3000:]
    r = json.loads(js.read_text())
    print(stdout.strip())
    assert r["audio_seconds"] >= SOAK_SECONDS[backend]
    # Live output (Engine.stream, host buffers 16..2048) is the offline output, byte for byte.
    assert r["identical_to_offline"], r["first_mismatch_s"]
    assert len(r["host_blocks"]) >= 8
    # Memory: flat after warm-up.
    assert r["rss_growth_kb"] <= RSS_GROWTH_LIMIT_KB, r["rss_kb"]
    assert r["rss_max_above_baseline_kb"] <= 2 * RSS_GROWTH_LIMIT_KB, r["rss_kb"]
    # Counters agree with what was fed and with the offline engine.
    assert r["counter_problems"] == []
    assert r["live_counters"]["nonfinite_inputs"] == r["injected_nonfinite"] > 0
    assert r["live_counters"]["limiter_samples"] > 0
    # Safety over the whole run.
    limit = load_bundle(default_bundle).manifest.output_limit
    assert r["peak_output"] <= r["output_limit"] <= limit
    assert r["nonfinite_output_samples"] == 0
    # Faster than real time, or an hour would not fit in a benchmark.
    assert r["speed_x_realtime"] > 1.0
    assert r["ok"] and rc == 0, stderr[-2000:]


def test_window_hasher_compares_streams_that_differ_by_a_delay():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    a = WindowHasher(100, limit=990)
    for i in range(0, 1000, 37):
        a.update(x[i:i + 37])
    b = WindowHasher(100, skip=10, limit=990)
    delayed = np.concatenate([np.zeros(10, np.float32), x])
    for i in range(0, len(delayed), 61):
        b.update(delayed[i:i + 61])
    assert a.finish() == b.finish() and len(a.digests) == 10 and a.samples == b.samples == 990
    c = WindowHasher(100, skip=10, limit=990)
    delayed[500] += 1e-7
    c.update(delayed)
    bad = [i for i, (p, q) in enumerate(zip(a.digests, c.finish())) if p != q]
    assert bad == [4]  # sample 490 of the undelayed stream lies in window 4


def test_soak_signal_is_deterministic_and_carries_what_it_says():
    x1, e1 = soak_signal(3, 16000 * 5, 16000, seed=1)
    x2, e2 = soak_signal(3, 16000 * 5, 16000, seed=1)
    assert np.array_equal(x1, x2, equal_nan=True) and e1 == e2
    assert int(np.count_nonzero(~np.isfinite(x1))) == e1.nonfinite
    counts = [soak_signal(k, 16000 * 10, 16000)[1] for k in range(12)]
    assert sum(c.nonfinite for c in counts) > 0 and sum(c.loud for c in counts) > 0


def test_check_counters_names_each_inconsistency():
    good = {"blocks": 10, "samples_in": 165, "samples_out": 160, "nonfinite_inputs": 3, "nonfinite_outputs": 0,
            "limiter_samples": 7, "min_limiter_gain": 0.5, "xruns": 0, "underruns": 0}
    assert check_counters(good, dict(good), total=165, block=16, injected_nonfinite=3) == []
    live = dict(good, nonfinite_inputs=2, underruns=4)
    problems = check_counters(live, dict(good), total=165, block=16, injected_nonfinite=3)
    assert "live nonfinite_inputs = 2, expected 3" in problems and "live underruns = 4, expected 0" in problems
    assert "live nonfinite_inputs = 2 but offline nonfinite_inputs = 3" in problems


def test_soak_catches_a_one_sample_drift(default_bundle, monkeypatch):
    """A live path that differs from offline in one sample, 3 s in, is reported with where it starts."""
    real = Engine.stream
    fed = {"n": 0}

    def drifting(self, x):
        y = real(self, x)
        start = fed["n"]
        fed["n"] += len(x)
        k = 3 * 16000 + 5 + self.stream_delay - start  # output index of undelayed sample 48005
        if 0 <= k < len(y):
            y = y.copy()
            y[k] = np.nextafter(y[k], np.float32(0)) if y[k] != 0 else np.float32(1e-6)
        return y

    monkeypatch.setattr(Engine, "stream", drifting)
    r = soak(default_bundle, "ckernel", seconds=5, segment_seconds=1, window_seconds=1, warmup_seconds=1)
    assert not r.identical_to_offline and not r.ok
    assert r.first_mismatch_s == 3.0


def test_soak_catches_a_leak(default_bundle, monkeypatch):
    """A live path that keeps 200 kB per second of audio (about 700 MB an hour) fails the RSS check."""
    real = Engine.stream
    hoard = []

    def leaking(self, x):
        # mmap'd and written, so every byte is new resident memory: a malloc'd array could reuse
        # heap pages that earlier tests in the same process freed, and RSS would not grow.
        n = int(len(x) * 200_000 / 16000) + 1
        m = mmap.mmap(-1, n)
        m.write(b"\x01" * n)
        hoard.append(m)
        return real(self, x)

    monkeypatch.setattr(Engine, "stream", leaking)
    r = soak(default_bundle, "ckernel", seconds=12, segment_seconds=1, warmup_seconds=2)
    assert r.identical_to_offline
    assert r.rss_growth_kb > RSS_GROWTH_LIMIT_KB and not r.ok
    for m in hoard:
        m.close()
    hoard.clear()


def test_output_reach_is_the_far_end_of_the_int8_grid():
    assert output_reach(SimpleNamespace(output_quant=(0.01, 29))) == pytest.approx(1.57)   # (-128 - 29) * 0.01
    assert output_reach(SimpleNamespace(output_quant=(0.01, -100))) == pytest.approx(2.27)
    assert output_reach(SimpleNamespace(output_quant=(0.0, 0))) == float("inf")              # a float graph
    assert output_reach(SimpleNamespace()) == float("inf")
