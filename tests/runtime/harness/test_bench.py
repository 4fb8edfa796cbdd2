"""``toolchain bench``: per-block timing, algorithmic latency, the JSON report and the plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from runtime.boards import load_board
from runtime.bundle import load_bundle
from runtime.cli import format_report
from runtime.engine import Engine
from runtime.harness.bench import bench_signal, plot_timings, run_bench, time_engine, write_json
from runtime.harness.measure import impulse_latency
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
    # Issue 17: one xrun count per source, named as such, in the JSON and the text.
    assert set(lb["xruns_by_source"]) == {"runtime", "portaudio_other", "server_driver", "server_client", "host_stalls"}
    assert all(isinstance(v, int) and v >= 0 for v in lb["xruns_by_source"].values())
    assert "xruns by source: runtime (after our callback overran)" in r.stdout and "host stalls" in r.stdout
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


def test_bench_json_is_an_estimate_from_this_host_never_a_board_verdict(bundle, tmp_path):
    """Issue 17: measured on an x86 host, the JSON said ``within_board_budget: true`` for rpi4. Now it names
    the host CPU, says where the times were taken, and compares with the board's budget as an estimate."""
    rep = run_bench(bundle, ["ckernel"], seconds=0.3, board=load_board("rpi4"))
    write_json(rep, tmp_path / "b.json")
    text = (tmp_path / "b.json").read_text()
    assert "within_board_budget" not in text and "within_budget" not in text
    d = json.loads(text)
    assert d["host"]["cpu"] and d["host"]["machine"]
    assert d["measured_on"].startswith(f"this host: {d['host']['cpu']}") and "not on board rpi4" in d["measured_on"]
    est = d["backends"]["ckernel"]["board_budget_estimate"]
    assert est["kind"] == "estimate" and est["board_compute_fraction"] == 0.5
    assert "not on rpi4" in est["note"] and "run the bench on the board for its verdict" in est["note"]
    out = format_report(rep)
    assert f"measured on {d['host']['cpu']}" in out and "Estimate only" in out


def test_plot_carries_the_loopback_figures_and_the_host(tmp_path, monkeypatch):
    """The PNG has the loopback round trip and the xruns by source under the histogram, and says where
    the times were measured (the budget line is an estimate)."""
    texts: list[str] = []
    original = Figure.text
    monkeypatch.setattr(Figure, "text", lambda self, x, y, s, *a, **k: (texts.append(s), original(self, x, y, s, *a, **k))[1])
    lb = {"backend": "ckernel", "seconds": 3.0, "round_trip_ms": 3.0, "algorithmic_ms": 1.0, "buffering_ms": 2.0,
          "xruns_by_source": {"runtime": 0, "portaudio_other": 1, "server_driver": 0, "server_client": 2, "host_stalls": 3}}
    rng = np.random.default_rng(0)
    res = {"ckernel": {"samples_us": rng.uniform(10, 50, 500), "p50_us": 30.0, "p99_us": 49.0, "load_p99": 0.049}}
    plot_timings(res, 1000.0, tmp_path / "p.png", budget_fraction=0.5, loopback=lb, measured_on="this host: Test CPU")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    note = "\n".join(texts)
    assert "measured on this host: Test CPU; the board budget line is an estimate" in note
    assert "round trip 3.00 ms = algorithmic 1.00 + buffering 2.00 ms" in note
    assert "runtime 0, portaudio other 1, server driver 0, server client 2, host stalls 3" in note
