"""Live faults: the audio server killed and restarted, an xrun storm, a device that never comes back.

Each test starts its own JACK dummy-driver server (unique name, JACK_DEFAULT_SERVER) and kills
or stalls it while ``stream`` runs; every wait has a timeout. The stream must report the loss on
one line, reopen when the server is back, keep its counters, and never emit a sample above the
limit (checked on what the workers actually emitted, with a loud input and a lowered limit so
the limiter works throughout).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from runtime.bundle import load_bundle
from runtime.harness.jack import JackServer
from runtime.live import LiveSupervisor, WorkerConfig
from tests.conftest import REPO


def _env(server: JackServer) -> dict[str, str]:
    env = server.env
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def _kill(server: JackServer) -> None:
    """What an unplugged device or a crashed server looks like to a client: the server just vanishes.

    Its JACK registry slot stays taken until a server of the same name starts: the tests restart
    it (which frees the slot) or call release_registry_slot() once the stream no longer looks."""
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.stop(reclaim=False)


def _wait_for(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.timeout(240)
def test_stream_reports_a_killed_server_reopens_and_keeps_counting(default_bundle):
    m = load_bundle(default_bundle).manifest
    server = JackServer(m.sample_rate, m.block, realtime=False).start()
    restarted = None
    p = subprocess.Popen([sys.executable, "-m", "toolchain", "stream", str(default_bundle), "--device", "jack",
                          "--seconds", "14", "--backend", "ckernel"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env(server), cwd=REPO)
    try:
        line = p.stdout.readline()  # printed once the stream is open
        assert line.startswith("streaming"), (line, p.stderr.read() if p.poll() is not None else "")
        time.sleep(2.0)
        _kill(server)
        time.sleep(2.0)
        restarted = JackServer(m.sample_rate, m.block, name=server.name, realtime=False).start()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if restarted is not None:
            restarted.stop()
        else:  # failed between the kill and the restart: free the dead server's registry slot
            server.stop()
            if getattr(server, "_died_by_signal", False):
                server.release_registry_slot()
    assert p.returncode == 0, err[-3000:]
    reports = err.strip().splitlines()
    assert len(reports) == 2 and "Traceback" not in err, err
    assert reports[0].startswith("stream: audio device lost after ") and "reopening (up to 30 s)" in reports[0]
    assert reports[1].startswith("stream: audio reopened after ") and "(reopen 1)" in reports[1]
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("stopped after") and "device losses 1, reopened 1" in summary, summary
    peak = float(summary.split("peak output ")[1].split()[0])
    # Nothing is connected to the capture port, so the device hears digital silence and plays
    # silence back (the previous default played a buzz for it, which is what made this peak > 0).
    assert 0 <= peak <= m.output_limit


@pytest.mark.timeout(300)
def test_output_stays_under_the_limit_through_an_xrun_storm_and_two_restarts(default_bundle, tmp_path):
    """Loud input (uniform noise at full scale) and a limit of 0.25 so the limiter is busy all along;
    a storm of 25 server stalls, then two kill/restart cycles. Every emitted sample is recorded."""
    m = load_bundle(default_bundle).manifest
    limit = 0.25
    server = JackServer(m.sample_rate, m.block, realtime=False).start()
    servers = [server]
    cfg = WorkerConfig(bundle=str(default_bundle), backend="ckernel", device="jack", output_limit=limit,
                       source={"kind": "noise", "amplitude": 1.0, "seed": 3}, record=str(tmp_path / "out.f32"),
                       record_seconds=40.0)
    reports: list[str] = []
    sup = LiveSupervisor(cfg, reopen_timeout=30.0, env=_env(server), report=reports.append)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(s=sup.run(24.0)), daemon=True)
    t.start()
    try:
        _wait_for(lambda: sup.summary.callbacks > 500, 60, "the stream to run")
        xruns_before = sup.summary.xruns
        for _ in range(25):  # the storm: the server stalls 40 ms at a time, the clients see xruns
            os.kill(servers[-1].proc.pid, signal.SIGSTOP)
            time.sleep(0.04)
            os.kill(servers[-1].proc.pid, signal.SIGCONT)
            time.sleep(0.04)
        _wait_for(lambda: sup.summary.xruns > xruns_before, 10, "the storm's xruns to be counted")
        for k in (1, 2):
            _kill(servers[-1])
            _wait_for(lambda: sup.summary.device_losses == k, 20, f"loss {k} to be noticed")
            time.sleep(0.5)
            servers.append(JackServer(m.sample_rate, m.block, name=server.name, realtime=False).start())
            _wait_for(lambda: sup.summary.reopens == k, 60, f"reopen {k}")
            time.sleep(1.0)
        t.join(120)
        assert not t.is_alive(), "the supervisor did not stop"
    finally:
        for s in servers:
            s.stop()
        if getattr(servers[-1], "_died_by_signal", False):  # failed before a restart
            servers[-1].release_registry_slot()
    s = result["s"]
    print(f"{s.seconds:.1f} s, {s.callbacks} callbacks, xruns {s.xruns}, losses {s.device_losses}, reopens {s.reopens}, "
          f"down {s.downtime_s:.1f} s, peak {s.peak_output:.4f}, limiter {s.engine['limiter_samples']} samples; {reports}")
    assert s.device_losses == 2 and s.reopens == 2 and s.workers >= 3
    assert s.xruns > 0
    assert len(reports) == 4 and all(r.startswith(("stream: audio device lost", "stream: audio reopened")) for r in reports)
    # What the three workers emitted, sample by sample: finite, never above the limit, and loud
    # enough that the limiter really worked (a silent output would pass the first two trivially).
    rec = [np.fromfile(p, np.float32) for p in sorted(tmp_path.glob("out.f32.*"))]
    assert len(rec) >= 3 and all(len(r) > m.sample_rate for r in rec[:1] + rec[-1:])
    y = np.concatenate(rec)
    assert np.isfinite(y).all() and float(np.abs(y).max()) <= limit
    assert float(np.abs(y).max()) >= 0.9 * limit and s.engine["limiter_samples"] > 0
    assert s.peak_output <= limit and s.nonfinite_output == 0
    # Counters are whole-session sums: every sample a callback took went into an engine.
    assert s.engine["samples_in"] == s.frames and s.callbacks > 0
    assert s.engine["nonfinite_inputs"] == 0 and s.engine["underruns"] == 0


@pytest.mark.timeout(180)
def test_a_device_that_never_comes_back_is_a_one_line_error(default_bundle):
    m = load_bundle(default_bundle).manifest
    server = JackServer(m.sample_rate, m.block, realtime=False).start()
    p = subprocess.Popen([sys.executable, "-m", "runtime", "stream", str(default_bundle), "--device", "jack",
                          "--backend", "ckernel", "--reopen-timeout", "3"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env(server), cwd=REPO)
    try:
        assert p.stdout.readline().startswith("streaming")
        time.sleep(1.0)
        _kill(server)
        out, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        server.stop()
        server.release_registry_slot()
    assert p.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 2, err
    assert lines[0].startswith("stream: audio device lost after ")
    assert lines[1].startswith("python -m runtime stream: error: the audio device was lost and did not come back "
                               "within 3 s ("), lines[1]


def test_counters_add_up_across_workers():
    """The supervisor's bookkeeping on its own: sums, maxima, the latest worker's percentiles."""
    sup = LiveSupervisor(WorkerConfig(bundle="unused"))

    def ev(cb, xr, mx, blocks, lim, peak, p99):
        return {"summary": {"callbacks": cb, "frames": 16 * cb, "xruns": xr, "max_callback_us": mx},
                "engine": {"blocks": blocks, "samples_in": 16 * cb, "limiter_samples": lim, "recent_p99_us": p99,
                           "min_limiter_gain": 0.5 if lim else 1.0},
                "peak": peak, "nonfinite_output": 0}

    sup._combine(ev(100, 2, 300.0, 100, 5, 0.2, 70.0))
    sup._retire(ev(150, 3, 400.0, 150, 5, 0.2, 70.0))  # worker 1's last word
    sup._combine(ev(40, 1, 250.0, 40, 0, 0.1, 90.0))  # worker 2 running
    s = sup.summary
    assert (s.callbacks, s.frames, s.xruns, s.max_callback_us) == (190, 3040, 4, 400.0)
    assert s.engine["blocks"] == 190 and s.engine["samples_in"] == 3040 and s.engine["limiter_samples"] == 5
    assert s.engine["recent_p99_us"] == 90.0 and s.engine["min_limiter_gain"] == 0.5
    assert s.peak_output == 0.2
    sup._retire(ev(60, 1, 250.0, 60, 0, 0.3, 90.0))
    assert (s.callbacks, s.xruns, s.engine["blocks"], s.peak_output) == (210, 4, 210, 0.3)
