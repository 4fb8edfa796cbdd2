"""Live audio through a real audio server: a private JACK server on the dummy driver at the
board's rate and period, the runtime's duplex stream with its output wired to its own input.

Every test starts and stops its own server (unique name, JACK_DEFAULT_SERVER), with timeouts
on everything, so parallel runs never meet and nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from runtime.audio_io import StreamSummary, status_line
from runtime.bundle import load_bundle
from runtime.harness.jack import JackServer
from tests.conftest import REPO


@pytest.fixture
def jack_server(default_bundle):
    m = load_bundle(default_bundle).manifest
    with JackServer(m.sample_rate, m.block) as server:
        yield server
    assert server.proc is None


def _env(server: JackServer) -> dict[str, str]:
    env = server.env
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


@pytest.mark.timeout(180)
def test_stream_runs_through_jack_and_reports(default_bundle, jack_server):
    r = subprocess.run([sys.executable, "-m", "toolchain", "stream", str(default_bundle), "--device", "jack",
                        "--seconds", "2", "--backend", "ckernel"],
                       capture_output=True, text=True, timeout=120, env=_env(jack_server), cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "streaming" in r.stdout and "latency" in r.stdout
    assert "stopped after" in r.stdout and "xruns" in r.stdout


@pytest.mark.timeout(180)
def test_stream_ctrl_c_exits_cleanly_with_a_summary(default_bundle, jack_server):
    p = subprocess.Popen([sys.executable, "-m", "runtime", "stream", str(default_bundle), "--device", "jack"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(jack_server), cwd=REPO)
    try:
        line = p.stdout.readline()  # printed once the stream is open
        assert line.startswith("streaming"), (line, p.stderr.read() if p.poll() is not None else "")
        time.sleep(1.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err[-2000:]
    assert "stopped after" in out and "Traceback" not in err


def test_stream_to_a_missing_device_is_a_one_line_error(default_bundle, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), JACK_DEFAULT_SERVER="hx-no-such-server", JACK_NO_START_SERVER="1")
    r = subprocess.run([sys.executable, "-m", "runtime", "stream", str(default_bundle), "--device", "no such device 42",
                        "--seconds", "1"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_status_line_shows_load_latency_and_xruns():
    s = StreamSummary(xruns=3, late_callbacks=1, latency_ms=3.0)
    line = status_line({"load": 0.05, "load_p99": 0.12, "limiter_samples": 10, "samples_out": 1000,
                        "nonfinite_inputs": 0}, s)
    assert "load" in line and "5.0%" in line and "3.00 ms" in line and "xruns 3" in line
    assert "\n" not in line
