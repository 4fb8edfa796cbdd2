"""Soak: stream a long, deterministic signal through one backend and check nothing drifts.

A hearing aid runs for days. :func:`soak` streams ``seconds`` of seeded audio (speech-like noise,
silences, loud bursts that drive the limiter, NaN/inf bursts) through
:meth:`runtime.engine.Engine.stream` with varying host buffer sizes, and checks memory growth
(``VmRSS``, :data:`RSS_GROWTH_LIMIT_KB`), byte equality with a fresh offline engine (hashed in
windows, so a mismatch is located), the counters, and that no sample exceeds the limit or is NaN.
The engines run at ``limit_fraction`` of the limit so the bursts reach the limiter.
``python -m runtime.harness.soak BUNDLE --backend B --seconds S --json F`` runs one backend in its
own process; ``benchmarks/soak.py`` runs every backend for an hour and plots the result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.atomic import atomic_write
from runtime.backends import open_backend
from runtime.backends.base import BackendError
from runtime.bundle import Bundle, BundleError, load_bundle
from runtime.engine import Engine

__all__ = ["RSS_GROWTH_LIMIT_KB", "SoakError", "WindowHasher", "rss_kb", "soak", "soak_signal"]

#: RSS growth allowed over a soak, after warm-up: 1 MB (per hour of audio, the issue's target).
RSS_GROWTH_LIMIT_KB = 1024
#: Host buffer sizes the live pass cycles through (a sound card may change its period; JACK
#: and ALSA use powers of two, PulseAudio/PipeWire anything; 441 is 10 ms at 44.1 kHz).
HOST_BLOCKS = (16, 32, 48, 64, 128, 160, 256, 441, 512, 1024, 2048)
#: Piece size of the offline reference: the size :meth:`Engine.run` feeds.
OFFLINE_PIECE = 4096


class SoakError(RuntimeError):
    """A soak could not run (one-line message)."""


def rss_kb() -> int:
    """Resident set size of this process in kB (``VmRSS`` from /proc, else ru_maxrss)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # peak, not current: an upper bound


@dataclass(frozen=True)
class SegmentEvents:
    """What a segment of the soak signal contains, for the counter checks."""

    nonfinite: int  # samples set to NaN / +inf / -inf
    loud: int  # samples of loud bursts (|x| up to 1.0, far above the output limit after gain)


def soak_signal(index: int, n: int, sample_rate: int, seed: int = 0) -> tuple[np.ndarray, SegmentEvents]:
    """Segment ``index`` of the soak signal: ``n`` float32 samples and what it contains.

    Deterministic in ``(seed, index)``: the live and the offline pass regenerate the same
    segments instead of keeping an hour of audio in memory.
    """
    rng = np.random.default_rng([seed, index])
    t = (np.arange(n) + index * n) / sample_rate
    # Syllabic envelope (4 Hz) over a slower phrase envelope (0.3 Hz): speech-like level changes.
    env = (0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2) * (0.3 + 0.7 * np.sin(2 * np.pi * 0.3 * t) ** 2)
    level = float(rng.uniform(0.005, 0.04))  # RMS ~ 57..75 dB SPL: conversational speech
    x = (rng.standard_normal(n) * level * env).astype(np.float32)
    # A pause: silence happens (the model and limiter must come back from it cleanly).
    if rng.random() < 0.3:
        a = int(rng.integers(0, max(1, n - sample_rate)))
        x[a:a + int(rng.integers(sample_rate // 10, sample_rate))] = 0.0
    # Loud bursts: a door slam or a shout, up to full scale, to drive the limiter.
    loud = 0
    for _ in range(int(rng.integers(0, 3))):
        a = int(rng.integers(0, n))
        m = int(rng.integers(sample_rate // 50, sample_rate // 5))
        seg = x[a:a + m]
        seg[:] = rng.uniform(-1.0, 1.0, len(seg)).astype(np.float32)
        loud += len(seg)
    # Non-finite input: a broken ADC word or a driver bug; the engine must replace and count it.
    bad = 0
    if rng.random() < 0.5:
        a = int(rng.integers(0, n))
        m = int(rng.integers(1, 64))
        vals = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), size=len(x[a:a + m]))
        x[a:a + m] = vals
        bad += len(vals)
    return x, SegmentEvents(nonfinite=bad, loud=loud)


class WindowHasher:
    """SHA-256 of a float32 stream in consecutive windows of ``window`` samples.

    ``skip`` leading samples are dropped and at most ``limit`` samples (after the skip) are
    hashed, so two streams that differ by a fixed delay can be compared window by window.
    """

    def __init__(self, window: int, *, skip: int = 0, limit: int | None = None) -> None:
        self.window = int(window)
        self.skip = int(skip)
        self.limit = limit
        self.digests: list[str] = []
        self._h = hashlib.sha256()
        self._in_window = 0
        self._hashed = 0

    def update(self, y: np.ndarray) -> None:
        """Hash the next chunk of the stream (any length)."""
        y = np.ascontiguousarray(y, np.float32)
        if self.skip:
            k = min(self.skip, len(y))
            y = y[k:]
            self.skip -= k
        if self.limit is not None:
            y = y[: max(0, self.limit - self._hashed)]
        while len(y):
            k = min(len(y), self.window - self._in_window)
            self._h.update(y[:k].tobytes())
            self._in_window += k
            self._hashed += k
            y = y[k:]
            if self._in_window == self.window:
                self.digests.append(self._h.hexdigest())
                self._h = hashlib.sha256()
                self._in_window = 0

    def finish(self) -> list[str]:
        """Close the last partial window and return every window's digest."""
        if self._in_window:
            self.digests.append(self._h.hexdigest())
            self._h = hashlib.sha256()
            self._in_window = 0
        return self.digests

    @property
    def samples(self) -> int:
        """Samples hashed so far (after the skip)."""
        return self._hashed


_COUNTERS = ("blocks", "samples_in", "samples_out", "nonfinite_inputs", "nonfinite_outputs", "limiter_samples",
             "min_limiter_gain", "xruns", "underruns")


@dataclass
class SoakResult:
    """A soak's figures (JSON-ready through :meth:`as_dict`)."""

    backend: str
    audio_seconds: float
    sample_rate: int
    block: int
    stream_delay: int
    output_limit: float
    live_wall_s: float = 0.0
    offline_wall_s: float = 0.0
    rss_kb: list[tuple[float, int]] = field(default_factory=list)  # (audio seconds, VmRSS kB)
    warmup_s: float = 0.0
    rss_growth_kb: int = 0
    rss_slope_kb_per_hour: float = 0.0
    rss_max_above_baseline_kb: int = 0
    windows: int = 0
    identical_to_offline: bool = False
    first_mismatch_s: float | None = None
    peak_output: float = 0.0
    nonfinite_output_samples: int = 0
    injected_nonfinite: int = 0
    loud_samples: int = 0
    live_counters: dict[str, Any] = field(default_factory=dict)
    offline_counters: dict[str, Any] = field(default_factory=dict)
    counter_problems: list[str] = field(default_factory=list)
    block_p50_us: float = 0.0
    block_p99_us: float = 0.0
    block_max_us: float = 0.0
    host_blocks: list[int] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """Audio seconds per wall second of the live pass (x real time)."""
        return self.audio_seconds / self.live_wall_s if self.live_wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every target met: identical to offline, counters consistent, within the limit, RSS bound."""
        return (self.identical_to_offline and not self.counter_problems and self.peak_output <= self.output_limit
                and self.nonfinite_output_samples == 0 and self.rss_growth_kb <= self.rss_limit_kb)

    @property
    def rss_limit_kb(self) -> int:
        # 1 MB per hour of audio, and never less than 1 MB: a short soak gets the same absolute bound.
        return int(RSS_GROWTH_LIMIT_KB * max(1.0, self.audio_seconds / 3600.0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures, with the derived ones (speed, ok, limit, hours)."""
        d = {k: v for k, v in self.__dict__.items()}
        d["rss_kb"] = [list(p) for p in self.rss_kb]
        d.update(speed_x_realtime=self.speed, ok=self.ok, rss_limit_kb=self.rss_limit_kb,
                 audio_hours=self.audio_seconds / 3600.0)
        return d


def _rss_stats(samples: list[tuple[float, int]], warmup_s: float, k: int = 3) -> tuple[int, float, int]:
    """(growth, least-squares slope per hour, max above baseline) of the RSS after the warm-up, in kB.

    The allocator makes RSS swing by a few MB from one segment to the next (glibc's dynamic mmap
    threshold moves large temporary arrays between the heap and mmap), so single samples are not
    compared: baseline = the highest of the first ``k`` samples after the warm-up, growth = the
    highest of the last ``k`` minus that baseline. A leak shows in both ends' maxima alike.
    """
    after = [(t, r) for t, r in samples if t >= warmup_s]
    if len(after) < 2:
        return 0, 0.0, 0
    kk = max(1, min(k, len(after) // 2))
    base = max(r for _, r in after[:kk])
    end = max(r for _, r in after[-kk:])
    t = np.array([p[0] for p in after], np.float64)
    r = np.array([p[1] for p in after], np.float64)
    slope = float(np.polyfit(t, r, 1)[0] * 3600.0) if np.ptp(t) > 0 else 0.0
    return int(end - base), slope, int(r.max() - base)


def soak(bundle: Any, backend: str = "ckernel", *, seconds: float = 120.0, segment_seconds: float = 10.0,
         window_seconds: float = 60.0, warmup_seconds: float | None = None, seed: int = 0, threads: int = 1,
         limit_fraction: float = 0.6, log: Any = None) -> SoakResult:
    """Soak ``backend`` on ``bundle`` (a Bundle or a path) for ``seconds`` of audio; see the module doc.

    Runs the offline reference first, then the live pass (RSS is sampled during the live pass,
    after ``warmup_seconds`` of audio: default 10 % of the run, at least one segment).
    """
    say = log or (lambda s: None)
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    m = b.manifest
    rate, block = m.sample_rate, m.block
    seg_n = int(round(segment_seconds * rate)) // block * block
    if seg_n <= 0:
        raise SoakError(f"segment of {segment_seconds} s is shorter than one block")
    n_segs = max(1, int(np.ceil(seconds * rate / seg_n)))
    total = n_segs * seg_n
    window = int(round(window_seconds * rate))
    warm = float(warmup_seconds if warmup_seconds is not None else max(segment_seconds, 0.1 * total / rate))

    # --- offline reference: a fresh engine fed in OFFLINE_PIECE pieces, as Engine.run does.
    if not 0 < limit_fraction <= 1:
        raise SoakError(f"limit_fraction must be in (0, 1], got {limit_fraction}")
    # The reference's backend is opened first: its output grid bounds the limit the engines run at.
    ref_backend = open_backend(b, backend, num_threads=threads)
    limit = limit_fraction * min(m.output_limit, output_reach(ref_backend))
    ref = Engine(b, ref_backend, num_threads=threads, output_limit=limit)
    delay = ref.stream_delay
    res = SoakResult(backend=backend, audio_seconds=total / rate, sample_rate=rate, block=block, stream_delay=delay,
                     output_limit=ref.output_limit, warmup_s=warm)
    ref_hash = WindowHasher(window, limit=total - delay)
    say(f"{backend}: offline reference over {total / rate:.0f} s of audio ...")
    t0 = time.perf_counter()
    for k in range(n_segs):
        x, ev = soak_signal(k, seg_n, rate, seed)
        res.injected_nonfinite += ev.nonfinite
        res.loud_samples += ev.loud
        for i in range(0, seg_n, OFFLINE_PIECE):
            ref_hash.update(ref.process(x[i:i + OFFLINE_PIECE]))
    res.offline_wall_s = time.perf_counter() - t0
    res.offline_counters = {k: ref.stats()[k] for k in _COUNTERS}
    ref_digests = ref_hash.finish()
    del ref

    # --- live pass: Engine.stream with varying host buffers; output hashed after the stream delay.
    eng = Engine(b, backend, num_threads=threads, output_limit=limit)
    live_hash = WindowHasher(window, skip=delay, limit=total - delay)
    rng = np.random.default_rng([seed, 1 << 20])
    sizes_seen: set[int] = set()
    peak = 0.0
    bad_out = 0
    say(f"{backend}: live pass ...")
    res.rss_kb.append((0.0, rss_kb()))
    t0 = time.perf_counter()
    for k in range(n_segs):
        x, _ = soak_signal(k, seg_n, rate, seed)
        pos = 0
        while pos < seg_n:
            hb = int(HOST_BLOCKS[int(rng.integers(0, len(HOST_BLOCKS)))])
            sizes_seen.add(hb)
            y = eng.stream(x[pos:pos + hb])
            pos += hb
            a = float(np.max(np.abs(y), initial=0.0))
            if not a <= peak:  # also true for NaN, which is then counted below
                if np.isfinite(y).all():
                    peak = a
                else:
                    bad_out += int(np.count_nonzero(~np.isfinite(y)))
            live_hash.update(y)
        del x, y  # only the engine's own memory should remain when RSS is read
        res.rss_kb.append(((k + 1) * seg_n / rate, rss_kb()))
        if log and (k + 1) % max(1, n_segs // 10) == 0:
            say(f"{backend}: {100 * (k + 1) / n_segs:3.0f} % ({(k + 1) * seg_n / rate:.0f} s of audio, "
                f"RSS {res.rss_kb[-1][1] / 1024:.1f} MB, {(k + 1) * seg_n / rate / (time.perf_counter() - t0):.1f}x real time)")
    res.live_wall_s = time.perf_counter() - t0
    live_digests = live_hash.finish()

    st = eng.stats()
    res.live_counters = {k: st[k] for k in _COUNTERS}
    t_us = eng.block_times_us()
    if len(t_us):
        res.block_p50_us, res.block_p99_us = (float(v) for v in np.percentile(t_us, [50, 99]))
    res.block_max_us = float(st["max_block_us"])
    res.peak_output = peak
    res.nonfinite_output_samples = bad_out
    res.host_blocks = sorted(sizes_seen)
    res.windows = len(ref_digests)
    res.identical_to_offline = live_digests == ref_digests and live_hash.samples == ref_hash.samples == total - delay
    if not res.identical_to_offline:
        first = next((i for i, (a, c) in enumerate(zip(live_digests, ref_digests)) if a != c),
                     min(len(live_digests), len(ref_digests)))
        res.first_mismatch_s = first * window_seconds
    res.rss_growth_kb, res.rss_slope_kb_per_hour, res.rss_max_above_baseline_kb = _rss_stats(res.rss_kb, warm)
    res.counter_problems = check_counters(res.live_counters, res.offline_counters, total=total, block=block,
                                          injected_nonfinite=res.injected_nonfinite)
    return res


def output_reach(backend: Any) -> float:
    """The largest output magnitude ``backend`` can produce: the int8 output grid's far end, or
    infinity for a float graph. A graph calibrated on conversational speech may end well below the
    bundle's limit (the shipped default's int8 output spans -0.37..+0.23 full scale)."""
    q = getattr(backend, "output_quant", None)
    if not q or not q[0]:
        return float("inf")
    scale, zero = q
    return float(max(abs(-128 - zero), abs(127 - zero)) * scale)


def check_counters(live: dict[str, Any], offline: dict[str, Any], *, total: int, block: int,
                   injected_nonfinite: int) -> list[str]:
    """What is inconsistent between the live counters, the offline ones and what was fed (empty: all good)."""
    want = {
        "samples_in": total,
        "blocks": total // block,
        "samples_out": total // block * block,
        "nonfinite_inputs": injected_nonfinite,
        "nonfinite_outputs": 0,
        "xruns": 0,
        "underruns": 0,
    }
    problems = [f"live {k} = {live[k]}, expected {v}" for k, v in want.items() if live[k] != v]
    # Both engines saw the same samples in the same blocks: every counter must agree exactly.
    problems += [f"live {k} = {live[k]} but offline {k} = {offline[k]}" for k in _COUNTERS if live[k] != offline[k]]
    if live["limiter_samples"] <= 0:
        problems.append("the limiter never acted, but the signal has full-scale bursts")
    return problems


def format_result(r: SoakResult) -> str:
    """One paragraph per backend for the console."""
    return (f"{r.backend}: {r.audio_seconds / 3600:.2f} h of audio in {r.live_wall_s:.0f} s live "
            f"({r.speed:.1f}x real time; offline reference {r.offline_wall_s:.0f} s); RSS growth "
            f"{r.rss_growth_kb} kB after {r.warmup_s:.0f} s warm-up (slope {r.rss_slope_kb_per_hour:.0f} kB/h, "
            f"max {r.rss_max_above_baseline_kb} kB above baseline; limit {r.rss_limit_kb} kB); identical to offline: "
            f"{r.identical_to_offline} ({r.windows} windows); peak {r.peak_output:.4f} <= limit {r.output_limit:g}; "
            f"non-finite in {r.live_counters.get('nonfinite_inputs')} (injected {r.injected_nonfinite}), "
            f"limiter {r.live_counters.get('limiter_samples')} samples; block p50 {r.block_p50_us:.0f} µs, "
            f"p99 {r.block_p99_us:.0f} µs; counters: {'consistent' if not r.counter_problems else r.counter_problems}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.harness.soak", description="Soak one backend (see the module doc).")
    ap.add_argument("bundle")
    ap.add_argument("--backend", default="ckernel")
    ap.add_argument("--seconds", type=float, default=120.0, help="audio to stream (default 120)")
    ap.add_argument("--segment-seconds", type=float, default=10.0)
    ap.add_argument("--window-seconds", type=float, default=60.0)
    ap.add_argument("--warmup-seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-fraction", type=float, default=0.6, help="engine limit / bundle limit (default 0.6)")
    ap.add_argument("--json", help="write the result as JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        r = soak(args.bundle, args.backend, seconds=args.seconds, segment_seconds=args.segment_seconds,
                 window_seconds=args.window_seconds, warmup_seconds=args.warmup_seconds, seed=args.seed,
                 limit_fraction=args.limit_fraction, log=None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    except (BundleError, BackendError, SoakError) as e:
        print(f"python -m runtime.harness.soak: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(format_result(r))
    if args.json:
        with atomic_write(Path(args.json), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(r.as_dict(), indent=1) + "\n")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
