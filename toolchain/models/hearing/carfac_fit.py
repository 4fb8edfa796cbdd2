"""Fit a hearing-impaired CARFAC to an audiogram (seed 004: DAL fits CARFAC to each subject).

A tone threshold of the model is the level (dB SPL, through levels.py's one calibration) at which
the steady-state mean NAP of its most responsive channel reaches :data:`THRESHOLD_CRITERION`.
The hearing level of an impaired model at a frequency is its threshold minus the normal model's.

The fit lowers the outer-hair-cell health per channel (0..1, the reference's ``ohc_health``,
which scales the OHC undamping and so the cascade's active gain) until the threshold shift
matches the audiogram. Where the audiogram exceeds what losing every OHC gives (CARFAC's active
gain is small at low CFs and near Nyquist), the remainder is an inner-hair-cell loss: an
attenuation of the IHC's drive. Per-channel values are interpolated over log frequency between
the audiogram frequencies the sample rate can represent (below 0.8 x Nyquist), held flat beyond.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ
from toolchain.audio.levels import LevelCalibration
from toolchain.models.hearing.carfac import Carfac, CarfacParams

# Mean NAP of the best channel that counts as "heard"; it puts the normal model's 1 kHz
# threshold near 0 dB SPL under the default calibration (a design choice, not from a seed).
THRESHOLD_CRITERION = 1e-3
_LEVELS_DB_SPL = np.arange(-20.0, 151.0, 10.0)
_TONE_SECONDS = 0.08


def usable_freqs(fs: float) -> tuple[float, ...]:
    """Audiogram frequencies a model at ``fs`` can be fitted at (below 0.8 x Nyquist)."""
    return tuple(float(f) for f in AUDIOGRAM_FREQS_HZ if f < 0.8 * fs / 2)


def tone_thresholds(model: Carfac, freqs_hz: tuple[float, ...],
                    calibration: LevelCalibration | None = None) -> np.ndarray:
    """Tone thresholds (dB SPL) of ``model`` at ``freqs_hz``, from one batched run.

    Tones of :data:`_TONE_SECONDS` at each level of a 10 dB grid; the best channel's mean NAP over
    the second half, interpolated in log10 between grid levels (it grows ~10x per 10 dB near
    threshold). A tone not heard at the top of the grid gets the grid's top level.
    """
    cal = calibration or LevelCalibration()
    fs = model.fs
    t = np.arange(int(_TONE_SECONDS * fs)) / fs
    amps = np.sqrt(2.0) * np.asarray(cal.db_spl_to_rms(_LEVELS_DB_SPL))
    tones = np.stack([a * np.sin(2 * np.pi * f * t) for f in freqs_hz for a in amps])
    with torch.no_grad():
        nap = model(torch.from_numpy(tones).to(torch.float32))
    resp = nap[:, :, t.size // 2:].mean(-1).amax(-1).double().numpy()
    resp = np.log10(np.maximum(resp, 1e-30)).reshape(len(freqs_hz), len(_LEVELS_DB_SPL))
    crit = np.log10(THRESHOLD_CRITERION)
    out = np.empty(len(freqs_hz))
    for i, row in enumerate(resp):
        above = np.nonzero(row >= crit)[0]
        if above.size == 0:
            out[i] = _LEVELS_DB_SPL[-1]
            continue
        j = int(above[0])
        if j == 0:
            out[i] = _LEVELS_DB_SPL[0]
            continue
        frac = (crit - row[j - 1]) / max(row[j] - row[j - 1], 1e-12)
        out[i] = _LEVELS_DB_SPL[j - 1] + frac * (_LEVELS_DB_SPL[j] - _LEVELS_DB_SPL[j - 1])
    return out


def channel_profile(model_freqs: np.ndarray, freqs_hz: tuple[float, ...], values: np.ndarray) -> np.ndarray:
    """Per-channel values from per-frequency ones: linear over log frequency, flat beyond the ends."""
    return np.interp(np.log2(model_freqs), np.log2(np.asarray(freqs_hz)), np.asarray(values, dtype=np.float64))


@dataclass(frozen=True)
class CarfacFit:
    """A fitted impaired ear: per-channel OHC health and IHC gain, and how well it fits."""

    fs: float
    freqs_hz: tuple[float, ...]
    target_db_hl: np.ndarray
    achieved_db_hl: np.ndarray
    normal_thresholds_db_spl: np.ndarray
    ohc_health: np.ndarray
    ihc_gain: np.ndarray

    @property
    def max_error_db(self) -> float:
        """Largest |achieved - target| over the fitted frequencies (dB)."""
        return float(np.max(np.abs(self.achieved_db_hl - self.target_db_hl)))

    def model(self, params: CarfacParams | None = None) -> Carfac:
        """The impaired CARFAC this fit describes."""
        return Carfac(self.fs, params, ohc_health=self.ohc_health, ihc_gain=self.ihc_gain)


def fit_audiogram(thresholds_db_hl: np.ndarray | list[float], fs: float,
                  calibration: LevelCalibration | None = None, iterations: int = 5,
                  params: CarfacParams | None = None) -> CarfacFit:
    """Fit OHC health (then IHC gain where OHC loss is not enough) to an audiogram (dB HL).

    Each iteration measures the shifts of the current profile and moves every frequency's
    parameter by a secant step (OHC health) or by the remaining dB (IHC gain); frequencies are
    coupled only weakly (a tone's path crosses the basal channels), so a few rounds suffice.
    """
    hl = np.asarray(thresholds_db_hl, dtype=np.float64)
    if hl.shape != (len(AUDIOGRAM_FREQS_HZ),):
        raise ValueError(f"expected {len(AUDIOGRAM_FREQS_HZ)} thresholds, got shape {hl.shape}")
    freqs = usable_freqs(fs)
    target = np.maximum(hl[: len(freqs)], 0.0)
    normal = Carfac(fs, params)
    pf = normal.pole_freqs
    t_nh = tone_thresholds(normal, freqs, calibration)

    def shifts(health: np.ndarray, ihc_db: np.ndarray) -> np.ndarray:
        m = Carfac(fs, params, ohc_health=np.clip(channel_profile(pf, freqs, health), 0, 1),
                   ihc_gain=10 ** (channel_profile(pf, freqs, np.minimum(ihc_db, 0)) / 20))
        return tone_thresholds(m, freqs, calibration) - t_nh

    n = len(freqs)
    max_ohc = shifts(np.zeros(n), np.zeros(n))
    health = np.where(target >= max_ohc, 0.0, 1.0 - target / np.maximum(max_ohc, 1e-6))
    ihc_db = np.where(target >= max_ohc, -(target - max_ohc), 0.0)
    prev_h, prev_s = np.zeros(n), max_ohc.copy()
    achieved = shifts(health, ihc_db)
    for _ in range(iterations):
        err = achieved - target
        if np.max(np.abs(err)) < 1.0:
            break
        on_ihc = health <= 0.0
        # secant in health between the last two (health, shift) points of each frequency
        slope = (achieved - prev_s) / np.where(np.abs(health - prev_h) > 1e-9, health - prev_h, np.nan)
        slope = np.where(np.isfinite(slope) & (slope < 0), slope, -np.maximum(max_ohc, 1.0))
        new_h = np.clip(health - err / slope, 0.0, 1.0)
        prev_h, prev_s = health.copy(), achieved.copy()
        new_ihc = np.where(on_ihc, np.minimum(ihc_db + err, 0.0), 0.0)
        # a frequency whose health hits 0 while still short moves on to IHC loss
        new_ihc = np.where(~on_ihc & (new_h <= 0.0) & (err < 0), err, new_ihc)
        health, ihc_db = np.where(on_ihc & (new_ihc >= 0.0), 0.0, np.where(on_ihc, 0.0, new_h)), new_ihc
        achieved = shifts(health, ihc_db)
    return CarfacFit(
        fs=float(fs), freqs_hz=freqs, target_db_hl=target, achieved_db_hl=achieved,
        normal_thresholds_db_spl=t_nh,
        ohc_health=np.clip(channel_profile(pf, freqs, health), 0, 1),
        ihc_gain=10 ** (channel_profile(pf, freqs, np.minimum(ihc_db, 0)) / 20))


@functools.lru_cache(maxsize=32)
def _fit_memo(thresholds: tuple[float, ...], fs: float) -> CarfacFit:
    return fit_audiogram(np.asarray(thresholds, dtype=np.float64), fs)


def fit_audiogram_cached(thresholds_db_hl: np.ndarray | list[float], fs: float) -> CarfacFit:
    """:func:`fit_audiogram` with the default calibration and parameters, memoised per process.

    A fit runs CARFAC on ~100 tones (about 10 s at 16 kHz on a busy core); training and verify ask
    for the same few audiograms again and again.
    """
    key = tuple(round(float(v), 6) for v in np.asarray(thresholds_db_hl, dtype=np.float64).ravel())
    return _fit_memo(key, float(fs))
