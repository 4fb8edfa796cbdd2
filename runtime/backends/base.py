"""The Backend interface every runtime backend implements, and int8 quantisation helpers.

A backend runs the model's step graph on exactly one block: float32 ``(block,)`` in, float32
``(block,)`` out. Integer backends quantise at their boundary with the scale/zero-point the
bundle records, so the engine never deals with dtypes. State is explicit: ``get_state`` /
``set_state`` copy it out and back in as plain arrays.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    name: str
    block: int

    def process(self, x: np.ndarray) -> np.ndarray:
        """One block: float32 ``(block,)`` → float32 ``(block,)``; advances the state."""

    def reset(self) -> None:
        """Back to the state of a fresh device (silence history)."""

    def get_state(self) -> list[np.ndarray]:
        """A copy of the streaming state."""

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        """Restore a state returned by :meth:`get_state`."""


class BackendError(RuntimeError):
    """A backend could not be created or run (one-line message)."""


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: type = np.int8) -> np.ndarray:
    """TFLite's affine quantisation: round half away from zero, then saturate."""
    info = np.iinfo(dtype)
    v = np.asarray(x, np.float64) / scale
    # TFLite rounds half away from zero (std::round); numpy's round sends .5 ties to even.
    r = np.where(np.abs(v - np.trunc(v)) == 0.5, np.trunc(v) + np.sign(v), np.round(v))
    q = np.nan_to_num(r, nan=0.0) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, np.int32) - zero_point) * np.float32(scale)).astype(np.float32)
