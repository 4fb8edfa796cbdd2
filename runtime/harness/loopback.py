"""Round-trip latency through a real audio server: :func:`loopback_jack`.

It starts its own JACK server (:class:`runtime.harness.jack.JackServer`: ``jackd -d dummy`` at the
board's rate and period, a unique name), runs the runtime's duplex stream
(:mod:`runtime.audio_io`) in a child process (``python -m runtime.harness.loopback
--loopback-worker JSON``) with the stream's output connected to its own input, plays a known
probe through the engine for a set time, and measures by cross-correlation the delay between
what the engine emitted and what came back, checks that every sample came back unchanged, counts
xruns (by source: :func:`xruns_by_source`; the host's own stalls by :class:`StallMonitor`), and
stops the server. Round trip = that I/O delay (JACK's buffering) + the engine's algorithmic
latency (its stream delay, one block, plus the model's own delay, measured by impulse).

numpy + the runtime; ``jackd``/``jack_lsp``/``jack_connect`` from apt ``jackd2``.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.audio_io import AudioIOError, DuplexRunner, import_sounddevice
from runtime.backends import open_backend
from runtime.bundle import load_bundle
from runtime.engine import Engine
from runtime.harness.jack import JackServer
from runtime.harness.measure import BenchError, impulse_latency, json_default
from runtime.signing import policy_from_sources


class StallMonitor:
    """How often this machine fails to wake a real-time thread within one audio period.

    A thread (SCHED_FIFO where allowed, in the benchmark's parent process, so it shares no GIL
    with the audio client) sleeps to an absolute 1-period grid and records every wake-up that
    comes more than one period late. On a quiet machine that never happens; on a virtual
    machine whose vCPUs the host deschedules it does, and then the audio server reports xruns
    that no client can prevent. The loopback report gives these counts beside the xruns.
    """

    def __init__(self, period_s: float) -> None:
        self.period = float(period_s)
        self.events: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))  # this thread only (Linux)
        except (OSError, AttributeError):
            pass
        nxt = time.monotonic()
        while not self._stop.is_set():
            nxt += self.period
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
            late = time.monotonic() - nxt
            if late > self.period:
                self.events.append((time.time(), late))
                nxt = time.monotonic()

    def count(self, t0: float, t1: float) -> int:
        return sum(t0 <= t <= t1 for t, _ in list(self.events))

    def max_ms(self, t0: float, t1: float) -> float:
        return 1000.0 * max((late for t, late in list(self.events) if t0 <= t <= t1), default=0.0)



def _xcorr_lag(ref: np.ndarray, sig: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (0..max_lag) at which ``sig`` best matches ``ref`` delayed, and the normalised peak."""
    n = len(ref)
    size = 1 << int(np.ceil(np.log2(2 * n + 1)))
    xc = np.fft.irfft(np.fft.rfft(sig.astype(np.float64), size) * np.conj(np.fft.rfft(ref.astype(np.float64), size)), size)
    lags = xc[: max_lag + 1]
    k = int(np.argmax(lags))
    norm = float(np.sqrt(np.sum(ref.astype(np.float64) ** 2) * np.sum(sig.astype(np.float64) ** 2))) or 1.0
    return k, float(lags[k] / norm)


def _loopback_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the child process whose environment points at the private JACK server."""
    sd = import_sounddevice()
    jack = [a for a in sd.query_hostapis() if a["name"].lower().startswith("jack")]
    if not jack or jack[0]["default_input_device"] < 0:
        raise AudioIOError("PortAudio sees no JACK server (is libportaudio2 built with JACK, and the server up?)")
    dev = int(jack[0]["default_input_device"])
    bundle = load_bundle(cfg["bundle"], trust=policy_from_sources(cfg.get("trusted_keys", []),
                                                                  require=cfg.get("require_signature", False),
                                                                  require_reason="the parent's policy"))
    engine = Engine(bundle, cfg["backend"], num_threads=cfg["threads"])
    rate, period = cfg["sample_rate"], cfg["period"]
    host_block = cfg.get("host_block") or period
    cap = int((cfg["seconds"] + cfg["settle"] + 20.0) * rate)
    rng = np.random.default_rng(20240601)
    probe = (rng.uniform(-1.0, 1.0, cap) * cfg["amplitude"]).astype(np.float32)
    src_rec = np.zeros(cap, np.float32)
    out_rec = np.zeros(cap, np.float32)
    in_rec = np.zeros(cap, np.float32)
    st = {"pos": 0, "go": False, "go_pos": -1, "probe_pos": 0, "chunks": []}

    def source(frames: int) -> np.ndarray:
        if st["go"] and st["go_pos"] < 0:
            st["go_pos"] = st["pos"]
        if st["go_pos"] >= 0:
            p = st["probe_pos"]
            x = probe[p:p + frames]
            st["probe_pos"] = p + frames
            if len(x) < frames:
                x = np.concatenate([x, np.zeros(frames - len(x), np.float32)])
        else:
            x = np.zeros(frames, np.float32)
        p = st["pos"]
        if p + frames <= cap:
            src_rec[p:p + frames] = x
        return x

    def tap(indata: np.ndarray, y: np.ndarray) -> None:
        p = st["pos"]
        n = len(y)
        if p + n <= cap:
            out_rec[p:p + n] = y
            in_rec[p:p + n] = indata
            st["chunks"].append(n)
        st["pos"] = p + n

    runner = DuplexRunner(engine, device=dev, host_block=host_block, source=source, tap=tap)
    runner.start()
    try:
        # Wire the stream's output to its own input, and nothing else.
        t_wait = time.monotonic() + 10
        ours: list[str] = []
        while time.monotonic() < t_wait:
            r = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10)
            ours = [p.strip() for p in r.stdout.splitlines() if p.strip() and not p.startswith("system:")]
            if any(":out" in p for p in ours) and any(":in" in p for p in ours):
                break
            time.sleep(0.05)
        outs = sorted(p for p in ours if ":out" in p)
        ins = sorted(p for p in ours if ":in" in p)
        if not outs or not ins:
            raise AudioIOError(f"the stream's JACK ports did not appear (ports: {ours})")
        r = subprocess.run(["jack_lsp", "-c"], capture_output=True, text=True, timeout=10)
        conns: list[tuple[str, str]] = []
        cur = None
        for line in r.stdout.splitlines():
            if not line.startswith((" ", "\t")):
                cur = line.strip()
            elif cur is not None:
                conns.append((cur, line.strip()))
        for a, b in conns:
            if (a in outs and b.startswith("system:")) or (a.startswith("system:") and b in ins):
                subprocess.run(["jack_disconnect", a, b], capture_output=True, timeout=10)
        rc = subprocess.run(["jack_connect", outs[0], ins[0]], capture_output=True, text=True, timeout=10)
        if rc.returncode != 0:
            raise AudioIOError(f"jack_connect {outs[0]} {ins[0]} failed: {rc.stderr.strip()}")
        time.sleep(cfg["settle"])
        runner.check()

        def counters() -> dict[str, int]:
            sm = runner.summary
            return {"xruns": sm.xruns, "late": sm.late_callbacks, "overruns": sm.overruns,
                    "runtime_xruns": sm.runtime_xruns, "cb": sm.callbacks}

        # No cyclic garbage collection while measuring: a full collection in the audio thread
        # would be the runtime's own stall (the callback allocates only acyclic numpy temporaries).
        gc.collect()
        gc.disable()
        s0 = counters()
        t_start = time.time()
        st["go"] = True
        end = time.monotonic() + cfg["seconds"]
        while time.monotonic() < end:
            time.sleep(0.05)
            runner.check()
        t_end = time.time()
        s1 = counters()
        gc.enable()
    finally:
        summary = runner.stop()
        try:
            sd._terminate()  # leave PortAudio before the server goes away (it asserts otherwise)
        except Exception:
            pass

    pos = min(st["pos"], cap)
    g = st["go_pos"]
    if g < 0 or pos - g < rate:
        raise AudioIOError(f"the loopback ran only {max(0, pos - g)} samples")
    # 1. The live engine produced exactly what the offline engine produces for the same input.
    offline = Engine(bundle, cfg["backend"], num_threads=cfg["threads"])
    ref = np.concatenate([np.zeros(offline.stream_delay, np.float32), offline.run(src_rec[:pos])])[:pos]
    engine_exact = bool(np.array_equal(ref, out_rec[:pos]))
    # 2. The I/O delay: captured vs emitted, over the probe window.
    max_lag = min(8 * period + 4096, (pos - g) // 2)
    emitted = out_rec[g:pos]
    captured = in_rec[g:pos]
    io_delay, peak = _xcorr_lag(emitted[: len(emitted) - max_lag], captured, max_lag)
    a = captured[io_delay:]
    b = emitted[: len(emitted) - io_delay]
    glitches = int(np.count_nonzero(a != b))
    # 3. The model's own delay and the algorithmic latency, by impulse on a fresh backend.
    algo = impulse_latency(open_backend(bundle, cfg["backend"], num_threads=cfg["threads"]))
    model_delay = algo - engine.block
    round_trip = io_delay + engine.stream_delay + model_delay
    # 4. For information: the peak of captured vs the raw probe (meaningful when the model is near-identity).
    probe_peak, _ = _xcorr_lag(src_rec[g:pos][: pos - g - max_lag], captured, max_lag)
    return {
        "backend": cfg["backend"], "sample_rate": rate, "period": period, "host_block": host_block,
        "seconds": float(t_end - t_start), "t_start": t_start, "t_end": t_end,
        "round_trip_samples": int(round_trip), "round_trip_ms": 1000.0 * round_trip / rate,
        "io_delay_samples": int(io_delay), "buffering_ms": 1000.0 * io_delay / rate,
        "algorithmic_samples": int(algo), "algorithmic_ms": 1000.0 * algo / rate,
        "engine_stream_delay_samples": int(engine.stream_delay),
        "xcorr_peak": peak, "probe_peak_delay_samples": int(probe_peak + engine.stream_delay),
        "glitch_samples": glitches, "engine_matches_offline": engine_exact,
        "xruns": int(s1["xruns"] - s0["xruns"]), "runtime_xruns": int(s1["runtime_xruns"] - s0["runtime_xruns"]),
        "late_callbacks": int(s1["late"] - s0["late"]), "overruns": int(s1["overruns"] - s0["overruns"]),
        "callbacks": int(s1["cb"] - s0["cb"]), "max_callback_us": float(summary.max_callback_us),
        "max_callback_cpu_us": float(summary.max_callback_cpu_us),
        "stream_latency_ms": list(summary.io_latency_ms), "engine": {k: v for k, v in summary.engine.items()
                                                                       if isinstance(v, (int, float))},
        "ports": [], "callback_sizes": sorted(set(st["chunks"]))[:8],
    }


def loopback_jack(bundle: str | os.PathLike[str], backend: str = "litert", *, seconds: float = 10.0,
                  sample_rate: int | None = None, period: int | None = None, settle: float = 1.0,
                  realtime: bool = True, threads: int = 1, timeout: float | None = None,
                  python: str | None = None, trust: Any = None) -> dict[str, Any]:
    """Round trip through a private JACK dummy server: see the module docstring.

    ``sample_rate``/``period`` default to the bundle's (the board's) rate and block. Raises
    :class:`BenchError` with the server's last words when anything fails; the server and the
    child are always stopped (the child has ``timeout`` seconds, default ``seconds + 90``).
    ``trust`` (a :class:`runtime.signing.TrustPolicy`) is handed to the child as key paths.
    """
    b = load_bundle(bundle, trust=trust)
    rate = int(sample_rate or b.manifest.sample_rate)
    per = int(period or b.manifest.block)
    cfg = {"bundle": str(Path(bundle).resolve()), "backend": backend, "seconds": float(seconds), "settle": float(settle),
           "amplitude": 0.2, "threads": int(threads), "sample_rate": rate, "period": per,
           "trusted_keys": trust.key_paths() if trust is not None else [],
           "require_signature": bool(trust.require) if trust is not None else False}
    timeout = float(timeout if timeout is not None else seconds + settle + 90.0)
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds runtime/
    with JackServer(rate, per, realtime=realtime) as server:
        env = server.env
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [python or sys.executable, "-m", "runtime.harness.loopback", "--loopback-worker", json.dumps(cfg)]
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        monitor = StallMonitor(per / rate)
        monitor.start()
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            raise BenchError(f"the loopback run did not finish within {timeout:g} s (server: {server.log_tail()})") from None
        finally:
            monitor.stop()
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        last = [ln for ln in out.splitlines() if ln.startswith("{")]
        if child.returncode != 0 or not last:
            msg = [ln for ln in err.strip().splitlines() if ln.strip()]
            raise BenchError(f"the loopback run failed (exit {child.returncode}): {msg[-1] if msg else 'no output'}"
                             f" (server: {server.log_tail()})")
        res = json.loads(last[-1])
        if "error" in res:
            raise BenchError(f"the loopback run failed: {res['error']} (server: {server.log_tail()})")
        res.update(server.xruns(res["t_start"], res["t_end"]))
        res["host_stalls"] = monitor.count(res["t_start"], res["t_end"])
        res["host_stall_max_ms"] = monitor.max_ms(res["t_start"], res["t_end"])
        res["xruns_by_source"] = xruns_by_source(res)
        res["expected_buffering_samples"] = server.buffering_samples
        res["server"] = {"name": server.name, "pid": server.proc.pid if server.proc else None, "driver": "dummy",
                         "realtime": realtime, "period": per, "sample_rate": rate}
    return res


def xruns_by_source(lb: dict[str, Any]) -> dict[str, int]:
    """One xrun count per source, named as such (the loopback's ``xruns`` mixes them):

    * ``runtime``: callbacks flagged right after our own callback overran its period (our fault);
    * ``portaudio_other``: the rest of the callbacks PortAudio flagged (over/underflow);
    * ``server_driver`` / ``server_client``: what the JACK server logged (its driver, its clients);
    * ``host_stalls``: times this machine failed to wake a thread within one period (the host's).
    """
    runtime_x = int(lb.get("runtime_xruns", 0))
    return {"runtime": runtime_x, "portaudio_other": max(0, int(lb.get("xruns", 0)) - runtime_x),
            "server_driver": int(lb.get("server_driver_xruns", 0)), "server_client": int(lb.get("server_client_xruns", 0)),
            "host_stalls": int(lb.get("host_stalls", 0))}


def _worker_main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] != "--loopback-worker":
        print("usage: python -m runtime.harness.loopback --loopback-worker JSON", file=sys.stderr)
        return 2
    try:
        res = _loopback_worker(json.loads(argv[1]))
    except Exception as e:  # reported to the parent as one line
        res = {"error": f"{type(e).__name__}: {' '.join(str(e).split())}"}
    sys.stdout.write(json.dumps(res, default=json_default) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
