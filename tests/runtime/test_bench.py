"""``toolchain bench``: per-block timing, algorithmic latency, the JSON report and the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.bench import BenchError, JackServer, bench_signal, impulse_latency, run_bench, time_engine
from runtime.bundle import load_bundle
from runtime.engine import Engine
from tests.conftest import run_toolchain


@pytest.fixture(scope="module")
def bundle(default_bundle):
    return load_bundle(default_bundle)


@pytest.mark.parametrize("name", ["litert", "ckernel", "onnx", "litert-fp32"])
def test_time_engine_reports_per_block_percentiles(bundle, name):
    eng = Engine(bundle, name)
    r = time_engine(eng, seconds=0.5, warmup_blocks=20)
    assert r["blocks"] == 500
    assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]
    assert r["engine_p50_us"] >= r["p50_us"] * 0.9
    assert r["period_us"] == pytest.approx(1000.0)
    assert r["load_p99"] == pytest.approx(r["p99_us"] / 1000.0)
    assert 0 < r["rtf"] < 5
    assert len(r["samples_us"]) == 500


@pytest.mark.parametrize("name", ["litert", "ckernel", "onnx", "torch"])
def test_impulse_latency_matches_the_manifest_on_every_backend(bundle, name):
    if name == "torch":
        from toolchain.export.torch_backend import TorchBackend

        be = TorchBackend(bundle)
    else:
        from runtime.backends import open_backend

        be = open_backend(bundle, name)
    assert impulse_latency(be) == bundle.manifest.algorithmic_latency_samples


def test_bench_signal_is_deterministic_and_in_range():
    a, b = bench_signal(1.0, 16000), bench_signal(1.0, 16000)
    assert np.array_equal(a, b) and a.dtype == np.float32 and 0.01 < np.abs(a).max() < 1


@pytest.mark.timeout(300)
def test_bench_cli_writes_json_and_plot(default_bundle, tmp_path):
    js, png = tmp_path / "bench.json", tmp_path / "bench.png"
    r = run_toolchain("bench", str(default_bundle), "--backend", "ckernel", "--backend", "litert", "--backend", "torch",
                      "--seconds", "0.5", "--loopback", "jack", "--loopback-seconds", "3", "--json", str(js), "--plot", str(png))
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(js.read_text())
    assert d["block"] == 16 and d["sample_rate"] == 16000
    for name in ("ckernel", "litert", "torch"):
        b = d["backends"][name]
        for k in ("p50_us", "p99_us", "max_us", "rtf", "load_p99"):
            assert isinstance(b[k], float) and b[k] > 0, (name, k)
        assert b["algorithmic_latency_samples"] == 16
    assert d["algorithmic_latency_ms"] == pytest.approx(1.0)
    lb = d["loopback"]
    for k in ("round_trip_ms", "buffering_ms", "algorithmic_ms", "xruns", "seconds"):
        assert k in lb, k
    assert lb["round_trip_ms"] == pytest.approx(3.0, abs=1 / 16)  # 16 + 2 x 16 samples at 16 kHz
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "loopback" in r.stdout and "p99" in r.stdout


def test_bench_refuses_bad_requests(default_bundle, tmp_path):
    r = run_toolchain("bench", str(default_bundle), "--backend", "gpu", "--seconds", "0.1")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown backend" in r.stderr
    r = run_toolchain("bench", str(default_bundle), "--json", str(tmp_path / "no" / "dir.json"), "--seconds", "0.1")
    assert r.returncode == 2 and "dir.json" in r.stderr


def test_run_bench_in_process(bundle):
    rep = run_bench(bundle.path, ["litert"], seconds=0.3)
    assert set(rep["backends"]) == {"litert"} and "_samples" in rep
    assert rep["algorithmic_latency_samples"] == 16


def test_jack_server_reports_a_missing_jackd():
    with pytest.raises(BenchError, match="not found"):
        JackServer(16000, 16, jackd="jackd-that-does-not-exist").start()
