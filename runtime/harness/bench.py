"""Measurements on a running bundle: per-block compute time, algorithmic latency by impulse, and
(through :mod:`runtime.harness.loopback`) round-trip latency through a real audio server.

* :func:`time_engine`: every model block through :class:`runtime.engine.Engine`, timed one block
  at a time as an audio callback would drive it: p50/p99/max µs, real-time factor, and load as a
  fraction of the block period.
* :func:`runtime.harness.measure.impulse_latency`: samples from an input impulse to the first
  output sample it can affect, plus the block that must fill first (DESIGN.md, "Causality is a
  contract").
* :func:`run_bench`: both per backend, plus the JACK loopback on request, as one JSON-ready report
  (:func:`write_json`, :func:`plot_timings`); what ``python -m runtime bench`` prints.

numpy only (matplotlib for :func:`plot_timings`, optional).
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from runtime.atomic import atomic_write
from runtime.boards import resolve_target
from runtime.bundle import Bundle, load_bundle
from runtime.engine import Engine
from runtime.harness.loopback import loopback_jack, xruns_by_source
from runtime.harness.measure import BenchError, LatencyProbeError, impulse_latency, json_default


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
    try:  # lazy: matplotlib is optional on a board (only --plot needs it) and slow to import
        # lazy: matplotlib is needed only when a plot is drawn
        import matplotlib

        matplotlib.use("Agg")
        # lazy: matplotlib is needed only when a plot is drawn
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
            fh.write(json.dumps(clean, indent=2, default=json_default) + "\n")
    except OSError as e:
        raise BenchError(f"{p}: cannot write ({e.strerror or e})") from None
