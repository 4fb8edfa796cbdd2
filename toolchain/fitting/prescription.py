"""The classic prescription as a causal, minimum-phase FIR: the compensator's linear path.

NAL-R (Byrne & Dillon, "The National Acoustic Laboratories' (NAL) new procedure for selecting the
gain and frequency response of a hearing aid", Ear Hear. 7(4), 1986) gives an insertion gain per
audiometric frequency; pyclarity's ``NALR`` (the Clarity challenges' baseline) realises it as a
linear-phase FIR whose half-length delay (~7 ms at 220 taps) is far beyond a 1 ms hearing aid.
A minimum-phase FIR with the same magnitude puts its energy in the first samples instead, so the
device adds no delay beyond its block (DESIGN.md: the classic fitting is the starting point).
"""

from __future__ import annotations

import numpy as np

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ

#: NAL-R's audiometric frequencies and per-frequency constants k(f), as pyclarity's NALR uses them.
NALR_FREQS_HZ = np.array([250.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0])
NALR_BIAS_DB = np.array([-17.0, -8.0, 1.0, -1.0, -2.0, -2.0])
#: FFT grid the minimum-phase design works on (fine enough that cepstral aliasing is negligible).
DESIGN_NFFT = 4096


def nalr_gains_db(thresholds_db_hl: np.ndarray) -> np.ndarray:
    """NAL-R insertion gains (dB) at :data:`NALR_FREQS_HZ` for 8 thresholds at the audiogram frequencies.

    Same rule as pyclarity's ``NALR.build``: the 500-1000-2000 Hz sum sets a common term
    (0.05 per dB up to 180 dB, then 9 + 0.116 per dB, the NAL-RP extension for severe losses),
    plus 0.31 of the threshold and the frequency constant, floored at 0 dB.
    """
    hl = np.interp(np.log(NALR_FREQS_HZ), np.log(AUDIOGRAM_FREQS_HZ), np.asarray(thresholds_db_hl, np.float64))
    if np.max(hl) <= 0:
        return np.zeros_like(NALR_FREQS_HZ)
    critical = hl[1] + hl[2] + hl[3]
    x_ave = 0.05 * critical if critical <= 180 else 9.0 + 0.116 * (critical - 180)
    return np.clip(x_ave + 0.31 * hl + NALR_BIAS_DB, 0.0, None)


def nalr_response_db(thresholds_db_hl: np.ndarray, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """The NAL-R target magnitude (dB) at ``freqs_hz``: gains interpolated linearly in Hz between the
    NAL-R frequencies and held flat below the first and above the last (as pyclarity designs it)."""
    g = nalr_gains_db(thresholds_db_hl)
    f_ext = np.concatenate(([0.0], NALR_FREQS_HZ, [sample_rate / 2.0]))
    g_ext = np.concatenate(([g[0]], g, [g[-1]]))
    return np.interp(np.asarray(freqs_hz, np.float64), f_ext, g_ext)


def minimum_phase_fir(magnitude_db: np.ndarray, taps: int) -> np.ndarray:
    """A ``taps``-long minimum-phase FIR whose magnitude approximates ``magnitude_db``.

    ``magnitude_db`` samples the target on the rfft grid of :data:`DESIGN_NFFT` (0..Nyquist). The
    homomorphic (real-cepstrum) construction folds the cepstrum of the *target* log magnitude, so
    the result has the target's magnitude itself (``scipy.signal.minimum_phase`` starts from a
    linear-phase filter and returns its square root). The truncation is then tapered by a half
    Hann over the last quarter so the cut does not ripple the response.
    """
    n = DESIGN_NFFT
    if magnitude_db.shape != (n // 2 + 1,):
        raise ValueError(f"magnitude_db must have {n // 2 + 1} points (rfft grid of {n}), got {magnitude_db.shape}")
    if not 1 <= taps <= n // 4:
        raise ValueError(f"taps must be 1..{n // 4}, got {taps}")
    log_mag = magnitude_db * (np.log(10.0) / 20.0)
    cep = np.fft.irfft(log_mag, n)
    fold = np.zeros(n)
    fold[0] = cep[0]
    fold[1:n // 2] = 2.0 * cep[1:n // 2]
    fold[n // 2] = cep[n // 2]
    h = np.fft.irfft(np.exp(np.fft.rfft(fold)), n)[:taps]
    tail = max(taps // 4, 1)
    h[taps - tail:] *= np.cos(0.5 * np.pi * (np.arange(tail) + 1) / (tail + 1)) ** 2
    return h.astype(np.float64)


def nalr_fir(thresholds_db_hl: np.ndarray, sample_rate: int, taps: int) -> np.ndarray:
    """The minimum-phase NAL-R FIR for an audiogram (8 thresholds in dB HL), ``taps`` long."""
    freqs = np.fft.rfftfreq(DESIGN_NFFT, 1.0 / sample_rate)
    return minimum_phase_fir(nalr_response_db(thresholds_db_hl, freqs, sample_rate), taps)


def fir_response_db(h: np.ndarray, freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Magnitude (dB) of FIR ``h`` at ``freqs_hz``."""
    w = 2.0 * np.pi * np.asarray(freqs_hz, np.float64) / sample_rate
    z = np.exp(-1j * np.outer(w, np.arange(len(h)))) @ h
    return 20.0 * np.log10(np.maximum(np.abs(z), 1e-12))
