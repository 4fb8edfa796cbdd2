"""The reference hearing-loss simulator: pyclarity's MSBG, wrapped for our sample rate and levels.

pyclarity's ``Ear`` (``clarity.evaluator.msbg``) only runs at 44.1 kHz, delays its output by
~1,100–1,300 samples depending on the audiogram (its FIR stages), and takes its level
calibration as "dB SPL of an RMS-1 signal" (``equiv_0db_spl + ahr``). This module resamples
around it (soxr), feeds it our one calibration (:mod:`toolchain.audio.levels`), and removes the
delay as Neuro-MSBG does (seed 003, Sec. III-A: an auxiliary impulse is processed by the same
simulator and the shift between its input and output peak positions is the delay), so that the
output lines up sample for sample with the input, which the neural simulator is trained on.

MSBG is deterministic (no random noise is added), slow (~0.25 s of CPU per second of audio) and
not differentiable: it is the ground truth the neural simulator (:mod:`toolchain.models.hearing.hlsim`)
learns to reproduce, never something to train through.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import numpy.typing as npt

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, Audiogram
from toolchain.audio.io import resample
from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration

MSBG_SAMPLE_RATE = 44100  # the only rate pyclarity's MSBG accepts
# The auxiliary impulse (seed 003): placed after enough silence for MSBG's level measurement and
# followed by room for the longest delay seen (~1,300 samples at 44.1 kHz, severe losses).
_IMPULSE_AT = 2205
_IMPULSE_LEN = 8820


class MSBGUnavailableError(RuntimeError):
    """pyclarity is not installed (set-up installs it)."""


@contextmanager
def _quiet_clarity() -> Iterator[None]:
    # pyclarity logs a warning per call ("Audiogram does not have all ... frequencies") and an
    # info line per rescale: thousands of lines over a corpus.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _ear(audiogram: Audiogram, calibration: LevelCalibration):
    try:
        # lazy: pyclarity is optional; callers report it missing instead of failing
        from clarity.evaluator.msbg.msbg import Ear
        from clarity.utils.audiogram import Audiogram as ClarityAudiogram
    except ImportError as exc:  # pragma: no cover - set-up installs pyclarity
        raise MSBGUnavailableError(f"pyclarity's MSBG does not import ({exc}); run scripts/setup.sh") from None
    # Ear's calibration is "RMS 1.0 is equiv_0db_spl + ahr dB SPL"; ours is unit_power_db_spl.
    ear = Ear(src_pos="ff", sample_rate=MSBG_SAMPLE_RATE, equiv_0db_spl=calibration.unit_power_db_spl, ahr=0.0)
    ear.set_audiogram(ClarityAudiogram(levels=np.asarray(audiogram.as_array(), np.float64),
                                       frequencies=np.asarray(AUDIOGRAM_FREQS_HZ, np.float64)))
    return ear


@dataclass
class MSBGReference:
    """``simulate(x, audiogram)``: what a listener with ``audiogram`` hears of ``x``, time-aligned.

    ``x`` is float mono at ``sample_rate`` in our calibration; the output has the same length
    and rate. The per-audiogram delay is measured once and cached.
    """

    sample_rate: int = 16000
    calibration: LevelCalibration = DEFAULT_CALIBRATION
    _delays: dict[tuple[float, ...], int] = field(default_factory=dict, repr=False)

    def delay_samples(self, audiogram: Audiogram) -> int:
        """MSBG's delay for this audiogram, in 44.1 kHz samples, by the seed's impulse method."""
        key = tuple(float(v) for v in audiogram.as_array())
        if key not in self._delays:
            probe = np.zeros(_IMPULSE_LEN)
            probe[_IMPULSE_AT] = 1.0
            with _quiet_clarity():
                out = _ear(audiogram, self.calibration).process(probe)[0]
            self._delays[key] = int(np.argmax(np.abs(out))) - _IMPULSE_AT
        return self._delays[key]

    def simulate(self, x: npt.ArrayLike, audiogram: Audiogram) -> np.ndarray:
        """MSBG(x, audiogram) at ``sample_rate``, delay removed, same length as ``x`` (float32)."""
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"MSBG simulates one non-empty mono signal; got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("MSBG input has NaN or inf samples")
        if not np.any(a):
            return np.zeros(a.shape, np.float32)
        hi = resample(a.astype(np.float32), self.sample_rate, MSBG_SAMPLE_RATE).astype(np.float64)
        delay = self.delay_samples(audiogram)
        # Pad so the delayed tail of the signal is not cut off by MSBG's same-length output.
        padded = np.concatenate([hi, np.zeros(delay + 64)])
        with _quiet_clarity():
            out = np.asarray(_ear(audiogram, self.calibration).process(padded)[0], np.float64)
        aligned = out[delay:delay + hi.size]
        y = resample(aligned.astype(np.float32), MSBG_SAMPLE_RATE, self.sample_rate)
        n = a.size
        if y.size < n:
            y = np.concatenate([y, np.zeros(n - y.size, np.float32)])
        return np.ascontiguousarray(y[:n], dtype=np.float32)
