"""The representative dataset TFLite's full-integer converter calibrates on.

Each sample is ``[x, state_0, ...]`` in NHWC: one block of a calibration clip and the streaming state
the model holds at its start, so every state input is calibrated on the values it carries while the
model streams (not on zeros).
"""

from __future__ import annotations

import numpy as np
import torch

from toolchain.models.compensators.streaming import StreamingGraph

Sample = list[np.ndarray]  # [x (1, 1, block, 1), state_k (1, 1, frames, channels), ...]


def nhwc(t: torch.Tensor) -> np.ndarray:
    """Torch NCW ``(K, C, F)`` → TFLite NHWC ``(K, 1, F, C)``."""
    return t.permute(0, 2, 1).unsqueeze(1).numpy().astype(np.float32)


def calibration_reps(graph: StreamingGraph, calib: np.ndarray, block: int, n_blocks: int, seed: int) -> list[Sample]:
    """About ``n_blocks`` representative samples: random blocks of the calibration clips with the state the
    model holds there (``seed``ed, so a re-export picks the same blocks)."""
    reps: list[Sample] = []
    per_clip = max(1, n_blocks // len(calib))
    rng = np.random.default_rng(seed)
    for clip in calib:
        n = len(clip) // block * block
        starts = sorted(rng.choice(n // block, size=min(per_clip, n // block), replace=False).tolist())
        xb, states = graph.states_at(torch.from_numpy(clip[:n]).reshape(1, 1, n), block, starts)
        xs = nhwc(xb)
        st = [nhwc(s) for s in states]
        reps.extend([[xs[k:k + 1]] + [s[k:k + 1] for s in st] for k in range(len(starts))])
    return reps


def with_headroom(reps: list[Sample], headroom_db: float) -> list[Sample]:
    """``reps`` followed by every sample ``headroom_db`` louder (input and state alike): the 16x8
    calibration set, so speech peaks beyond the calibration clips' do not clip (see
    ExportOptions.int16_headroom_db)."""
    g = 10.0 ** (headroom_db / 20.0)
    return reps + [[a * g for a in r] for r in reps]
