"""Engine: re-blocking FIFO + backend + output limiter + counters.

The host hands over audio in whatever sizes its audio API delivers (1 to 4096 samples);
the model steps on exactly ``block`` samples. :meth:`Engine.process` returns every output
sample that is complete, so the concatenated output for a signal does not depend on how the
host cut it up. Safety is the engine's job, not the model's: non-finite input becomes silence
(counted), and the limiter guarantees that no output sample exceeds the bundle's limit and
that no NaN ever leaves.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from runtime.backends import Backend, open_backend
from runtime.bundle import Bundle, load_bundle


@dataclass
class EngineStats:
    """Counters since the last reset."""

    blocks: int = 0
    samples_in: int = 0
    samples_out: int = 0
    nonfinite_inputs: int = 0       # input samples that were NaN/inf, replaced by 0
    limiter_samples: int = 0        # output samples where the limiter reduced the gain
    min_limiter_gain: float = 1.0
    late_blocks: int = 0            # blocks whose compute took longer than one block period
    xruns: int = 0                  # reported by the audio I/O layer
    max_block_us: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Limiter:
    """Peak limiter with instant attack and exponential release; ``|y| <= limit`` always.

    Instant attack means the gain for a sample is never above ``limit / |x|``, so no lookahead
    (and no added latency) is needed; release smooths the gain back to 1 to avoid the
    distortion a hard clip produces on every loud peak.
    """

    def __init__(self, limit: float, sample_rate: int, release_ms: float = 50.0) -> None:
        if not 0 < limit <= 1:
            raise ValueError(f"output limit must be in (0, 1], got {limit}")
        self.limit = float(limit)
        self.release = float(np.exp(-1.0 / (release_ms * 1e-3 * sample_rate)))
        self.gain = 1.0

    def reset(self) -> None:
        self.gain = 1.0

    def process(self, x: np.ndarray) -> tuple[np.ndarray, int, float]:
        y = np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=self.limit, neginf=-self.limit)
        peak = np.abs(y)
        target = np.minimum(1.0, self.limit / np.maximum(peak, 1e-30))
        g = self.gain
        gains = np.empty(len(y), np.float32)
        r = self.release
        for i, t in enumerate(target):  # blocks are small; a sequential recurrence is inherent
            g = min(t, 1.0 - (1.0 - g) * r)
            gains[i] = g
        self.gain = g
        out = np.clip(y * gains, -self.limit, self.limit)  # float rounding must not cross the limit
        return out.astype(np.float32), int(np.count_nonzero(gains < 1.0)), float(gains.min(initial=1.0))


class Engine:
    """Runs a bundle on any host block size, safely."""

    def __init__(self, bundle: Bundle | str, backend: str | Backend = "litert", *, num_threads: int = 1,
                 output_limit: float | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        m = self.bundle.manifest
        self.backend = open_backend(self.bundle, backend, num_threads=num_threads) if isinstance(backend, str) else backend
        if self.backend.block != m.block:
            raise ValueError(f"backend block {self.backend.block} differs from the bundle's block {m.block}")
        self.block = m.block
        self.sample_rate = m.sample_rate
        self.output_limit = float(output_limit if output_limit is not None else m.output_limit)
        self.limiter = Limiter(self.output_limit, self.sample_rate)
        self._period_s = self.block / self.sample_rate
        self.reset()

    @property
    def latency_samples(self) -> int:
        return self.bundle.manifest.algorithmic_latency_samples

    def reset(self) -> None:
        self.backend.reset()
        self.limiter.reset()
        self._fifo = np.zeros(0, np.float32)
        self._stats = EngineStats()

    def stats(self) -> dict[str, Any]:
        return self._stats.as_dict()

    def note_xrun(self, count: int = 1) -> None:
        self._stats.xruns += count

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed any number of samples; returns all newly completed output (a multiple of block)."""
        x = np.asarray(x, np.float32).reshape(-1)
        bad = ~np.isfinite(x)
        if bad.any():
            self._stats.nonfinite_inputs += int(bad.sum())
            x = np.where(bad, np.float32(0.0), x)
        self._stats.samples_in += len(x)
        buf = np.concatenate([self._fifo, x]) if len(self._fifo) else x
        n_blocks = len(buf) // self.block
        out = np.empty(n_blocks * self.block, np.float32)
        for k in range(n_blocks):
            blk = buf[k * self.block:(k + 1) * self.block]
            t0 = time.perf_counter()
            y = self.backend.process(blk)
            dt = time.perf_counter() - t0
            if dt > self._period_s:
                self._stats.late_blocks += 1
            self._stats.max_block_us = max(self._stats.max_block_us, dt * 1e6)
            y, limited, gmin = self.limiter.process(y)
            self._stats.limiter_samples += limited
            self._stats.min_limiter_gain = min(self._stats.min_limiter_gain, gmin)
            out[k * self.block:(k + 1) * self.block] = y
        self._fifo = buf[n_blocks * self.block:].copy()
        self._stats.blocks += n_blocks
        self._stats.samples_out += len(out)
        return out

    def flush(self) -> np.ndarray:
        """Complete the last partial block with silence and return its output."""
        if not len(self._fifo):
            return np.zeros(0, np.float32)
        pad = self.block - len(self._fifo)
        return self.process(np.zeros(pad, np.float32))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Whole signal → output of the same length (offline; starts from a fresh state)."""
        self.reset()
        y = np.concatenate([self.process(x), self.flush()])
        return y[: len(x)]

    def get_state(self) -> dict[str, Any]:
        return {"backend": self.backend.get_state(), "fifo": self._fifo.copy(), "limiter_gain": self.limiter.gain}

    def set_state(self, state: dict[str, Any]) -> None:
        self.backend.set_state(state["backend"])
        self._fifo = np.asarray(state["fifo"], np.float32).copy()
        self.limiter.gain = float(state["limiter_gain"])


__all__ = ["Engine", "EngineStats", "Limiter"]
