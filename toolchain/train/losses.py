"""Training losses: the compensator's, through a frozen hearing-loss model, and the simulator's (seed 003).

:func:`compensation_loss` weighs the terms a recipe's ``[loss]`` section (:class:`LossConfig`)
names, so every weight lives in the recipe; :func:`simulator_loss` is seed 003's eq. 9.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from runtime.config import strict_from_dict
from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.models.hearing.hl_filterbank import FilterbankHearingLoss


@dataclass(frozen=True)
class LossConfig:
    """Weights and parameters of :func:`compensation_loss` (a recipe's ``[loss]`` section)."""

    perceptual: float = 1.0
    spectral: float = 0.5
    limit: float = 10.0
    ucl: float = 1.0
    output_limit: float = 0.89            # full scale
    ucl_margin_db: float = 5.0
    spectral_ffts: tuple[int, ...] = (256, 512, 1024)
    spectral_range_db: float = 60.0
    # Int8 robustness (toolchain.train.quant_noise): weight per dB that the noise-injected forward
    # falls short of quant_noise_target_db below the output. 0 leaves it out (and saves its forward).
    quant_noise: float = 0.0
    quant_noise_target_db: float = 40.0
    # The term joins at this step: from step 0 it wins before there is any compensation to keep
    # (the pass-through is noise-free), and the network learns to do nothing.
    quant_noise_from_step: int = 0
    envelope: float = 0.0
    silence: float = 0.0
    # The limit term as the mean overshoot per sample (limit_penalty's per_sample form), for a
    # linear path whose loud-speech peaks start far above the limit and would swamp every other term.
    limit_per_sample: bool = False
    silence_target_db_spl: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spectral_ffts", tuple(int(n) for n in self.spectral_ffts))
        for name in ("perceptual", "spectral", "limit", "ucl", "ucl_margin_db", "quant_noise",
                     "quant_noise_from_step", "envelope", "silence"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.output_limit <= 1.0:
            raise ValueError(f"output_limit must be in (0, 1] full scale, got {self.output_limit}")
        if any(n < 16 for n in self.spectral_ffts):
            raise ValueError(f"spectral_ffts must be >= 16, got {self.spectral_ffts}")
        if self.spectral_range_db <= 0:
            raise ValueError(f"spectral_range_db must be positive, got {self.spectral_range_db}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LossConfig":
        return strict_from_dict(cls, d, where="loss config")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spectral_ffts"] = list(self.spectral_ffts)
        return d


def _flat(x: Tensor) -> Tensor:
    if x.dim() == 3 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 1:
        return x[None]
    return x


def limit_penalty(y: Tensor, output_limit: float = 0.89, *, per_sample: bool = False) -> Tensor:
    """Summed overshoot above ``output_limit`` per clip, averaged over the batch (0 within it).

    ``per_sample``: the mean over every sample instead, which does not grow with the clip length or
    with how many samples a gain step pushes over at once (the summed form's surges, under gradient
    clipping, threw a distilled teacher off its fitting).
    """
    over = torch.relu(_flat(y).abs() - output_limit)
    return over.mean() if per_sample else over.sum(dim=-1).mean()


def spectral_shape_loss(y: Tensor, clean: Tensor, ffts: tuple[int, ...] = (256, 512, 1024),
                        range_db: float = 60.0) -> Tensor:
    """Gain-invariant multi-resolution log-spectral distance where the clean signal is audible.

    Per STFT size, the log-magnitude ratio ``log|C| − log|S|`` has its per-frequency mean over
    time removed (a static, frequency-dependent gain is the compensator's job and costs
    nothing); the mean absolute remainder over bins within ``range_db`` of the clip's strongest
    bin penalises added noise, musical artefacts and smearing. Natural-log units (1 ≈ 8.7 dB).
    """
    y, clean = _flat(y), _flat(clean)
    total = y.new_zeros(())
    eps = 1e-10
    for n_fft in ffts:
        win = torch.hann_window(n_fft, device=y.device, dtype=y.dtype)

        def mag2(s: Tensor) -> Tensor:
            z = torch.stft(s, n_fft, hop_length=n_fft // 4, window=win, center=True,
                           pad_mode="constant", return_complex=True)
            return z.real.square() + z.imag.square()

        py, pc = mag2(y), mag2(clean)                                 # (B, bins, frames)
        ratio = 0.5 * (torch.log(py + eps) - torch.log(pc + eps))    # log-magnitude ratio
        # Bins within range_db of the clip's strongest bin count (a relative, not SPL, floor).
        ref = pc.flatten(1).amax(dim=1)[:, None, None]
        mask = (pc > ref * 10.0 ** (-range_db / 10.0)).to(y.dtype)
        w = mask.sum(dim=-1, keepdim=True).clamp(min=1.0)
        mean_gain = (ratio * mask).sum(dim=-1, keepdim=True) / w     # per-frequency static gain
        dev = (ratio - mean_gain).abs() * mask
        total = total + dev.sum(dim=(1, 2)).div(mask.sum(dim=(1, 2)).clamp(min=1.0)).mean()
    return total / max(len(ffts), 1)


def envelope_correlation(perceived: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean over clips and bands of the Pearson correlation over frames of two ``(B, bands, frames)``
    level maps; a band the target leaves flat (silent) counts for nothing rather than for noise.

    The envelope fidelity HASPI scores (Kates & Arehart, "The Hearing-Aid Speech Perception Index
    (HASPI) Version 2", Speech Commun. 131, 2021), differentiable as in DHASP (Tu, Ma & Barker,
    ICASSP 2021); level-invariant per band, so it rewards audibility and noise removal, not loudness.
    """
    p = perceived - perceived.mean(dim=-1, keepdim=True)
    t = target - target.mean(dim=-1, keepdim=True)
    tv = t.square().mean(dim=-1)
    corr = (p * t).mean(dim=-1) / torch.sqrt(p.square().mean(dim=-1) * tv + eps)
    weight = (tv > eps).to(corr.dtype)
    return (corr * weight).sum() / weight.sum().clamp(min=1.0)


def silence_penalty(y_silent: Tensor, target_db_spl: float) -> Tensor:
    """Mean over clips of the output level (dB SPL, the one calibration) above ``target_db_spl``."""
    power = _flat(y_silent).square().mean(dim=-1)
    level = DEFAULT_CALIBRATION.power_to_db_spl_tensor(power, floor_power=1e-14)
    return torch.relu(level - target_db_spl).mean()


def compensation_loss(
    hl_model: FilterbankHearingLoss,
    compensated: Tensor,
    clean: Tensor,
    audiogram: Tensor,
    config: LossConfig = LossConfig(),
    *,
    target: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """``(loss, parts)``: the weighted sum of these terms (weights: the :class:`LossConfig` fields of the same name).

    * ``perceptual``: mean absolute difference, in dB, between what the impaired ear perceives
      of the compensated signal, ``hl(compensated, audiogram)``, and what a normal ear
      perceives of the clean speech: the compensator's whole purpose (DESIGN.md, seed 003).
    * ``spectral``: :func:`spectral_shape_loss`, what is not a static gain (noise, artefacts).
    * ``limit``: :func:`limit_penalty` above ``output_limit``; the runtime limiter clips anyway,
      this teaches the network not to rely on it (maximum power output safety).
    * ``ucl``: mean over bands and frames of ``max(L − (UCL + ucl_margin_db), 0)`` dB, from the
      hearing-loss model's own band levels.
    * ``envelope``: ``1 −`` :func:`envelope_correlation` of the perceived and target band levels.

    ``quant_noise`` and ``silence`` (:func:`silence_penalty`) are added by the training loop,
    which owns the model. ``compensated`` and ``clean`` are ``(B, n)`` (or ``(B, 1, n)``)
    waveforms, ``audiogram`` ``(B, 8)`` dB HL. ``target`` may pass a precomputed
    ``hl_model.perceived_normal(clean)``. ``parts`` holds each unweighted term and the total as floats.
    """
    y, s = _flat(compensated), _flat(clean)
    if y.shape != s.shape:
        raise ValueError(f"compensated {tuple(y.shape)} and clean {tuple(s.shape)} differ in shape")
    a = audiogram.to(y.dtype).reshape(-1, len(AUDIOGRAM_FREQS_HZ))
    if target is None:
        with torch.no_grad():
            target = hl_model.perceived_normal(s)
    powers = hl_model.band_powers(y)
    if hl_model.config.broadening_per_db:
        powers = hl_model.spread(powers, hl_model.band_thresholds_db_spl(a))
    levels = hl_model.calibration.power_to_db_spl_tensor(powers, floor_power=hl_model.floor_power)
    perceived = hl_model.perceive(levels, a)
    perceptual = (perceived - target).abs().mean()

    zero = y.new_zeros(())
    spectral = spectral_shape_loss(y, s, config.spectral_ffts, config.spectral_range_db) \
        if config.spectral > 0 else zero
    limit = limit_penalty(y, config.output_limit, per_sample=config.limit_per_sample)
    ucl = torch.relu(levels - (hl_model.config.ucl_db_spl + config.ucl_margin_db)).mean()
    envelope = 1.0 - envelope_correlation(perceived, target) if config.envelope > 0 else zero
    loss = (config.perceptual * perceptual + config.spectral * spectral
            + config.limit * limit + config.ucl * ucl + config.envelope * envelope)
    parts = {"perceptual": float(perceptual.detach()), "spectral": float(spectral.detach()),
             "limit": float(limit.detach()), "ucl": float(ucl.detach()), "total": float(loss.detach())}
    if config.envelope > 0:
        parts["envelope"] = float(envelope.detach())
    return loss, parts


__all__ = ["LossConfig", "compensation_loss", "envelope_correlation", "limit_penalty", "silence_penalty",
           "spectral_shape_loss"]


# ---------------------------------------------------------------------------- simulator losses
# Seed 003 (Neuro-MSBG) Sec. II-B, after MP-SENet: magnitude MSE, anti-wrapped phase losses
# (instantaneous phase, group delay, instantaneous angular frequency), complex MSE and time L1.
@dataclass(frozen=True)
class SimLossConfig:
    """Weights λ of seed 003's total loss (eq. 9); defaults are MP-SENet's (0.9, 0.3, 0.1, 0.2)."""

    magnitude: float = 0.9
    phase: float = 0.3
    complex: float = 0.1
    time: float = 0.2

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"{name} weight must be >= 0, got {v!r}")


def anti_wrap(x: Tensor) -> Tensor:
    """``f_aw(x) = |x − 2π·round(x / 2π)|``: the distance to the nearest multiple of 2π."""
    return torch.abs(x - 2.0 * torch.pi * torch.round(x / (2.0 * torch.pi)))


def phase_losses(phase_ref: Tensor, phase_est: Tensor) -> dict[str, Tensor]:
    """Anti-wrapped IP, GD (difference along frequency) and IAF (along time) losses of
    ``(B, F, T)`` phase spectra; zero for identical phase and invariant to 2π wraps."""
    d = phase_ref - phase_est
    return {
        "ip": anti_wrap(d).mean(),
        "gd": anti_wrap(torch.diff(d, dim=1)).mean(),
        "iaf": anti_wrap(torch.diff(d, dim=2)).mean(),
    }


def simulator_loss(out: Any, target_mag: Tensor, target_phase: Tensor, target_complex: Tensor,
                   target_wave: Tensor, cfg: SimLossConfig = SimLossConfig()) -> tuple[Tensor, dict[str, float]]:
    """Seed 003 total loss of a :class:`toolchain.models.hearing.hlsim.SimOutput` against MSBG's output
    (compressed magnitude, phase, compressed complex, waveform). Returns ``(loss, parts)``."""
    mag = torch.mean((out.mag - target_mag) ** 2)
    ph = phase_losses(target_phase, out.phase)
    pha = ph["ip"] + ph["gd"] + ph["iaf"]
    com = 2.0 * torch.mean((out.complex - target_complex) ** 2)
    tim = torch.mean(torch.abs(out.wave - target_wave))
    total = cfg.magnitude * mag + cfg.phase * pha + cfg.complex * com + cfg.time * tim
    parts = {k: float(v.detach()) for k, v in
             {"total": total, "magnitude": mag, "phase": pha, "complex": com, "time": tim}.items()}
    return total, parts
