"""Live streaming that survives its audio device: a supervisor and an audio worker process.

A hearing aid's audio path must outlive a sound card that is unplugged, a USB hub reset or an
audio server restart. PortAudio cannot be trusted to clean up after that: with the JACK host
API (PortAudio 19.6), once the server is gone ``Pa_AbortStream``, ``Pa_StopStream``,
``Pa_CloseStream`` and ``Pa_Terminate`` all block forever, so a process that has lost its
server can neither close the stream nor open a new one. Hence two processes:

* the **worker** (``python -m runtime.live --worker JSON``) loads the bundle, opens the duplex
  stream (:class:`runtime.audio_io.DuplexRunner`, engine and limiter in its callback) and prints
  one JSON event per line: ``open`` (latencies), ``status`` (cumulative counters, every 0.1 s),
  then ``done`` on a clean stop, or ``lost`` when the stream dies, after which it leaves with
  ``os._exit`` without touching PortAudio again; ``error`` when the device cannot be opened;
* the **supervisor** (:class:`LiveSupervisor`, what ``stream`` runs) never imports PortAudio. It
  reads the events, reports a loss on one line, kills the worker's process group, starts new
  workers every ``retry_interval`` seconds until one opens the device (or ``reopen_timeout``
  passes: then a one-line error), reports the reopen, and keeps the counters across workers
  (sums, maxima) so the summary covers the whole session. A worker that stops reporting for
  ``watchdog_s`` (a stream stuck without failing) is treated as lost too.

Safety does not depend on any of this: every sample a worker emits went through its engine's
limiter, and the summary carries the peak output over all workers. A new worker starts from a
fresh engine (silence history, the output FIFO's delay of silence), so a reopen cannot replay
stale audio. numpy (+ sounddevice in the worker only).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtime.audio_io import AudioIOError, DuplexRunner, check_devices, import_sounddevice
from runtime.bundle import load_bundle
from runtime.engine import Engine
from runtime.signing import policy_from_sources

__all__ = ["LiveSummary", "LiveSupervisor", "WorkerConfig", "worker_main"]

# StreamSummary counters summed across workers, and those that take the maximum.
_SUM = ("callbacks", "frames", "xruns", "input_overflows", "output_underflows", "late_callbacks", "overruns",
        "runtime_xruns")
_MAX = ("max_callback_us", "max_callback_cpu_us")
# Engine counters summed across workers (the rest, percentiles and the like, are the latest worker's).
_ENGINE_SUM = ("blocks", "samples_in", "samples_out", "nonfinite_inputs", "nonfinite_outputs", "limiter_samples",
               "late_blocks", "xruns", "underruns")


@dataclass
class WorkerConfig:
    """Everything a worker needs; JSON-serialisable (it travels on the worker's command line)."""

    bundle: str
    backend: str = "litert"
    threads: int = 1
    device: Any = None
    input_device: Any = None
    output_device: Any = None
    host_block: int | None = None
    channels: int = 1
    channel: str = "mix"  # left, right or mix (the mean) of the input channels
    low_latency: bool = False
    # A maximum output below the bundle's (a fitting's lower MPO); None: the bundle's limit.
    output_limit: float | None = None
    trusted_keys: list[str] = field(default_factory=list)
    require_signature: bool = False
    require_reason: str = ""
    # A backend the runtime cannot name (the toolchain's torch): "module:function" called as
    # function(bundle, threads, **factory_kwargs).
    backend_factory: str | None = None
    factory_kwargs: dict[str, Any] = field(default_factory=dict)
    # Tests and probes: replace the input with a signal {"kind": "noise", "amplitude": A, "seed": S},
    # and record up to record_seconds of what was emitted into record (float32 raw, one file per worker).
    source: dict[str, Any] | None = None
    record: str | None = None
    record_seconds: float = 60.0
    status_every: float = 0.1


@dataclass
class LiveSummary:
    """A whole live session, over every worker it took."""

    seconds: float = 0.0
    callbacks: int = 0
    frames: int = 0
    xruns: int = 0
    input_overflows: int = 0
    output_underflows: int = 0
    late_callbacks: int = 0
    overruns: int = 0
    runtime_xruns: int = 0
    max_callback_us: float = 0.0
    max_callback_cpu_us: float = 0.0
    latency_ms: float = 0.0
    io_latency_ms: tuple[float, float] = (0.0, 0.0)
    engine: dict[str, Any] = field(default_factory=dict)
    device_losses: int = 0  # streams that died (device gone, server killed, stream stuck)
    reopens: int = 0  # streams reopened after a loss
    downtime_s: float = 0.0  # from each loss to the reopened stream's first status
    peak_output: float = 0.0  # largest |sample| any worker emitted
    nonfinite_output: int = 0  # emitted samples that were NaN/inf (must stay 0)
    workers: int = 0
    events: list[str] = field(default_factory=list)  # what was reported, in order
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ the worker
def _emit(ev: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(ev, default=float) + "\n")
    sys.stdout.flush()


def _counters(runner: Any, engine: Any, peak: list[float]) -> dict[str, Any]:
    s = runner.summary
    st = engine.stats()
    return {"summary": {k: getattr(s, k) for k in (*_SUM, *_MAX)},
            "engine": {k: v for k, v in st.items() if isinstance(v, (int, float))},
            "peak": peak[0], "nonfinite_output": int(peak[1])}


def worker_main(cfg_json: str) -> int:
    """The audio worker (see the module doc). Exit 0 after ``done`` or ``error``; ``lost`` leaves by os._exit(3)."""
    cfg = WorkerConfig(**json.loads(cfg_json))
    try:
        sd = import_sounddevice()
        bundle = load_bundle(cfg.bundle, trust=policy_from_sources(cfg.trusted_keys, require=cfg.require_signature,
                                                                   require_reason=cfg.require_reason))
        m = bundle.manifest
        # The device first: while it is missing this is the only thing a reopen attempt does.
        check_devices(m.sample_rate, device=cfg.device, input_device=cfg.input_device,
                      output_device=cfg.output_device, channels=cfg.channels)
        if cfg.backend_factory:
            mod, _, attr = cfg.backend_factory.partition(":")
            backend: Any = getattr(importlib.import_module(mod), attr)(bundle, cfg.threads, **cfg.factory_kwargs)
        else:
            backend = cfg.backend
        host_block = m.block if cfg.host_block is None else cfg.host_block
        delay = None
        if cfg.low_latency:
            delay = m.block - math.gcd(host_block or m.block, m.block)
        engine = Engine(bundle, backend, num_threads=cfg.threads, stream_delay=delay, output_limit=cfg.output_limit)
    except Exception as e:  # one line for the supervisor; it decides whether that ends the session
        _emit({"event": "error", "message": " ".join(str(e).split()) or type(e).__name__})
        return 0

    peak = [0.0, 0]  # largest |y| emitted, non-finite samples emitted (the callback updates both)
    rec = None
    rec_pos = [0]
    if cfg.record:
        rec = np.zeros(int(cfg.record_seconds * m.sample_rate), np.float32)
    source = None
    if cfg.source:
        rng = np.random.default_rng(int(cfg.source.get("seed", 0)))
        amp = float(cfg.source.get("amplitude", 1.0))

        def source(frames: int) -> np.ndarray:
            return (rng.uniform(-amp, amp, frames)).astype(np.float32)

    def tap(_x: np.ndarray, y: np.ndarray) -> None:
        a = float(np.max(np.abs(y), initial=0.0))
        if a != a or a == float("inf"):  # NaN / inf: count, never let it hide the peak
            peak[1] += int(np.count_nonzero(~np.isfinite(y)))
        elif a > peak[0]:
            peak[0] = a
        if rec is not None:
            p = rec_pos[0]
            k = min(len(y), len(rec) - p)
            rec[p:p + k] = y[:k]
            rec_pos[0] = p + k

    def save_record() -> None:
        if rec is not None and cfg.record:
            with open(cfg.record, "wb") as fh:
                fh.write(rec[: rec_pos[0]].tobytes())

    try:
        runner = DuplexRunner(engine, device=cfg.device, input_device=cfg.input_device,
                              output_device=cfg.output_device, host_block=host_block, channels=cfg.channels,
                              channel=cfg.channel, source=source, tap=tap)
    except AudioIOError as e:
        _emit({"event": "error", "message": " ".join(str(e).split())})
        return 0
    s = runner.summary
    _emit({"event": "open", "latency_ms": s.latency_ms, "io_latency_ms": list(s.io_latency_ms),
           "stream_delay": engine.stream_delay, "host_block": host_block, "block": m.block,
           "sample_rate": m.sample_rate, "output_limit": engine.output_limit})
    runner.start()
    try:
        while True:
            time.sleep(cfg.status_every)
            if runner._error is not None or not runner.stream.active:
                why = (f"the audio callback failed: {type(runner._error).__name__}: {runner._error}"
                       if runner._error is not None else "the audio stream stopped (device lost or server gone)")
                save_record()
                _emit({"event": "lost", "reason": why, "callback_failed": runner._error is not None,
                       **_counters(runner, engine, peak)})
                # No PortAudio call may follow: with the server gone they block forever (module doc).
                os._exit(3)
            _emit({"event": "status", **_counters(runner, engine, peak)})
    except KeyboardInterrupt:
        pass
    runner.stop()
    save_record()
    _emit({"event": "done", **_counters(runner, engine, peak)})
    try:
        sd._terminate()  # while the server is still there (PortAudio asserts otherwise)
    except Exception:
        pass
    return 0


# -------------------------------------------------------------------------- the supervisor
class _Worker:
    """One worker process and the thread that turns its stdout into events."""

    def __init__(self, cfg: WorkerConfig, python: str, env: dict[str, str] | None, index: int) -> None:
        c = dict(asdict(cfg))
        if cfg.record:
            c["record"] = f"{cfg.record}.{index}"
        root = str(Path(__file__).resolve().parents[1])
        e = dict(os.environ if env is None else env)
        e["PYTHONPATH"] = root + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([python, "-m", "runtime.live", "--worker", json.dumps(c)], env=e,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     start_new_session=True)  # its own group: Ctrl-C reaches the supervisor only
        self.events: queue.Queue = queue.Queue()
        self.last: dict[str, Any] | None = None  # latest counters
        self.opened_at: float | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    pass
        self.events.put({"event": "exit"})

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            lines = [ln.strip() for ln in self.stderr.read().splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1] if lines else ""

    def _signal(self, sig: int) -> None:
        """Signal the worker's process group while it runs (a group that just exited is no error)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.thread.join(2.0)
        try:
            self.stderr.close()
        except OSError:
            pass


class LiveSupervisor:
    """Runs workers (see the module doc) until ``seconds`` pass or Ctrl-C; reopens after losses."""

    def __init__(self, cfg: WorkerConfig, *, reopen_timeout: float = 30.0, retry_interval: float = 0.5,
                 watchdog_s: float = 3.0, python: str | None = None, env: dict[str, str] | None = None,
                 report: Callable[[str], None] | None = None, on_open: Callable[[dict[str, Any]], None] | None = None,
                 on_status: Callable[[LiveSummary], None] | None = None) -> None:
        self.cfg = cfg
        self.reopen_timeout = float(reopen_timeout)
        self.retry_interval = float(retry_interval)
        self.watchdog_s = float(watchdog_s)
        self.python = python or sys.executable
        self.env = env
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self.on_open = on_open
        self.on_status = on_status
        self.summary = LiveSummary()
        self._done: dict[str, Any] = {"summary": {}, "engine": {}}  # finished workers' counters, combined

    # ---- counters
    def _combine(self, latest: dict[str, Any] | None) -> None:
        """summary = finished workers + the current one's latest counters."""
        s = self.summary
        parts = [self._done] + ([latest] if latest else [])
        for k in _SUM:
            setattr(s, k, int(sum(p["summary"].get(k, 0) for p in parts)))
        for k in _MAX:
            setattr(s, k, float(max((p["summary"].get(k, 0.0) for p in parts), default=0.0)))
        eng = dict(latest["engine"]) if latest else dict(self._done["engine"])
        for k in _ENGINE_SUM:
            eng[k] = sum(p["engine"].get(k, 0) for p in parts)
        eng["min_limiter_gain"] = min((p["engine"].get("min_limiter_gain", 1.0) for p in parts), default=1.0)
        s.engine = eng
        if latest:
            s.peak_output = max(s.peak_output, float(latest.get("peak", 0.0)))
            s.nonfinite_output = int(self._done.get("nonfinite_output", 0) + latest.get("nonfinite_output", 0))

    def _retire(self, latest: dict[str, Any] | None) -> None:
        """Fold a finished worker's last counters into the totals."""
        if not latest:
            return
        d = self._done
        for k in _SUM:
            d["summary"][k] = d["summary"].get(k, 0) + latest["summary"].get(k, 0)
        for k in _MAX:
            d["summary"][k] = max(d["summary"].get(k, 0.0), latest["summary"].get(k, 0.0))
        eng = dict(latest["engine"])
        for k in _ENGINE_SUM:
            eng[k] = d["engine"].get(k, 0) + latest["engine"].get(k, 0)
        eng["min_limiter_gain"] = min(d["engine"].get("min_limiter_gain", 1.0), latest["engine"].get("min_limiter_gain", 1.0))
        d["engine"] = eng
        d["nonfinite_output"] = d.get("nonfinite_output", 0) + latest.get("nonfinite_output", 0)
        self.summary.peak_output = max(self.summary.peak_output, float(latest.get("peak", 0.0)))
        self._combine(None)

    def _note(self, line: str) -> None:
        self.summary.events.append(line)
        self.report(line)

    # ---- the loop
    def run(self, seconds: float | None = None) -> LiveSummary:
        """Supervise until ``seconds`` (None: until Ctrl-C). Raises AudioIOError (one line) when the
        device cannot be opened at all, or does not come back within ``reopen_timeout``."""
        s = self.summary
        t0 = time.monotonic()
        end = float("inf") if seconds is None else t0 + float(seconds)
        lost_at: float | None = None  # monotonic time of the current outage
        stopping = False
        index = 0
        worker = _Worker(self.cfg, self.python, self.env, index)
        s.workers = 1
        last_event = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now >= end and not stopping:
                    stopping = True
                    worker.interrupt()
                    end = now + 15.0  # time for a clean "done"
                elif stopping and now >= end:
                    worker.kill()
                    self._retire(worker.last)
                    break
                try:
                    ev = worker.events.get(timeout=min(0.1, max(0.01, end - now)))
                except queue.Empty:
                    ev = None
                if ev is None:
                    if (worker.opened_at is not None and not stopping
                            and time.monotonic() - last_event > self.watchdog_s):
                        ev = {"event": "lost", "reason": f"no word from the audio worker for {self.watchdog_s:g} s "
                                                         "(stream stuck)", "stuck": True}
                    else:
                        continue
                last_event = time.monotonic()
                kind = ev.get("event")
                if kind == "open":
                    worker.opened_at = time.monotonic()
                    s.latency_ms = float(ev.get("latency_ms", 0.0))
                    s.io_latency_ms = tuple(ev.get("io_latency_ms", (0.0, 0.0)))  # type: ignore[assignment]
                    if lost_at is None:
                        if self.on_open:
                            self.on_open(ev)
                    else:
                        down = worker.opened_at - lost_at
                        s.downtime_s += down
                        s.reopens += 1
                        lost_at = None
                        self._note(f"stream: audio reopened after {down:.1f} s (reopen {s.reopens}); counters carry on")
                elif kind == "status":
                    worker.last = ev
                    self._combine(ev)
                    if self.on_status:
                        self.on_status(s)
                elif kind == "done":
                    worker.last = ev
                    worker.kill()
                    self._retire(ev)
                    break
                elif kind in ("lost", "exit", "error"):
                    if kind == "lost" and not ev.get("stuck"):
                        worker.last = {k: ev[k] for k in ("summary", "engine", "peak", "nonfinite_output")}
                    if stopping and kind == "exit":
                        worker.kill()
                        self._retire(worker.last)
                        break
                    if worker.opened_at is None and lost_at is None:
                        # Never opened: the device or bundle is wrong; nothing to recover.
                        msg = ev.get("message") or worker.stderr_tail() or "the audio worker exited"
                        worker.kill()
                        raise AudioIOError(msg)
                    if kind == "lost" and ev.get("callback_failed"):
                        worker.kill()
                        self._retire(worker.last)
                        raise AudioIOError(ev.get("reason", "the audio callback failed"))
                    if worker.opened_at is not None:  # a running stream died
                        why = ev.get("reason") or (f"the audio worker exited ({worker.stderr_tail() or 'no message'})"
                                                   if kind == "exit" else ev.get("message", "unknown"))
                        worker.kill()
                        self._retire(worker.last)
                        s.device_losses += 1
                        lost_at = time.monotonic()
                        self._note(f"stream: audio device lost after {lost_at - t0:.1f} s ({why}); reopening "
                                   f"(up to {self.reopen_timeout:g} s)")
                    else:  # a reopen attempt that found no device yet
                        worker.kill()
                    assert lost_at is not None
                    if self.reopen_timeout <= 0 or time.monotonic() - lost_at > self.reopen_timeout:
                        raise AudioIOError(f"the audio device was lost and did not come back within "
                                           f"{self.reopen_timeout:g} s ({ev.get('message') or ev.get('reason') or 'no device'})")
                    time.sleep(self.retry_interval if kind != "lost" else 0.0)
                    if time.monotonic() >= end:
                        break
                    index += 1
                    worker = _Worker(self.cfg, self.python, self.env, index)
                    s.workers += 1
                    last_event = time.monotonic()
        except KeyboardInterrupt:
            worker.interrupt()
            try:
                deadline = time.monotonic() + 15.0
                while time.monotonic() < deadline:
                    ev = worker.events.get(timeout=0.5)
                    if ev.get("event") in ("done", "exit"):
                        if ev.get("event") == "done":
                            worker.last = ev
                        break
            except (queue.Empty, KeyboardInterrupt):
                pass
            worker.kill()
            self._retire(worker.last)
        except BaseException:
            worker.kill()
            raise
        s.seconds = time.monotonic() - t0
        if lost_at is not None:
            s.downtime_s += time.monotonic() - lost_at
        return s


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--worker":
        print("usage: python -m runtime.live --worker JSON (started by the stream command)", file=sys.stderr)
        return 2
    return worker_main(argv[1])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
