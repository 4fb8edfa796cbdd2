"""A multi-band wide-dynamic-range compressor (WDRC) fitted by CAMFIT: the second classic baseline.

"NAL-R + WDRC" is the Clarity challenges' hearing-aid baseline (a NAL-R prescription with a
compressor). Here the compressor makes the prescription level dependent: per CAMFIT band
(:mod:`toolchain.fitting.camfit`) its gain is 0 dB at the band level of 65 dB SPL speech
(``Lmid``), so conversational speech gets exactly NAL-R, and every dB of input above or below
that moves the output by 1/CR dB (CAMFIT's ratio): soft speech gets more gain, loud speech less.
Below the compression threshold, CAMFIT's speech minima ``Lmid - 38 dB``, the gain stays
constant (linear), so the gain for silence is bounded.

Signal path: a Linkwitz-Riley (4th order) crossover tree at the CAMFIT band edges, the lower bands
phase-matched by the later crossovers' all-passes so the bands sum to an all-pass (flat magnitude);
per band a level detector (mean square over max(1 ms, two periods of the band centre), in dB SPL
through :mod:`toolchain.audio.levels`, then attack/release smoothing at 1 ms frames), the static
curve, and a gain that each frame's level sets over the next frame (causal; interpolated per sample). Attack
5 ms and release 50 ms are fast, syllabic compression, as CAMFIT's multi-channel fitting assumes.
Everything is causal: no look-ahead, so the only delay is the crossover's group delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, sosfilt

from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration
from toolchain.fitting.camfit import CAMFIT_CENTRES_HZ, CAMFIT_EDGES_HZ, MINIMA_DISTANCE_DB, CamfitFit, camfit_fit

ATTACK_MS = 5.0
RELEASE_MS = 50.0
FRAME_MS = 1.0


class CrossoverBank:
    """Linkwitz-Riley 4th-order crossover tree; ``split(x)`` gives bands that sum to an all-pass of ``x``."""

    def __init__(self, crossovers_hz: np.ndarray, sample_rate: int) -> None:
        xs = np.asarray(crossovers_hz, np.float64)
        if xs.ndim != 1 or np.any(np.diff(xs) <= 0) or xs[0] <= 0 or xs[-1] >= sample_rate / 2:
            raise ValueError(f"crossovers must increase inside (0, {sample_rate / 2:g}) Hz, got {xs.tolist()}")
        self.crossovers_hz = xs
        # LR4 = a 2nd-order Butterworth twice; its low and high outputs are in phase and sum to an all-pass.
        self._lp = [np.vstack([butter(2, f, "low", fs=sample_rate, output="sos")] * 2) for f in xs]
        self._hp = [np.vstack([butter(2, f, "high", fs=sample_rate, output="sos")] * 2) for f in xs]

    @property
    def bands(self) -> int:
        return len(self.crossovers_hz) + 1

    def _allpass(self, j: int, x: np.ndarray) -> np.ndarray:
        return sosfilt(self._lp[j], x) + sosfilt(self._hp[j], x)

    def split(self, x: np.ndarray) -> np.ndarray:
        """``(bands, n)``: band k is below crossover k (the last band above the last crossover)."""
        rest = np.asarray(x, np.float64)
        out = []
        for j in range(len(self.crossovers_hz)):
            out.append(sosfilt(self._lp[j], rest))
            rest = sosfilt(self._hp[j], rest)
        out.append(rest)
        # The part above crossover j went through every later crossover (an all-pass each); the
        # band below it must get the same phase, or the bands do not sum flat.
        for k in range(len(out) - 1):
            for j in range(k + 1, len(self.crossovers_hz)):
                out[k] = self._allpass(j, out[k])
        return np.stack(out)


@dataclass(frozen=True)
class WDRC:
    """Band-wise static curve and time constants of the compressor (arrays per band, levels in dB SPL).

    ``gain_db(L) = (1/ratio - 1) * (max(L, threshold) - reference)``: 0 dB at ``reference``, slope
    ``1/ratio - 1`` above ``threshold``, constant below it.
    """

    crossovers_hz: np.ndarray
    centres_hz: np.ndarray
    ratio: np.ndarray
    threshold_db: np.ndarray
    reference_db: np.ndarray
    attack_ms: float = ATTACK_MS
    release_ms: float = RELEASE_MS
    calibration: LevelCalibration = field(default=DEFAULT_CALIBRATION)

    def __post_init__(self) -> None:
        n = len(self.crossovers_hz) + 1
        for name in ("centres_hz", "ratio", "threshold_db", "reference_db"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have one value per band ({n}), got shape {np.shape(getattr(self, name))}")
        if np.any(np.asarray(self.ratio) < 1):
            raise ValueError(f"compression ratios must be >= 1, got {np.asarray(self.ratio).tolist()}")
        if not (self.attack_ms > 0 and self.release_ms > 0):
            raise ValueError("attack and release must be positive (ms)")

    @classmethod
    def from_camfit(cls, fit: CamfitFit, **kw: object) -> WDRC:
        """CAMFIT's ratios; threshold at the speech minima (``Lmid - 38 dB``), 0 dB gain at ``Lmid``."""
        return cls(crossovers_hz=np.asarray(CAMFIT_EDGES_HZ[1:-1], np.float64), centres_hz=np.asarray(fit.centres_hz),
                   ratio=np.asarray(fit.ratio), threshold_db=np.asarray(fit.lmid_db) - MINIMA_DISTANCE_DB,
                   reference_db=np.asarray(fit.lmid_db), **kw)  # type: ignore[arg-type]

    def gain_db(self, levels_db: np.ndarray) -> np.ndarray:
        """Static gain; ``levels_db`` broadcasts against the bands on its last axis."""
        lv = np.maximum(np.asarray(levels_db, np.float64), self.threshold_db)
        return (1.0 / np.asarray(self.ratio) - 1.0) * (lv - np.asarray(self.reference_db))

    def process(self, x: np.ndarray, sample_rate: int, *, return_bands: bool = False
                ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compress ``x`` (float, nominal [-1, 1]); with ``return_bands`` also ``(bands_in, gains)``,
        each ``(bands, n)``: the crossover's band signals and the linear gain applied to each sample."""
        x = np.asarray(x, np.float64)
        if x.ndim != 1:
            raise ValueError(f"expected mono audio of shape (n,), got {x.shape}")
        bank = CrossoverBank(self.crossovers_hz, sample_rate)
        bands = bank.split(x)
        n = x.size
        frame = max(1, int(round(sample_rate * FRAME_MS / 1000)))
        ends = np.arange(frame, n + 1, frame)  # the frame k covers [ends[k] - frame, ends[k])
        if ends.size == 0:
            return (x.astype(np.float32), bands, np.ones_like(bands)) if return_bands else x.astype(np.float32)
        # Mean square over a window of max(1 ms, two periods of the band centre), causal, read at frame ends.
        csum = np.concatenate([np.zeros((bands.shape[0], 1)), np.cumsum(bands**2, axis=1)], axis=1)
        win = np.maximum(frame, np.round(2 * sample_rate / np.asarray(self.centres_hz)).astype(int))
        starts = np.maximum(ends[None, :] - win[:, None], 0)
        ms = (csum[np.arange(len(win))[:, None], ends[None, :]] - np.take_along_axis(csum, starts, axis=1)) \
            / np.maximum(ends[None, :] - starts, 1)
        level = self.calibration.rms_to_db_spl(np.sqrt(np.maximum(ms, 1e-20)))
        # Attack/release on the dB level, one step per frame.
        a_att = np.exp(-FRAME_MS / self.attack_ms)
        a_rel = np.exp(-FRAME_MS / self.release_ms)
        smooth = np.empty_like(level)
        cur = np.asarray(self.threshold_db, np.float64).copy()  # before the signal: silence
        for k in range(level.shape[1]):
            lk = level[:, k]
            a = np.where(lk > cur, a_att, a_rel)
            cur = a * cur + (1 - a) * lk
            smooth[:, k] = cur
        g_db = self.gain_db(smooth.T).T  # (bands, frames)
        # Frame k's gain is known at its last sample; the per-sample gain ramps to it over the next frame
        # (reaching it one frame later), so no sample's gain depends on a later sample.
        t = np.arange(n)
        g0 = self.gain_db(np.asarray(self.threshold_db, np.float64))  # the gain for silence, until frame 0 ends
        gains = np.stack([np.interp(t, ends - 1 + frame, 10 ** (g / 20), left=10 ** (g0[b] / 20)) for b, g in enumerate(g_db)])
        y = np.sum(bands * gains, axis=0).astype(np.float32)
        return (y, bands, gains) if return_bands else y


def wdrc_for(thresholds_db_hl: np.ndarray, **kw: object) -> WDRC:
    """The CAMFIT-fitted WDRC for an audiogram (8 thresholds, dB HL)."""
    return WDRC.from_camfit(camfit_fit(np.asarray(thresholds_db_hl, np.float64)), **kw)


__all__ = ["ATTACK_MS", "CAMFIT_CENTRES_HZ", "CrossoverBank", "RELEASE_MS", "WDRC", "wdrc_for"]
