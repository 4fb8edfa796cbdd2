"""Measurements on a running bundle: per-block compute time, algorithmic latency by impulse, and
round-trip latency through a real audio server (JACK, dummy driver).

* :func:`time_engine`: every model block through :class:`runtime.engine.Engine`, timed one block
  at a time as an audio callback would drive it: p50/p99/max µs, real-time factor, and load as a
  fraction of the block period.
* :func:`impulse_latency`: samples from an input impulse to the first output sample it can affect,
  plus the block that must fill first (DESIGN.md, "Causality is a contract").
* :func:`loopback_jack`: starts its own JACK server (``jackd -d dummy`` at the board's rate and
  period, a unique name), runs the runtime's duplex stream (:mod:`runtime.audio_io`) in a child
  process with the stream's output connected to its own input, plays a known probe through the
  engine for a set time, and measures by cross-correlation the delay between what the engine
  emitted and what came back, checks that every sample came back unchanged, counts xruns, and
  stops the server. Round trip = that I/O delay (JACK's buffering) + the engine's algorithmic
  latency (its stream delay, one block, plus the model's own delay, measured by impulse).

numpy only (matplotlib for :func:`plot_timings`, optional); ``jackd``/``jack_lsp``/
``jack_connect`` from apt ``jackd2`` for the loopback.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from runtime.atomic import atomic_write


class LatencyProbeError(RuntimeError):
    """The impulse probe could not see the impulse at the output."""


class BenchError(RuntimeError):
    """A benchmark could not run (one-line message)."""


# ---------------------------------------------------------------------------------- basics
def stream(backend: Any, x: np.ndarray) -> np.ndarray:
    """Run a backend over ``x`` block by block from a fresh state (a trailing partial block is dropped)."""
    backend.reset()
    b = backend.block
    n = len(x) // b * b
    if not n:
        return np.zeros(0, np.float32)
    return np.concatenate([backend.process(x[i:i + b]) for i in range(0, n, b)])


def impulse_latency(backend: Any, *, warm_blocks: int = 4, amplitude: float = 0.5) -> int:
    """Algorithmic latency by impulse, in samples.

    For an impulse at each position ``n`` of a block (after a few warm-up blocks), find the
    first output sample that differs from the impulse-free run; the latency is the worst case
    over positions of ``first - n + block``: the block that must fill before it is processed,
    plus any delay the model adds (DESIGN.md, "Causality is a contract").
    """
    b = backend.block
    base = np.zeros((warm_blocks + 4) * b, np.float32)
    ref = stream(backend, base)
    worst: int | None = None
    for offset in range(b):
        n = warm_blocks * b + offset
        sig = base.copy()
        sig[n] = amplitude
        changed = np.flatnonzero(stream(backend, sig) != ref)
        if changed.size == 0:
            raise LatencyProbeError(f"an impulse at sample {n} changed no output sample; cannot measure latency")
        delay = int(changed[0]) - n + b
        worst = delay if worst is None else max(worst, delay)
    return int(worst)


def bench_signal(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like load: noise bursts with a syllabic envelope, peaks near 0.25."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    x = rng.standard_normal(n) * 0.06 * env
    return x.astype(np.float32)


def board_audio(bundle: Any, board: Any = None) -> dict[str, Any]:
    """Rate, block and compute budget of ``board`` (default: the bundle's, from boards/*.toml if present)."""
    m = bundle.manifest
    info = {"board": m.target, "sample_rate": m.sample_rate, "block": m.block, "compute_fraction": None,
            "latency_budget_ms": None}
    try:
        from runtime.boards import resolve_target

        board = board or resolve_target(m.target)
        info.update(board=board.name, arch=board.cpu.arch, core=board.cpu.core, compute_fraction=board.budget.compute_fraction, latency_budget_ms=board.budget.latency_ms,
                    board_block=board.audio.block, board_sample_rate=board.audio.sample_rate)
    except Exception:  # a board without the boards/ folder: the manifest is enough
        pass
    return info


# ------------------------------------------------------------------------------- timing
@contextmanager
def realtime_priority(priority: int = 40) -> Iterator[bool]:
    """Run the calling thread under SCHED_FIFO where allowed (yields whether it is); restored after.

    An audio thread runs real-time on a device (JACK, PipeWire and ALSA clients do), so its
    compute time is not stretched by ordinary processes; timing under the same policy measures
    the model, not the neighbours. Without the privilege the timing runs as it is.
    """
    try:
        old = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        yield False
        return
    try:
        yield True
    finally:
        try:
            os.sched_setscheduler(0, old[0], old[1])
        except OSError:
            pass


def time_engine(engine: Any, x: np.ndarray | None = None, *, seconds: float = 10.0, warmup_blocks: int = 200,
                realtime: bool = True, burst: int = 64, rest_s: float = 0.002) -> dict[str, Any]:
    """Per-block compute time of ``engine`` over ``x`` (default: ``seconds`` of :func:`bench_signal`).

    The signal is fed one model block per call, as an audio callback at the board's block size
    does. ``compute`` is the model step (quantise, backend, dequantise); ``engine`` adds the
    re-blocking FIFO, safety checks and limiter (the whole per-callback cost). The first
    ``warmup_blocks`` are run but not counted (caches, lazy allocation). With ``realtime`` the
    loop runs under SCHED_FIFO (see :func:`realtime_priority`) and, after every ``burst`` blocks,
    rests (untimed) ``rest_s``, or as long as the burst took when that was over 20 ms (a slow
    backend such as torch), so it never holds a CPU for long nor meets real-time throttling.
    """
    b = engine.block
    if x is None:
        x = bench_signal(seconds, engine.sample_rate)
    x = np.asarray(x, np.float32)
    n_blocks = len(x) // b
    if n_blocks < 10:
        raise BenchError(f"need at least 10 blocks of signal, got {n_blocks}")
    engine.reset()
    for k in range(min(warmup_blocks, n_blocks)):
        engine.process(x[k * b:(k + 1) * b])
    engine.reset()
    if len(engine._times) < n_blocks:
        engine._times = np.zeros(n_blocks, np.float64)
        engine._n_times = 0
    total = np.empty(n_blocks, np.float64)
    pc = time.perf_counter
    proc = engine.process
    sleep = time.sleep
    with realtime_priority() if realtime else nullcontext(False) as rt:
        t_burst = pc()
        for k in range(n_blocks):
            t0 = pc()
            proc(x[k * b:(k + 1) * b])
            total[k] = pc() - t0
            if rt and k % burst == burst - 1:
                # At most half the CPU while real-time: a slow backend (torch) rests as long as it ran.
                took = pc() - t_burst
                sleep(rest_s if took < 0.02 else took)
                t_burst = pc()
    compute = engine.block_times_us()[-n_blocks:]
    total_us = total * 1e6
    period_us = 1e6 * b / engine.sample_rate
    p50, p99 = np.percentile(compute, [50, 99])
    e50, e99 = np.percentile(total_us, [50, 99])
    st = engine.stats()
    return {
        "blocks": int(n_blocks),
        "p50_us": float(p50), "p99_us": float(p99), "max_us": float(compute.max()), "mean_us": float(compute.mean()),
        "rtf": float(compute.sum() / (n_blocks * period_us)),
        "load_p50": float(p50 / period_us), "load_p99": float(p99 / period_us),
        "engine_p50_us": float(e50), "engine_p99_us": float(e99), "engine_max_us": float(total_us.max()),
        "engine_rtf": float(total_us.sum() / (n_blocks * period_us)), "engine_load_p99": float(e99 / period_us),
        "late_blocks": int(st["late_blocks"]),
        "period_us": float(period_us),
        "scheduling": "SCHED_FIFO" if rt else "normal",
        "samples_us": compute.astype(np.float32),  # for the plot; dropped from JSON
    }


def plot_timings(results: dict[str, dict[str, Any]], period_us: float, path: str | os.PathLike[str], *,
                 budget_fraction: float | None = None, target_fraction: float | None = 0.25, title: str = "",
                 loopback: dict[str, Any] | None = None, measured_on: str = "") -> None:
    """Histogram of per-block compute time per backend against the deadline (one block period).

    ``loopback`` (the report's): its round trip and xruns by source go into the figure too;
    ``measured_on``: where the times were taken, printed under the axes (the budget line is an
    estimate for the board unless that is the board).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise BenchError(f"--plot needs matplotlib ({e}); pip install matplotlib") from None
    names = [n for n, r in results.items() if "samples_us" in r]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    hi = period_us * 1.1
    bins = np.linspace(0, hi, 221)
    for n in names:
        s = np.asarray(results[n]["samples_us"], np.float64)
        r = results[n]
        ax.hist(np.clip(s, 0, hi), bins=bins, histtype="step", linewidth=1.4,
                label=f"{n}: p50 {r['p50_us']:.0f} µs, p99 {r['p99_us']:.0f} µs ({100 * r['load_p99']:.1f} %)")
    ax.axvline(period_us, color="k", linewidth=2, label=f"deadline: block period {period_us:.0f} µs")
    if budget_fraction:
        ax.axvline(period_us * budget_fraction, color="tab:red", linestyle="--",
                   label=f"board compute budget {100 * budget_fraction:.0f} %")
    if target_fraction:
        ax.axvline(period_us * target_fraction, color="tab:gray", linestyle=":",
                   label=f"target p99 ≤ {100 * target_fraction:.0f} %")
    ax.set_yscale("log")
    ax.set_xlabel("compute time per block (µs); the last bin holds everything beyond the deadline")
    ax.set_ylabel("blocks")
    ax.set_title(title or "per-block compute time")
    ax.legend(fontsize=8, loc="upper right")
    notes = [f"measured on {measured_on}" + ("; the board budget line is an estimate" if budget_fraction else "")] \
        if measured_on else []
    if loopback:
        xs = loopback.get("xruns_by_source") or xruns_by_source(loopback)
        notes.append(f"loopback ({loopback.get('backend')}, {loopback.get('seconds', 0):.1f} s): round trip "
                     f"{loopback.get('round_trip_ms', float('nan')):.2f} ms = algorithmic "
                     f"{loopback.get('algorithmic_ms', float('nan')):.2f} + buffering {loopback.get('buffering_ms', float('nan')):.2f} ms; "
                     "xruns: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in xs.items()))
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, va="bottom", ha="left", wrap=True)
        fig.tight_layout(rect=(0, 0.04 * len(notes) + 0.02, 1, 1))
    else:
        fig.tight_layout()
    p = Path(path)
    try:
        with atomic_write(p) as fh:
            fig.savefig(fh, format="png", dpi=110)
    except OSError as e:
        raise BenchError(f"{p}: cannot write the plot ({e.strerror or e})") from None
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- JACK server
class JackServer:
    """A private JACK server on the dummy driver: ``jackd -n NAME -d dummy -r RATE -p PERIOD``.

    The name is unique, so parallel runs never meet; clients reach it through
    ``JACK_DEFAULT_SERVER`` (see :attr:`env`). Real-time scheduling is requested (``-R``) and
    jackd falls back to normal scheduling where it is not allowed. The server's messages are
    read with timestamps, so xruns can be counted for a time window. :meth:`stop` (also on
    ``with`` exit, and at interpreter exit) terminates the process group it started, SIGKILL
    after a timeout, and removes the server's files under /dev/shm.

    A server that died from a signal (killed to simulate a lost device, or crashed) never
    deregistered from JACK's server registry, which has 8 slots per machine and frees a dead
    server's slot only for a server of the same name: :meth:`stop` then starts and cleanly stops
    one such server (:meth:`release_registry_slot`), or after eight kills no JACK server could
    start on the machine any more. ``stop(reclaim=False)`` leaves that to the caller (a test that
    restarts the server under its name, which reclaims the slot too, and must not have a stand-in
    server appear while the "device" is meant to be gone).
    """

    def __init__(self, sample_rate: int, period: int, *, name: str | None = None, realtime: bool = True,
                 start_timeout: float = 15.0, jackd: str = "jackd") -> None:
        self.sample_rate = int(sample_rate)
        self.period = int(period)
        self.name = name or f"hx-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.realtime = realtime
        self.start_timeout = start_timeout
        self.jackd = jackd
        self.proc: subprocess.Popen | None = None
        self.lines: deque[tuple[float, str]] = deque(maxlen=20000)
        self._readers: list[threading.Thread] = []

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_AUDIO_RESERVATION="1",
                    JACK_NO_START_SERVER="1")

    @property
    def buffering_samples(self) -> int:
        """What the dummy driver buffers on a duplex round trip: one capture + one playback period."""
        return 2 * self.period

    def _tool(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
        exe = shutil.which(args[0])
        if exe is None:
            raise BenchError(f"{args[0]} not found (apt install jackd2)")
        try:
            return subprocess.run([exe, *args[1:]], env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{args[0]} did not answer within {timeout:g} s") from None

    def start(self) -> "JackServer":
        exe = shutil.which(self.jackd)
        if exe is None:
            raise BenchError(f"{self.jackd} not found: the loopback benchmark needs a JACK server (apt install jackd2)")
        # Real-time at priority 70 (clients get 65): above anything else this benchmark runs (its
        # stall monitor sits at 10), as an audio server on a device is.
        sched = ["-R", "-P", "70"] if self.realtime else ["--no-realtime"]
        cmd = [exe, "-n", self.name, *sched, "-d", "dummy", "-r", str(self.sample_rate), "-p", str(self.period)]
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        _LIVE_SERVERS.add(self)
        for pipe in (self.proc.stdout, self.proc.stderr):
            t = threading.Thread(target=self._read, args=(pipe,), daemon=True)
            t.start()
            self._readers.append(t)
        try:
            r = self._tool("jack_wait", "-w", "-t", str(max(1, int(self.start_timeout))), timeout=self.start_timeout + 5)
            if r.returncode != 0 or "available" not in r.stdout:
                raise BenchError(f"jackd did not come up: {self.log_tail()}")
            if self.proc.poll() is not None:
                raise BenchError(f"jackd exited with status {self.proc.returncode}: {self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append((time.time(), line.rstrip()))

    def log_tail(self, n: int = 3) -> str:
        useful = [ln for _, ln in self.lines if ln and not ln.startswith(("Copyright", "jackdmp", "under certain", "This is free", "no message"))]
        return " / ".join(useful[-n:]) or "no output"

    def xruns(self, t0: float, t1: float) -> dict[str, int]:
        """Server-side xrun messages logged between two ``time.time()`` stamps, by kind."""
        sel = [ln for t, ln in list(self.lines) if t0 <= t <= t1]
        driver = sum("JackTimedDriver::Process XRun" in ln for ln in sel)
        client = sum("JackEngine::XRun" in ln for ln in sel)
        return {"server_xruns": driver + client, "server_driver_xruns": driver, "server_client_xruns": client}

    def ports(self) -> list[str]:
        r = self._tool("jack_lsp")
        return [p.strip() for p in r.stdout.splitlines() if p.strip()]

    def connect(self, src: str, dst: str) -> None:
        r = self._tool("jack_connect", src, dst)
        if r.returncode != 0:
            raise BenchError(f"jack_connect {src} {dst} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")

    def disconnect(self, src: str, dst: str) -> None:
        self._tool("jack_disconnect", src, dst)

    def stop(self, timeout: float = 5.0, *, reclaim: bool = True) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        _LIVE_SERVERS.discard(self)
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: the group is jackd's alone
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout)
        for t in self._readers:
            t.join(1.0)
        self._died_by_signal = p.returncode is not None and p.returncode < 0
        if self._died_by_signal and reclaim and not getattr(self, "_reclaiming", False):
            self.release_registry_slot()
        # What a killed server leaves behind: its directory and semaphores, all named after it.
        shm = Path("/dev/shm")
        if (shm / f"jack-{os.getuid()}" / self.name).is_dir():
            shutil.rmtree(shm / f"jack-{os.getuid()}" / self.name, ignore_errors=True)
        for sem in [*shm.glob(f"jack_sem.{os.getuid()}_{self.name}_*"), *shm.glob(f"jack_{self.name}_*")]:
            try:
                sem.unlink()
            except OSError:
                pass

    def release_registry_slot(self) -> None:
        """Free the registry slot of this (dead) server's name: start and cleanly stop a namesake."""
        ghost = JackServer(self.sample_rate, self.period, name=self.name, realtime=False, jackd=self.jackd,
                           start_timeout=10.0)
        ghost._reclaiming = True
        try:
            ghost.start()
        except BenchError:
            return  # a namesake is running again (a restart beat us to it): it owns the slot now
        ghost.stop()

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_LIVE_SERVERS: set[JackServer] = set()


def _stop_all() -> None:  # interpreter exit: never leave a server behind
    for s in list(_LIVE_SERVERS):
        s.stop(timeout=2.0)


atexit.register(_stop_all)


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


# ----------------------------------------------------------------------------- loopback
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
    from runtime.audio_io import AudioIOError, DuplexRunner, import_sounddevice
    from runtime.backends import open_backend
    from runtime.bundle import load_bundle
    from runtime.engine import Engine

    sd = import_sounddevice()
    jack = [a for a in sd.query_hostapis() if a["name"].lower().startswith("jack")]
    if not jack or jack[0]["default_input_device"] < 0:
        raise AudioIOError("PortAudio sees no JACK server (is libportaudio2 built with JACK, and the server up?)")
    dev = int(jack[0]["default_input_device"])
    from runtime.signing import policy_from_sources

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
    from runtime.bundle import load_bundle

    b = load_bundle(bundle, trust=trust)
    rate = int(sample_rate or b.manifest.sample_rate)
    per = int(period or b.manifest.block)
    cfg = {"bundle": str(Path(bundle).resolve()), "backend": backend, "seconds": float(seconds), "settle": float(settle),
           "amplitude": 0.2, "threads": int(threads), "sample_rate": rate, "period": per,
           "trusted_keys": trust.key_paths() if trust is not None else [],
           "require_signature": bool(trust.require) if trust is not None else False}
    timeout = float(timeout if timeout is not None else seconds + settle + 90.0)
    root = str(Path(__file__).resolve().parents[1])
    with JackServer(rate, per, realtime=realtime) as server:
        env = server.env
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [python or sys.executable, "-m", "runtime.bench", "--loopback-worker", json.dumps(cfg)]
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


# ----------------------------------------------------------------------------- the report
def run_bench(bundle_path: Any, backends: Sequence[str | Any] = ("litert",), *,
              seconds: float = 10.0, threads: int = 1, x: np.ndarray | None = None,
              loopback: str | None = None, loopback_seconds: float = 10.0, loopback_backend: str | None = None,
              log: Any = None, trust: Any = None, board: Any = None, output_limit: float | None = None) -> dict[str, Any]:
    """The whole benchmark as a JSON-ready dict (per-block samples under ``_samples``).

    Times are measured on THIS host (``measured_on``: CPU model from /proc/cpuinfo); the board's
    compute budget is compared with them only as an estimate (``board_budget_estimate``), never
    as a verdict about the board, unless the bench ran on the board's own CPU kind it is not one.
    ``board``: the board whose budget to compare with (default the bundle's target);
    ``output_limit``: the engine's limit (default the bundle's).

    ``bundle_path``: a bundle directory (loaded under ``trust``) or an already verified Bundle.
    ``backends`` are names for :func:`runtime.backends.open_backend` or ``(name, Backend)``
    pairs (the toolchain passes its torch reference that way).
    """
    from runtime.bundle import Bundle, load_bundle
    from runtime.engine import Engine

    say = log or (lambda s: None)
    bundle = bundle_path if isinstance(bundle_path, Bundle) else load_bundle(bundle_path, trust=trust)
    m = bundle.manifest
    board_info = board_audio(bundle, board)
    host = _host_info()
    where = f"{host.get('cpu', 'unknown CPU')} ({host['machine']}, {host['cpus']} CPUs)"
    report: dict[str, Any] = {
        "bundle": str(bundle.path), "model": m.model, "target": m.target, "block": m.block,
        "sample_rate": m.sample_rate, "block_period_us": 1e6 * m.block / m.sample_rate, "threads": threads,
        "board": board_info, "host": host, "backends": {},
        "measured_on": f"this host: {where}; every time in this report was measured here, not on board "
                       f"{board_info['board']}",
        "algorithmic_latency_samples_manifest": m.algorithmic_latency_samples,
    }
    samples: dict[str, np.ndarray] = {}
    latencies: dict[str, int] = {}
    for spec in backends:
        name, be = (spec, spec) if isinstance(spec, str) else spec
        say(f"timing {name} ...")
        engine = Engine(bundle, be, num_threads=threads, output_limit=output_limit)
        r = time_engine(engine, x, seconds=seconds)
        samples[name] = r.pop("samples_us")
        try:
            lat = impulse_latency(engine.backend)
        except LatencyProbeError as e:
            raise BenchError(f"{name}: {e}") from None
        r["algorithmic_latency_samples"] = lat
        latencies[name] = lat
        if board_info.get("compute_fraction"):
            r["board_budget_estimate"] = budget_estimate(r["load_p99"], board_info, host)
        report["backends"][name] = r
    first = next(iter(latencies.values()), m.algorithmic_latency_samples)
    report["algorithmic_latency_samples"] = first
    report["algorithmic_latency_ms"] = 1000.0 * first / m.sample_rate
    if loopback:
        if loopback != "jack":
            raise BenchError(f"unknown loopback {loopback!r}; expected: jack")
        names = [n for n in report["backends"] if isinstance(n, str)]
        lb_backend = loopback_backend or next((n for n in names if n in ("ckernel", "litert", "litert-fp32", "onnx")), "litert")
        say(f"loopback through JACK (dummy driver, {m.sample_rate} Hz, period {m.block}) with {lb_backend}, {loopback_seconds:g} s ...")
        lb = loopback_jack(bundle.path, lb_backend, seconds=loopback_seconds, threads=threads, trust=trust)
        comp = report["backends"].get(lb_backend, {}).get("p99_us")
        lb["compute_p99_ms"] = None if comp is None else comp / 1000.0
        lb["decomposition_ms"] = {
            "algorithmic": lb["algorithmic_ms"],
            "buffering": lb["buffering_ms"],
            "compute": 0.0,  # done inside the period that buffering already counts (p99 < period)
        }
        report["loopback"] = {k: v for k, v in lb.items() if k not in ("t_start", "t_end")}
    report["_samples"] = samples
    return report


def budget_estimate(load_p99: float, board: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """The board's compute budget against a load measured on ``host``: an estimate, not a verdict.

    A host of another architecture than the board's says nothing certain about the board (an x86
    core is several times an A72); even the same architecture differs in clock, cache and memory.
    """
    same_arch = host.get("machine") == board.get("arch")
    return {
        "kind": "estimate",
        "load_p99_on_this_host": float(load_p99),
        "board_compute_fraction": float(board["compute_fraction"]),
        "fits_on_this_host": bool(load_p99 <= board["compute_fraction"]),
        "host_arch_matches_board": bool(same_arch),
        "note": (f"measured on {host.get('cpu', host.get('machine'))} ({host.get('machine')}), not on "
                 f"{board.get('board')} ({board.get('core', '?')}, {board.get('arch', '?')}): "
                 + ("same architecture, other clock and memory" if same_arch else "another architecture")
                 + "; run the bench on the board for its verdict"),
    }


def _host_info() -> dict[str, Any]:
    """Machine, CPU model (/proc/cpuinfo: x86 ``model name``, ARM ``Model``/``Hardware``/``CPU part``), CPUs."""
    import platform

    info = {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() not in fields:
                fields[key.strip().lower()] = value.strip()
        for key in ("model name", "model", "hardware", "cpu part"):
            if fields.get(key):
                info["cpu"] = fields[key] if key != "cpu part" else f"ARM CPU part {fields[key]}"
                break
    except OSError:
        pass
    info.setdefault("cpu", platform.processor() or platform.machine())
    return info


def write_json(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """The report without the raw per-block samples, written atomically."""
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    p = Path(path)
    try:
        with atomic_write(p, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(clean, indent=2, default=_json_default) + "\n")
    except OSError as e:
        raise BenchError(f"{p}: cannot write ({e.strerror or e})") from None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _worker_main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] != "--loopback-worker":
        print("usage: python -m runtime.bench --loopback-worker JSON", file=sys.stderr)
        return 2
    try:
        res = _loopback_worker(json.loads(argv[1]))
    except Exception as e:  # reported to the parent as one line
        res = {"error": f"{type(e).__name__}: {' '.join(str(e).split())}"}
    sys.stdout.write(json.dumps(res, default=_json_default) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
