"""A small differentiable hearing-loss model: filterbank, elevated thresholds, loudness recruitment.

The compensator is trained so that ``HL(compensated, audiogram) ≈ NH(clean)``; this module is
``HL`` (and, with an all-zero audiogram, ``NH``): a cheap, batched, differentiable stand-in
for the Neuro-MSBG simulator (DESIGN.md, seed 003).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runtime.config import strict_from_dict
from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ
from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration

# Reference equivalent threshold sound pressure levels for free-field listening (frontal
# incidence, binaural), dB SPL for 0 dB HL at the audiogram frequencies 250..8000 Hz.
# Approximate values of ISO 389-7:2005 (250 Hz 11.4, 500 Hz 4.4, 1 kHz 2.4, 2 kHz -1.3,
# 3 kHz -5.8, 4 kHz -5.4, 6 kHz 4.3, 8 kHz 12.6).
ISO389_7_FREE_FIELD_DB_SPL: tuple[float, ...] = (11.4, 4.4, 2.4, -1.3, -5.8, -5.4, 4.3, 12.6)


def erb_number(f_hz: np.ndarray | float) -> np.ndarray:
    """ERB-number (Cams) of a frequency, Glasberg & Moore (1990): 21.4·log10(1 + 0.00437 f)."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f_hz, dtype=np.float64))


def erb_number_to_hz(e: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`erb_number`."""
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) / 0.00437


def log_frequency_interp_matrix(freqs_hz: np.ndarray) -> np.ndarray:
    """``(len(freqs), 8)`` weights: audiogram values → values at ``freqs_hz``.

    Linear in dB over log2 frequency between the audiogram frequencies, flat outside them
    (the same rule as ``Audiogram.at_frequencies``), as a matrix so it batches as a matmul.
    """
    f = np.asarray(freqs_hz, dtype=np.float64).reshape(-1)
    if np.any(~np.isfinite(f)) or np.any(f <= 0):
        raise ValueError("frequencies must be finite and > 0 Hz for interpolation")
    xp = np.log2(np.asarray(AUDIOGRAM_FREQS_HZ, dtype=np.float64))
    x = np.clip(np.log2(f), xp[0], xp[-1])
    hi = np.clip(np.searchsorted(xp, x, side="right"), 1, len(xp) - 1)
    lo = hi - 1
    t = (x - xp[lo]) / (xp[hi] - xp[lo])
    w = np.zeros((f.size, len(xp)), dtype=np.float64)
    rows = np.arange(f.size)
    w[rows, lo] += 1.0 - t
    w[rows, hi] += t
    return w


@dataclass(frozen=True)
class FilterbankHLConfig:
    """Parameters of :class:`FilterbankHearingLoss` (a recipe's ``[hl]`` section)."""

    sample_rate: int = 16000
    n_fft: int = 512                     # 32 ms Hann window: ≥ 1 FFT bin per band down to 80 Hz
    hop: int = 128                       # 8 ms frames
    n_bands: int = 28                    # ERB-spaced (≈ 1.05 Cam apart for 80 Hz..7.5 kHz)
    f_min_hz: float = 80.0
    f_max_hz: float = 7500.0
    ucl_db_spl: float = 105.0            # uncomfortable level: impaired and normal loudness meet
    # dB SPL of 0 dB HL at AUDIOGRAM_FREQS_HZ (threshold in quiet of the normal ear)
    threshold_in_quiet_db_spl: tuple[float, ...] = ISO389_7_FREE_FIELD_DB_SPL
    softness_db: float = 5.0             # τ: width of the soft audibility floor, dB of input level
    min_dynamic_range_db: float = 10.0   # thresholds are capped this far below the UCL
    floor_db_spl: float = -20.0          # band levels are floored here (silence is finite)
    broadening_per_db: float = 0.0       # extra spread (Cams, Gaussian sigma) per dB of loss

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold_in_quiet_db_spl",
                           tuple(float(v) for v in self.threshold_in_quiet_db_spl))
        if len(self.threshold_in_quiet_db_spl) != len(AUDIOGRAM_FREQS_HZ):
            raise ValueError(f"threshold_in_quiet_db_spl needs {len(AUDIOGRAM_FREQS_HZ)} values "
                             f"(dB SPL at {list(AUDIOGRAM_FREQS_HZ)} Hz), got {len(self.threshold_in_quiet_db_spl)}")
        if self.sample_rate <= 0 or self.n_fft <= 0 or self.hop <= 0 or self.n_bands < 2:
            raise ValueError("sample_rate, n_fft and hop must be positive and n_bands >= 2")
        if self.hop > self.n_fft:
            raise ValueError(f"hop {self.hop} is longer than n_fft {self.n_fft}")
        if not 0 < self.f_min_hz < self.f_max_hz <= self.sample_rate / 2:
            raise ValueError(f"need 0 < f_min_hz < f_max_hz <= Nyquist, got {self.f_min_hz}, {self.f_max_hz}")
        if self.softness_db <= 0 or self.min_dynamic_range_db <= 0:
            raise ValueError("softness_db and min_dynamic_range_db must be positive")
        if self.broadening_per_db < 0:
            raise ValueError(f"broadening_per_db must be >= 0, got {self.broadening_per_db}")
        if max(self.threshold_in_quiet_db_spl) >= self.ucl_db_spl - self.min_dynamic_range_db:
            raise ValueError("the threshold in quiet must lie below ucl_db_spl - min_dynamic_range_db")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FilterbankHLConfig":
        return strict_from_dict(cls, d, where="FilterbankHLConfig")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threshold_in_quiet_db_spl"] = list(self.threshold_in_quiet_db_spl)
        return d


class FilterbankHearingLoss(nn.Module):
    """``forward(x (B, n), audiogram_db_hl (B, 8)) → (B, bands, frames)`` perceived level (dB).

    The model, per batch item (batched tensor maths, differentiable in the waveform and the audiogram):

    1. **Spectrum.** ``torch.stft`` (Hann window, ``n_fft``, ``hop``), scaled so that the one-sided
       bin powers of a frame sum to the mean square of the signal (Parseval, window-corrected).
    2. **Bands.** Triangular filters equally spaced on the ERB-number scale (Glasberg & Moore 1990)
       between ``f_min_hz`` and ``f_max_hz``; between the first and last centre they sum to one, so a
       tone at a band centre keeps its full power in that band. Optionally the filters broaden with
       hearing loss (``broadening_per_db``: a spread of band power to neighbouring bands, a crude
       model of the wider auditory filters of a damaged cochlea).
    3. **Levels.** Band powers → dB SPL through :mod:`toolchain.audio.levels` (the project's one
       calibration), floored at ``floor_db_spl`` so gradients stay finite.
    4. **Thresholds.** ``T = T0 + HL``: the audiogram (dB HL at the 8 standard frequencies) is
       interpolated linearly in dB over log2 frequency (flat outside 250..8000 Hz, exactly as
       :meth:`toolchain.audio.audiogram.Audiogram.at_frequencies`) and added to the threshold in
       quiet ``T0`` (reference thresholds, dB HL → dB SPL). ``T`` is capped ``min_dynamic_range_db``
       below the uncomfortable level ``UCL``.
    5. **Recruitment and audibility.** The impaired ear maps its residual dynamic range ``[T, UCL]``
       onto the normal one ``[T0, UCL]``: the perceived level (dB above threshold, in normal-ear
       units) is ``P = r · τ · softplus((L − T) / τ)`` with ``r = (UCL − T0) / (UCL − T)``. Above
       threshold loudness grows ``r`` times faster than for a normal ear (recruitment); below it the
       softplus makes sounds (softly) inaudible, with softness ``τ`` dB. The softness is applied to
       the input level (not to ``r·(L − T)``) so that a sound 20 dB below an elevated threshold
       still gets a usable gradient. For an all-zero audiogram ``T = T0``, ``r = 1`` and ``P`` is the
       normal-hearing sensation level ``τ · softplus((L − T0) / τ)``.

    The module has no trainable parameters; its filterbank, window and interpolation weights
    are buffers (they follow ``.to(device)``).
    """

    def __init__(self, config: FilterbankHLConfig = FilterbankHLConfig(),
                 calibration: LevelCalibration = DEFAULT_CALIBRATION) -> None:
        super().__init__()
        self.config = config
        self.calibration = calibration
        c = config
        bins = np.arange(c.n_fft // 2 + 1) * c.sample_rate / c.n_fft
        centres_e = np.linspace(erb_number(c.f_min_hz), erb_number(c.f_max_hz), c.n_bands)
        spacing = float(centres_e[1] - centres_e[0])
        fb = np.clip(1.0 - np.abs(erb_number(bins)[None, :] - centres_e[:, None]) / spacing, 0.0, None)
        empty = np.flatnonzero(fb.sum(axis=1) == 0)
        if empty.size:
            raise ValueError(f"bands {empty.tolist()} contain no FFT bin: raise n_fft, f_min_hz or lower n_bands")
        self.band_spacing_cams = spacing
        self.centre_freqs_hz = erb_number_to_hz(centres_e)
        window = torch.hann_window(c.n_fft, periodic=True, dtype=torch.float64)
        # One-sided bin powers that sum to the mean square of the (unwindowed) signal.
        scale = np.full(bins.size, 2.0)
        scale[0] = 1.0
        if c.n_fft % 2 == 0:
            scale[-1] = 1.0
        scale /= c.n_fft**2 * float(window.pow(2).mean())
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("filters", torch.tensor(fb * scale[None, :], dtype=torch.float32), persistent=False)
        interp = torch.tensor(log_frequency_interp_matrix(self.centre_freqs_hz), dtype=torch.float32)
        self.register_buffer("interp", interp, persistent=False)  # (bands, 8)
        t0 = interp @ torch.tensor(c.threshold_in_quiet_db_spl, dtype=torch.float32)
        self.register_buffer("threshold_in_quiet", t0, persistent=False)  # (bands,) dB SPL
        self.floor_power = float(calibration.db_spl_to_power(c.floor_db_spl))

    # ------------------------------------------------------------------ stages
    @property
    def n_bands(self) -> int:
        return self.config.n_bands

    def num_frames(self, n: int) -> int:
        """Frames for a signal of ``n`` samples (centred STFT)."""
        return 1 + n // self.config.hop

    def band_powers(self, x: Tensor) -> Tensor:
        """Mean-square power per band and frame, ``(B, bands, frames)``, full-scale units."""
        x = _as_batch(x)
        c = self.config
        spec = torch.stft(x, c.n_fft, hop_length=c.hop, win_length=c.n_fft, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()          # (B, bins, frames)
        return torch.einsum("kf,bft->bkt", self.filters, power)

    def band_levels_db_spl(self, x: Tensor) -> Tensor:
        """Band levels in dB SPL (floored at ``floor_db_spl``), ``(B, bands, frames)``."""
        return self.calibration.power_to_db_spl_tensor(self.band_powers(x), floor_power=self.floor_power)

    def band_thresholds_db_spl(self, audiogram_db_hl: Tensor) -> Tensor:
        """Impaired thresholds per band, ``(B, bands)`` dB SPL (capped below the UCL)."""
        a = audiogram_db_hl.to(self.interp.dtype).reshape(-1, len(AUDIOGRAM_FREQS_HZ))
        t = self.threshold_in_quiet + a @ self.interp.T
        return t.clamp(max=self.config.ucl_db_spl - self.config.min_dynamic_range_db)

    def thresholds_db_spl(self, audiogram_db_hl: Tensor, freqs_hz: Any) -> Tensor:
        """Impaired thresholds (uncapped) at arbitrary frequencies, ``(B, len(freqs))`` dB SPL."""
        w = torch.tensor(log_frequency_interp_matrix(np.asarray(freqs_hz)), dtype=torch.float32,
                         device=self.interp.device)
        a = audiogram_db_hl.to(torch.float32).reshape(-1, len(AUDIOGRAM_FREQS_HZ))
        return (a + torch.tensor(self.config.threshold_in_quiet_db_spl, device=a.device)) @ w.T

    def spread(self, powers: Tensor, thresholds: Tensor) -> Tensor:
        """Broadened auditory filters: band powers smeared over neighbours by the loss (dB)."""
        if self.config.broadening_per_db == 0.0:
            return powers
        loss_db = (thresholds - self.threshold_in_quiet).clamp(min=0.0)             # (B, bands)
        sigma = self.config.broadening_per_db * loss_db / self.band_spacing_cams       # bands
        idx = torch.arange(self.n_bands, device=powers.device, dtype=powers.dtype)
        d2 = (idx[None, :] - idx[:, None]).square()                                   # (i, j)
        kernel = torch.exp(-0.5 * d2[None] / (sigma[:, :, None].square() + 1e-6))     # (B, i, j)
        kernel = kernel / kernel.sum(dim=-1, keepdim=True)
        return torch.einsum("bij,bjt->bit", kernel, powers)

    def perceive(self, levels_db_spl: Tensor, audiogram_db_hl: Tensor) -> Tensor:
        """Recruitment + soft audibility floor on band levels ``(B, bands, frames)``."""
        c = self.config
        t = self.band_thresholds_db_spl(audiogram_db_hl)[:, :, None]
        t0 = self.threshold_in_quiet[None, :, None]
        r = (c.ucl_db_spl - t0) / (c.ucl_db_spl - t)
        tau = c.softness_db
        return r * tau * F.softplus((levels_db_spl - t) / tau)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, audiogram_db_hl: Tensor) -> Tensor:
        x = _as_batch(x)
        a = audiogram_db_hl.to(x.dtype).reshape(-1, len(AUDIOGRAM_FREQS_HZ))
        if a.shape[0] != x.shape[0]:
            raise ValueError(f"batch of {x.shape[0]} signals but {a.shape[0]} audiograms")
        powers = self.band_powers(x)
        if self.config.broadening_per_db:
            powers = self.spread(powers, self.band_thresholds_db_spl(a))
        levels = self.calibration.power_to_db_spl_tensor(powers, floor_power=self.floor_power)
        return self.perceive(levels, a)

    def perceived_normal(self, x: Tensor) -> Tensor:
        """Normal-hearing perception: :meth:`forward` with an all-zero (0 dB HL) audiogram."""
        x = _as_batch(x)
        return self(x, torch.zeros(x.shape[0], len(AUDIOGRAM_FREQS_HZ), dtype=x.dtype, device=x.device))


def _as_batch(x: Tensor) -> Tensor:
    """``(n,)``, ``(B, n)`` or ``(B, 1, n)`` → ``(B, n)``."""
    if x.dim() == 1:
        return x[None]
    if x.dim() == 3 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() != 2:
        raise ValueError(f"expected a waveform of shape (B, n), got {tuple(x.shape)}")
    return x


__all__ = ["FilterbankHLConfig", "FilterbankHearingLoss", "ISO389_7_FREE_FIELD_DB_SPL",
           "erb_number", "erb_number_to_hz", "log_frequency_interp_matrix"]
