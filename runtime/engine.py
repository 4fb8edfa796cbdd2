"""Engine: re-blocking FIFO + backend + output limiter + counters (docs/ARCHITECTURE.md, "Streaming-state contract").

The host hands over audio in whatever sizes its audio API delivers (1 to 4096 samples);
the model steps on exactly ``block`` samples. :meth:`Engine.process` returns every output
sample that is complete, so the concatenated output for a signal does not depend on how the
host cut it up (bit for bit: the backend always steps one model block at a time, and every
other stage is elementwise or an exactly sequential recurrence). :meth:`Engine.stream` is the
real-time form: exactly as many samples out as in, the same signal delayed by
:attr:`Engine.stream_delay` samples (one model block by default, whatever the host block).

Safety is the engine's job, not the model's: non-finite input becomes silence (counted), and
the limiter guarantees that no output sample exceeds the bundle's limit and that no NaN ever
leaves. Counters (xruns, late blocks, limiter activity, per-block compute time) are in
:meth:`Engine.stats`.

numpy only (plus the chosen backend): this module runs on the boards.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from runtime.backends import Backend, open_backend
from runtime.bundle import Bundle, load_bundle

#: Host blocks the engine accepts per call (larger calls are fine offline; see process()).
MAX_HOST_BLOCK = 4096
#: Per-block compute times kept for the live percentiles in stats().
TIMING_WINDOW = 4096


@dataclass
class EngineStats:
    """Counters since the last reset."""

    blocks: int = 0                 # model blocks computed
    samples_in: int = 0
    samples_out: int = 0
    nonfinite_inputs: int = 0       # input samples that were NaN/inf, replaced by 0
    nonfinite_outputs: int = 0      # backend output samples that were NaN/inf (limiter made them safe)
    limiter_samples: int = 0        # output samples where the limiter reduced the gain
    min_limiter_gain: float = 1.0
    late_blocks: int = 0            # blocks whose compute took longer than one block period
    xruns: int = 0                  # reported by the audio I/O layer (note_xrun)
    underruns: int = 0              # stream(): output samples that were not ready (filled with silence)
    max_block_us: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Limiter:
    """Peak limiter with instant attack and exponential release; ``|y| <= limit`` always.

    Instant attack means the gain for a sample is never above ``limit / |x|``, so no lookahead
    (and no added latency) is needed; release smooths the gain back to 1 (time constant
    ``release_ms``) to avoid the distortion a hard clip produces on every loud peak.

    Deterministic across machines: the release factor is ``1 - 1/(release_ms * rate / 1000)``
    (IEEE division and subtraction, no ``exp``), and the gain recurrence is computed exactly
    sequentially, so the output does not depend on how the signal is chunked or on the CPU's
    transcendental-function implementation (a Pi and a PC produce the same bytes).
    """

    #: A gain reduction below this is released to exactly 0 (gain 1), per sample, so the limiter
    #: goes back to its free path about a second after the last peak instead of decaying forever.
    SNAP = 1e-9

    def __init__(self, limit: float, sample_rate: int, release_ms: float = 50.0) -> None:
        if not 0 < limit <= 1:
            raise ValueError(f"output limit must be in (0, 1], got {limit}")
        release_samples = float(release_ms) * 1e-3 * float(sample_rate)
        if not release_samples >= 1:
            raise ValueError(f"release {release_ms} ms is shorter than one sample at {sample_rate} Hz")
        self.limit = float(limit)
        # The float32 nearest to the limit may lie above it (0.3 -> 0.30000001): clip at the largest
        # float32 that does not, so a sample never exceeds the limit even by one ulp.
        lim32 = np.float32(limit)
        self._limit32 = lim32 if float(lim32) <= float(limit) else np.nextafter(lim32, np.float32(0))
        self.release = 1.0 - 1.0 / release_samples
        # The state is the gain reduction u = 1 - gain, kept as is: recomputing it from the gain
        # (1 - (1 - u)) would round differently, and chunk boundaries would then show in the output.
        self.reduction = 0.0

    @property
    def gain(self) -> float:
        return 1.0 - self.reduction

    def reset(self) -> None:
        self.reduction = 0.0

    def process(self, x: np.ndarray) -> tuple[np.ndarray, int, float]:
        """``(y, samples limited, minimum gain)`` for one chunk; ``y`` is a new float32 array."""
        y = np.asarray(x, np.float32)
        finite = bool(np.isfinite(y).all())
        if not finite:
            y = np.nan_to_num(y, nan=0.0, posinf=self.limit, neginf=-self.limit)
        peak = float(np.max(np.abs(y), initial=0.0))
        if self.reduction == 0.0 and peak <= self.limit:
            return (y.copy() if finite else y), 0, 1.0            # the common case: nothing to do
        mag = np.abs(y).astype(np.float64)
        # u = 1 - gain: u[i] = max(need[i], u[i-1] * release), need = 1 - limit/|x| where |x| > limit.
        need = np.zeros(len(y), np.float64)
        over = mag > self.limit
        need[over] = 1.0 - self.limit / mag[over]
        u = np.empty(len(y), np.float64)
        r = self.release
        prev = self.reduction
        snap = self.SNAP
        if not over.any():
            # Pure release: prev * r^(i+1) by sequential multiplication (the same numbers as a loop),
            # and 0 from the first value below SNAP on (it only decreases).
            acc = np.full(len(y) + 1, r)
            acc[0] = prev
            u[:] = np.multiply.accumulate(acc)[1:]
            u[u < snap] = 0.0
        else:
            needs = need.tolist()
            out = u.tolist()
            for i, n in enumerate(needs):
                prev = prev * r
                if prev < snap:
                    prev = 0.0
                if n > prev:
                    prev = n
                out[i] = prev
            u[:] = out
        if len(u):
            self.reduction = float(u[-1])
        gains = 1.0 - u
        lim = self._limit32
        out32 = np.clip((y * gains).astype(np.float32), -lim, lim)  # float rounding must not cross the limit
        limited = int(np.count_nonzero(gains < 1.0))
        return out32, limited, float(gains.min(initial=1.0))


class _Quantizer:
    """TFLite's affine quantisation of float32 samples, exactly as ``runtime.backends.base.quantize``.

    ``q = clip(round_half_away(x / scale) + zero_point)`` computed in float64 with preallocated
    buffers: a handful of ufunc calls instead of the general helper's ~40 µs per 16-sample
    block. Rounding: ``t = trunc(v)``, ``|v - t|`` is exact in float64, so ``t + sign(v)`` when
    it is >= 0.5 is round-half-away-from-zero; identical results for every finite input (tested).
    The engine only hands it finite samples.
    """

    def __init__(self, scale: float, zero_point: int, dtype: Any = np.int8) -> None:
        self.scale = float(scale)
        self.zero_point = float(zero_point)
        info = np.iinfo(dtype)
        self.lo, self.hi = float(info.min), float(info.max)
        self.dtype = np.dtype(dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        v = np.divide(x, self.scale, dtype=np.float64)
        t = np.trunc(v)
        f = np.subtract(v, t)
        np.abs(f, out=f)
        up = np.greater_equal(f, 0.5)
        s = np.sign(v, out=v)
        np.multiply(s, up, out=s)
        np.add(t, s, out=t)
        np.add(t, self.zero_point, out=t)
        np.clip(t, self.lo, self.hi, out=t)
        return t.astype(self.dtype)


def _io_dtype(backend: Any) -> np.dtype:
    """The integer sample type a raw-stepping backend takes: its ``io_dtype``, else its input tensor's."""
    dt = getattr(backend, "io_dtype", None)
    if dt is None:
        dt = getattr(backend, "_x_dtype", np.int8)
    return np.dtype(dt)


class Engine:
    """Runs a bundle on any host block size, safely.

    ``backend`` is a name for :func:`runtime.backends.open_backend` (litert, litert-fp32,
    ckernel, onnx) or a ready :class:`~runtime.backends.Backend` (e.g. the torch reference from
    ``toolchain.export.torch_backend``). ``stream_delay`` is the fixed delay of :meth:`stream`
    in samples (default: one model block, which every host block size can sustain).
    """

    def __init__(self, bundle: Bundle | str, backend: str | Backend = "litert", *, num_threads: int = 1,
                 output_limit: float | None = None, stream_delay: int | None = None,
                 release_ms: float = 50.0, timing_window: int = TIMING_WINDOW) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        m = self.bundle.manifest
        self.backend = open_backend(self.bundle, backend, num_threads=num_threads) if isinstance(backend, str) else backend
        self.backend_name = backend if isinstance(backend, str) else getattr(self.backend, "name", type(self.backend).__name__)
        if int(self.backend.block) != m.block:
            raise ValueError(f"backend block {self.backend.block} differs from the bundle's block {m.block}")
        self.block = m.block
        self.sample_rate = m.sample_rate
        self.output_limit = float(output_limit if output_limit is not None else m.output_limit)
        if not 0 < self.output_limit <= m.output_limit:
            raise ValueError(f"output limit {self.output_limit:g} must be in (0, {m.output_limit:g}] (the bundle's limit)")
        self.limiter = Limiter(self.output_limit, self.sample_rate, release_ms=release_ms)
        self.period_s = self.block / self.sample_rate
        self.stream_delay = self.block if stream_delay is None else int(stream_delay)
        if self.stream_delay < 0:
            raise ValueError(f"stream_delay must be >= 0, got {stream_delay}")
        # Integer backends that expose their raw step (litert int8, ckernel) are driven through a
        # fast exact quantiser; anything else through its own float process().
        b = self.backend
        self._raw = None
        if (callable(getattr(b, "process_raw", None)) and getattr(b, "integer", True)
                and hasattr(b, "input_quant") and hasattr(b, "output_quant")):
            s_in, z_in = b.input_quant
            s_out, z_out = b.output_quant
            self._raw = b.process_raw
            # int16 for the 16x8 device graph (16-bit audio at the PCM scale), int8 for full integer.
            self._quant = _Quantizer(s_in, z_in, _io_dtype(b))
            self._deq = (np.float32(s_out), int(z_out))
        self._times = np.zeros(max(1, int(timing_window)), np.float64)
        self.reset()

    # ------------------------------------------------------------------ properties
    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of the bundle (impulse to first affected output, block fill included)."""
        return self.bundle.manifest.algorithmic_latency_samples

    @property
    def integer_path(self) -> bool:
        """True when the backend is stepped on integer (int16 or int8) samples through the engine's quantiser."""
        return self._raw is not None

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Fresh device: backend state, FIFOs, limiter and counters."""
        self.backend.reset()
        self.limiter.reset()
        self._fifo = np.zeros(0, np.float32)
        self._out = np.zeros(self.stream_delay, np.float32)
        self._stats = EngineStats()
        self._n_times = 0

    def get_state(self) -> dict[str, Any]:
        """A snapshot from which :meth:`set_state` continues exactly (counters are not part of it)."""
        return {"backend": self.backend.get_state(), "fifo": self._fifo.copy(), "out": self._out.copy(),
                "limiter_reduction": self.limiter.reduction}

    def set_state(self, state: dict[str, Any]) -> None:
        self.backend.set_state(state["backend"])
        self._fifo = np.asarray(state["fifo"], np.float32).copy()
        self._out = np.asarray(state.get("out", np.zeros(self.stream_delay)), np.float32).copy()
        self.limiter.reduction = float(state["limiter_reduction"])

    # ------------------------------------------------------------------ counters
    def stats(self) -> dict[str, Any]:
        """Counters since reset, plus percentiles of the recent per-block compute time."""
        d = self._stats.as_dict()
        period_us = self.period_s * 1e6
        t = self.block_times_us()
        if len(t):
            p50, p99 = (float(v) for v in np.percentile(t, [50, 99]))
        else:
            p50 = p99 = 0.0
        d.update(block=self.block, sample_rate=self.sample_rate, period_us=period_us, recent_p50_us=p50,
                 recent_p99_us=p99, load=p50 / period_us, load_p99=p99 / period_us)
        return d

    def block_times_us(self) -> np.ndarray:
        """Compute time of the most recent model blocks (up to ``timing_window``), oldest first, in µs.

        A block's compute time is the model step as the engine drives it: quantise, backend
        step, dequantise (re-blocking and limiter excluded).
        """
        w = len(self._times)
        n = self._n_times
        if n <= w:
            return self._times[:n] * 1e6
        k = n % w
        return np.concatenate([self._times[k:], self._times[:k]]) * 1e6

    def note_xrun(self, count: int = 1) -> None:
        """Called by the audio I/O layer when the audio server reports an over/underrun."""
        self._stats.xruns += int(count)

    # ------------------------------------------------------------------ processing
    def _step(self, blk: np.ndarray) -> np.ndarray:
        """One model block, timed; float32 in (finite), float32 out (not yet limited)."""
        t0 = time.perf_counter()
        if self._raw is not None:
            yq = self._raw(self._quant(blk))
            s, z = self._deq
            y = (yq.astype(np.int32) - z).astype(np.float32) * s
        else:
            y = np.asarray(self.backend.process(blk), np.float32).reshape(-1)
        dt = time.perf_counter() - t0
        st = self._stats
        if dt > self.period_s:
            st.late_blocks += 1
        us = dt * 1e6
        if us > st.max_block_us:
            st.max_block_us = us
        self._times[self._n_times % len(self._times)] = dt
        self._n_times += 1
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed any number of samples; returns all newly completed output (a multiple of block)."""
        x = np.asarray(x, np.float32).reshape(-1)
        st = self._stats
        bad = ~np.isfinite(x)
        if bad.any():
            st.nonfinite_inputs += int(bad.sum())
            x = np.where(bad, np.float32(0.0), x)
        st.samples_in += len(x)
        buf = np.concatenate([self._fifo, x]) if len(self._fifo) else x
        b = self.block
        n_blocks = len(buf) // b
        if n_blocks == 0:
            self._fifo = buf.copy()
            return np.zeros(0, np.float32)
        raw = np.empty(n_blocks * b, np.float32)
        for k in range(n_blocks):
            raw[k * b:(k + 1) * b] = self._step(buf[k * b:(k + 1) * b])
        bad_out = ~np.isfinite(raw)
        if bad_out.any():
            st.nonfinite_outputs += int(bad_out.sum())
        out, limited, gmin = self.limiter.process(raw)
        st.limiter_samples += limited
        if gmin < st.min_limiter_gain:
            st.min_limiter_gain = gmin
        self._fifo = buf[n_blocks * b:].copy()
        st.blocks += n_blocks
        st.samples_out += len(out)
        return out

    def stream(self, x: np.ndarray) -> np.ndarray:
        """Real-time form: exactly ``len(x)`` samples out, the signal delayed by :attr:`stream_delay`.

        The output FIFO starts with ``stream_delay`` samples of silence. With the default (one
        model block) any host block size is sustained, and the output stream is the same for
        every host block size. A smaller delay can run dry for host blocks that are not a
        multiple of the model block; missing samples are then silence, counted as underruns.
        """
        n = int(np.size(x))
        y = self.process(x)
        out = np.concatenate([self._out, y]) if len(self._out) else y
        if len(out) < n:
            self._stats.underruns += n - len(out)
            out = np.concatenate([np.zeros(n - len(out), np.float32), out])
        self._out = out[n:].copy()
        return out[:n]

    def flush(self) -> np.ndarray:
        """Complete the last partial block with silence and return its output."""
        if not len(self._fifo):
            return np.zeros(0, np.float32)
        pad = self.block - len(self._fifo)
        st = self._stats
        n_in = st.samples_in
        y = self.process(np.zeros(pad, np.float32))
        st.samples_in = n_in  # the padding is not input
        return y

    def run(self, x: np.ndarray, *, host_block: int | None = None) -> np.ndarray:
        """Whole signal → output of the same length (offline; starts from a fresh state).

        ``host_block`` feeds the signal in pieces of that size (as an audio API would); the
        result is the same for every size.
        """
        self.reset()
        x = np.asarray(x, np.float32).reshape(-1)
        if host_block is None:
            step = max(self.block, MAX_HOST_BLOCK // self.block * self.block)
        else:
            step = int(host_block)
            if not 1 <= step:
                raise ValueError(f"host block must be >= 1, got {host_block}")
        parts = [self.process(x[i:i + step]) for i in range(0, len(x), step)]
        parts.append(self.flush())
        return np.concatenate(parts)[: len(x)] if parts else np.zeros(0, np.float32)


__all__ = ["MAX_HOST_BLOCK", "Engine", "EngineStats", "Limiter"]
