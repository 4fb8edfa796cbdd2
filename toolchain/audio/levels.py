"""The one dB SPL calibration of the project (docs/ARCHITECTURE.md, "Level calibration").

Digital audio is float32 in nominal [-1, 1]. A :class:`LevelCalibration` maps a digital level
to a sound pressure level: by default a full-scale sine (peak 1.0, RMS 1/sqrt(2)) is 100 dB SPL.
A board TOML may override that number with its microphone / receiver sensitivity; every other
module converts levels only through this file.

Silence has no finite level: ``rms_to_db_spl(0)`` and ``level_db_spl(zeros)`` return ``-inf``
(never a hidden floor), so a caller that needs a finite number must decide on its own floor.
The tensor helper :meth:`LevelCalibration.power_to_db_spl_tensor` is the exception: it clamps
to ``floor_power`` because a ``-inf`` would poison gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
FloatOrArray = float | np.ndarray

# RMS of a full-scale sine; the calibration point is defined at this RMS.
_FULL_SCALE_SINE_RMS = 1.0 / math.sqrt(2.0)


def _as_float_or_array(values: np.ndarray) -> FloatOrArray:
    """Return a Python float for 0-d results so scalar callers get scalars back."""
    return float(values) if values.ndim == 0 else values


@dataclass(frozen=True)
class LevelCalibration:
    """Digital level ↔ dB SPL mapping.

    ``full_scale_sine_db_spl`` is the SPL that a sine of digital peak 1.0 (RMS 1/sqrt(2))
    represents.
    """

    full_scale_sine_db_spl: float = 100.0

    def __post_init__(self) -> None:
        value = self.full_scale_sine_db_spl
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(
                f"full_scale_sine_db_spl must be a number, got {value!r}"
            )
        if not math.isfinite(float(value)):
            raise ValueError(f"full_scale_sine_db_spl must be finite, got {value!r}")
        object.__setattr__(self, "full_scale_sine_db_spl", float(value))

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> LevelCalibration:
        """Build from a board TOML table; a missing key keeps the 100 dB SPL default."""
        if "full_scale_sine_db_spl" in table:
            return cls(full_scale_sine_db_spl=table["full_scale_sine_db_spl"])
        return cls()

    @property
    def unit_power_db_spl(self) -> float:
        """dB SPL of a mean-square value of 1.0 (a full-scale square wave / DC)."""
        # A full-scale sine has mean square 1/2, so mean square 1 is 10*log10(2) ≈ 3.01 dB above.
        return self.full_scale_sine_db_spl + 10.0 * math.log10(2.0)

    # ------------------------------------------------------------------ conversions
    def rms_to_db_spl(self, rms: ArrayLike) -> FloatOrArray:
        """dB SPL of an RMS value (or array of them); 0 → -inf, negative → ValueError."""
        r = np.asarray(rms, dtype=np.float64)
        if np.any(r < 0):
            raise ValueError("an RMS value cannot be negative")
        with np.errstate(divide="ignore"):
            db = self.full_scale_sine_db_spl + 20.0 * np.log10(r / _FULL_SCALE_SINE_RMS)
        return _as_float_or_array(db)

    def db_spl_to_rms(self, db_spl: ArrayLike) -> FloatOrArray:
        """Digital RMS that corresponds to ``db_spl`` (inverse of :meth:`rms_to_db_spl`)."""
        db = np.asarray(db_spl, dtype=np.float64)
        rms = _FULL_SCALE_SINE_RMS * 10.0 ** ((db - self.full_scale_sine_db_spl) / 20.0)
        return _as_float_or_array(rms)

    def power_to_db_spl(self, power: ArrayLike) -> FloatOrArray:
        """dB SPL of a mean-square value in full-scale units (e.g. per-bin spectral power).

        Vectorised over numpy arrays; 0 → -inf, negative → ValueError.
        """
        p = np.asarray(power, dtype=np.float64)
        if np.any(p < 0):
            raise ValueError("a power (mean-square) value cannot be negative")
        with np.errstate(divide="ignore"):
            db = self.unit_power_db_spl + 10.0 * np.log10(p)
        return _as_float_or_array(db)

    def db_spl_to_power(self, db_spl: ArrayLike) -> FloatOrArray:
        """Mean-square value in full-scale units for ``db_spl`` (inverse of power_to_db_spl)."""
        db = np.asarray(db_spl, dtype=np.float64)
        return _as_float_or_array(10.0 ** ((db - self.unit_power_db_spl) / 10.0))

    def power_to_db_spl_tensor(self, power: Any, *, floor_power: float = 1e-12) -> Any:
        """:meth:`power_to_db_spl` for torch tensors (duck-typed, differentiable).

        Uses only ``.clamp(min=...)`` and ``.log10()`` so torch is never imported here.
        Values below ``floor_power`` are clamped (a floor, not -inf, so gradients stay finite).
        """
        return power.clamp(min=floor_power).log10() * 10.0 + self.unit_power_db_spl

    # ------------------------------------------------------------------ signals
    def level_db_spl(self, x: ArrayLike, *, axis: int | None = None) -> FloatOrArray:
        """dB SPL of the RMS of ``x`` (over all samples, or along ``axis``); silence → -inf."""
        a = np.asarray(x, dtype=np.float64)
        if a.size == 0:
            raise ValueError("cannot measure the level of an empty signal")
        if not np.all(np.isfinite(a)):
            raise ValueError("cannot measure the level of a signal with non-finite samples")
        rms = np.sqrt(np.mean(np.square(a), axis=axis))
        return self.rms_to_db_spl(rms)

    def set_level(self, x: ArrayLike, db_spl: float, *, axis: int | None = None) -> np.ndarray:
        """Return float32 ``x`` scaled so its RMS level is ``db_spl``.

        With ``axis`` (e.g. -1 for a ``(batch, n)`` array) each slice is scaled on its own.
        Raises ValueError on silent, empty or non-finite input, or a non-finite target.
        """
        if not math.isfinite(float(db_spl)):
            raise ValueError(f"target level must be finite, got {db_spl!r}")
        a = np.asarray(x, dtype=np.float64)
        if a.size == 0:
            raise ValueError("cannot set the level of an empty signal")
        if not np.all(np.isfinite(a)):
            raise ValueError("cannot set the level of a signal with non-finite samples")
        rms = np.sqrt(np.mean(np.square(a), axis=axis, keepdims=axis is not None))
        if np.any(rms == 0.0):
            raise ValueError("cannot set the level of a silent signal (RMS is 0)")
        target = float(self.db_spl_to_rms(db_spl))
        return (a * (target / rms)).astype(np.float32)


DEFAULT_CALIBRATION = LevelCalibration()


def level_db_spl(
    x: ArrayLike, calibration: LevelCalibration = DEFAULT_CALIBRATION, *, axis: int | None = None
) -> FloatOrArray:
    """Convenience wrapper: ``calibration.level_db_spl(x)``."""
    return calibration.level_db_spl(x, axis=axis)


def set_level(
    x: ArrayLike,
    db_spl: float,
    calibration: LevelCalibration = DEFAULT_CALIBRATION,
    *,
    axis: int | None = None,
) -> np.ndarray:
    """Convenience wrapper: ``calibration.set_level(x, db_spl)``."""
    return calibration.set_level(x, db_spl, axis=axis)
