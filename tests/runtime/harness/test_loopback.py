"""Round trip through a private JACK server on the dummy driver at the board's rate and period: the
runtime's duplex stream with its output wired to its own input."""

from __future__ import annotations

import os
import time

import pytest

from runtime.bundle import load_bundle
from runtime.harness.loopback import loopback_jack
from tests.conftest import process_alive


@pytest.mark.timeout(240)
def test_jack_loopback_round_trip_is_algorithmic_latency_plus_jack_buffering(default_bundle):
    m = load_bundle(default_bundle).manifest
    t0 = time.monotonic()
    lb = loopback_jack(default_bundle, "ckernel", seconds=10.0, timeout=150)
    wall = time.monotonic() - t0
    print(f"loopback ({wall:.1f} s wall): round trip {lb['round_trip_samples']} samples = {lb['round_trip_ms']:.3f} ms "
          f"= algorithmic {lb['algorithmic_samples']} + JACK {lb['io_delay_samples']} (expected {lb['expected_buffering_samples']}); "
          f"xruns {lb['xruns']} (server: {lb['server_driver_xruns']} driver, {lb['server_client_xruns']} client; "
          f"host stalls > 1 period {lb['host_stalls']}, longest {lb['host_stall_max_ms']:.2f} ms); late callbacks "
          f"{lb['late_callbacks']}, max callback {lb['max_callback_us']:.0f} µs; live block compute p99 "
          f"{lb['engine']['recent_p99_us']:.0f} µs")
    assert lb["sample_rate"] == m.sample_rate and lb["period"] == m.block  # the board's rate and period
    assert lb["algorithmic_samples"] == m.algorithmic_latency_samples
    expected = m.algorithmic_latency_samples + lb["expected_buffering_samples"]  # 2 periods of the dummy driver
    assert abs(lb["round_trip_samples"] - expected) <= 1, lb
    assert lb["round_trip_ms"] == pytest.approx(lb["algorithmic_ms"] + lb["buffering_ms"])
    assert lb["seconds"] >= 9.9 and lb["callbacks"] >= 0.95 * 10 * m.sample_rate / m.block
    # Nothing lost on the way: every one of the 10 s of samples came back unchanged and in order,
    # and the live engine produced exactly what the offline engine produces for the same input.
    assert lb["glitch_samples"] == 0
    assert lb["engine_matches_offline"]
    # The runtime kept its deadline: live per-block compute far inside the period.
    assert lb["engine"]["recent_p99_us"] <= 0.5 * 1e6 * m.block / m.sample_rate
    assert lb["engine"]["nonfinite_inputs"] == 0
    # xruns. JACK counts a cycle as an xrun when a real-time thread wakes too late to finish within
    # the 1 ms period. On a virtual machine whose vCPUs the host takes away for a millisecond now
    # and then, that happens with no runtime work at all: an idle `jackd -d dummy -p 16` with no
    # client logs several driver xruns in 10 s on the 2-vCPU development VM, and a C SCHED_FIFO
    # thread there misses 1 ms wake-ups 5-40 times in 15 s. The counts are reported (with the
    # host's own stalls) and the audio is checked sample by sample above; the strict "no xrun at
    # all" check needs a machine that can keep a 1 ms deadline: HX_STRICT_XRUNS=1.
    if os.environ.get("HX_STRICT_XRUNS") == "1":
        assert lb["xruns"] == 0 and lb["server_xruns"] == 0, lb
    # The server it started is gone.
    assert not process_alive(lb["server"]["pid"])
