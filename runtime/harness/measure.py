"""What every harness measurement shares: a backend streamed from a fresh state, the algorithmic
latency by impulse (DESIGN.md, "Causality is a contract"), the harness's error types and its JSON
encoding of numpy values.

Below :mod:`runtime.harness.bench` and :mod:`runtime.harness.loopback` (both use it); numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LatencyProbeError(RuntimeError):
    """The impulse probe could not see the impulse at the output."""


class BenchError(RuntimeError):
    """A benchmark could not run (one-line message)."""


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



def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
