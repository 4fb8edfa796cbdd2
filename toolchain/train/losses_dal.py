"""DAL losses (seed 004): the impaired CARFAC's response to the device output vs the normal one's to clean speech.

Seed 004 trains SEANet by "comparing the outputs of a CARFAC model fitted to normal hearing with
that of a CARFAC model fitted to match each subject's individual hearing impairment", with "loss
functions derived from the respective CARFAC neural activity pattern (NAP) outputs and stabilized
auditory images (SAIs)". The seed's text (its abstract) names the two representations but not the
formulas, so these are ours, each zero exactly when the two ears respond alike:

``nap`` (weight ``nap``)
    Relative L1 between NAP envelopes: both NAPs (batch, channels, samples) average-pooled over
    ``nap_pool_ms`` (2 ms: the phase locking of low-CF channels is averaged out, so a compensator
    is not charged sample by sample for its few samples of delay or its phase response), then
    ``Σ|HI − NH| / Σ|NH|`` over the batch. Level, spectral balance and temporal envelope per place.
``sai`` (weight ``sai``)
    The same relative L1 between SAI frames (:func:`toolchain.models.hearing.carfac.sai`, 20 ms of lag,
    a 10 ms hop): the phase-insensitive temporal structure (periodicity, pitch) per place that
    seed 004 adds the SAI for.
``limit`` (weight ``limit``)
    Mean overshoot per sample above ``output_limit`` (:func:`toolchain.train.losses.limit_penalty`).
    The impaired ear hears the output clipped at the limit, as the runtime's limiter delivers it,
    so gain the device cannot deliver earns nothing in the cochlear terms.

The normal ear is CARFAC with its default (healthy) parameters; the impaired one is the same model
fitted to the audiogram (:mod:`toolchain.models.hearing.carfac_fit`). Both run in one batched pass: the
cost of CARFAC's per-sample loop hardly grows with the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolchain.models.hearing.carfac import Carfac, SaiParams, sai
from toolchain.models.hearing.carfac_fit import fit_audiogram_cached
from toolchain.train.losses import limit_penalty


@dataclass(frozen=True)
class DalLossConfig:
    """Weights and parameters of :class:`DalObjective` (a DAL recipe's ``[loss]`` section)."""

    nap: float = 1.0
    sai: float = 1.0
    limit: float = 30.0
    output_limit: float = 0.85          # full scale
    nap_pool_ms: float = 2.0            # NAP envelope window (and hop); 0 compares raw samples

    def __post_init__(self) -> None:
        for name in ("nap", "sai", "limit", "nap_pool_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.nap + self.sai <= 0:
            raise ValueError("nap and sai are both 0: the DAL loss needs at least one cochlear term")
        if not 0 < self.output_limit <= 1.0:
            raise ValueError(f"output_limit must be in (0, 1] full scale, got {self.output_limit}")


def nap_envelope(nap: Tensor, fs: float, pool_ms: float) -> Tensor:
    """NAP (batch, channels, n) average-pooled over ``pool_ms`` (window = hop); raw when 0."""
    k = int(round(pool_ms * 1e-3 * fs))
    return nap if k <= 1 else F.avg_pool1d(nap, k, k)


def relative_l1(test: Tensor, ref: Tensor, dims: tuple[int, ...] | None = None) -> Tensor:
    """``Σ|test − ref| / Σ|ref|`` (over ``dims``, all by default): 0 iff equal, 1 for silence vs ref."""
    d = (test - ref).abs()
    r = ref.abs()
    if dims is None:
        return d.sum() / r.sum().clamp(min=1e-12)
    return d.sum(dim=dims) / r.sum(dim=dims).clamp(min=1e-12)


def correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation per row of two (batch, ...) tensors (flattened)."""
    a = a.flatten(1) - a.flatten(1).mean(dim=1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(dim=1, keepdim=True)
    return (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1)).clamp(min=1e-20)


class CochlearEars(nn.Module):
    """A normal CARFAC and, per audiogram, its fitted impaired parameters (memoised fits)."""

    def __init__(self, fs: float) -> None:
        super().__init__()
        self.carfac = Carfac(float(fs))
        self.sai_params = SaiParams.for_rate(float(fs))

    @property
    def fs(self) -> float:
        return self.carfac.fs

    def impaired_parameters(self, audiograms: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """(ohc_health, ihc_gain), each (batch, n_ch) float64, for (batch, 8) audiograms in dB HL."""
        a = audiograms.detach().cpu().numpy() if isinstance(audiograms, Tensor) else np.asarray(audiograms)
        a = np.atleast_2d(a).astype(np.float64)
        ohc, ihc = [], []
        for row in a:
            if np.max(row) <= 0.0:      # no loss to fit: the healthy ear itself
                ohc.append(np.ones(self.carfac.n_ch))
                ihc.append(np.ones(self.carfac.n_ch))
                continue
            fit = fit_audiogram_cached(row, self.fs)
            ohc.append(fit.ohc_health)
            ihc.append(fit.ihc_gain)
        return torch.from_numpy(np.stack(ohc)), torch.from_numpy(np.stack(ihc))

    def naps(self, normal_in: Tensor, impaired_in: Tensor, audiograms: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """NH(normal_in) (no gradient) and HI(impaired_in) for each row's audiogram, in one pass.

        The row counts may differ (verify runs several conditions against one set of clean clips).
        """
        b = normal_in.shape[0]
        ohc, ihc = self.impaired_parameters(audiograms)
        ones = torch.ones(b, ohc.shape[1], dtype=ohc.dtype)
        x = torch.cat([normal_in.detach(), impaired_in], dim=0)
        nap = self.carfac(x, torch.cat([ones, ohc]).to(x.device), torch.cat([ones, ihc]).to(x.device))
        return nap[:b].detach(), nap[b:]

    def features(self, nap: Tensor, pool_ms: float, with_sai: bool = True) -> tuple[Tensor, Tensor | None]:
        """(NAP envelope, SAI frames or None) of a NAP (batch, channels, n)."""
        env = nap_envelope(nap, self.fs, pool_ms)
        return env, (sai(nap, self.sai_params) if with_sai else None)


class DalObjective:
    """``HI(clip(device(x)), audiogram) ≈ NH(clean)`` in NAP and SAI terms, plus the output limit."""

    def __init__(self, ears: CochlearEars, config: DalLossConfig) -> None:
        self.ears = ears
        self.config = config

    def __call__(self, y: Tensor, clean: Tensor, audiogram: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``(loss, parts)`` for device outputs ``y`` and ``clean`` (batch, n), audiograms (batch, 8)."""
        cfg = self.config
        if y.shape != clean.shape:
            raise ValueError(f"device output {tuple(y.shape)} and clean {tuple(clean.shape)} differ in shape")
        heard = y.clamp(-cfg.output_limit, cfg.output_limit)
        nh, hi = self.ears.naps(clean, heard, audiogram)
        with_sai = cfg.sai > 0
        env_nh, sai_nh = self.ears.features(nh, cfg.nap_pool_ms, with_sai)
        env_hi, sai_hi = self.ears.features(hi, cfg.nap_pool_ms, with_sai)
        zero = y.new_zeros(())
        nap_term = relative_l1(env_hi, env_nh) if cfg.nap > 0 else zero
        sai_term = relative_l1(sai_hi, sai_nh) if with_sai else zero
        lim = limit_penalty(y, cfg.output_limit, per_sample=True)
        total = cfg.nap * nap_term + cfg.sai * sai_term + cfg.limit * lim
        parts = {"nap": float(nap_term.detach()), "sai": float(sai_term.detach()), "limit": float(lim.detach()),
                 "total": float(total.detach())}
        return total, parts


__all__ = ["CochlearEars", "DalLossConfig", "DalObjective", "correlation", "nap_envelope", "relative_l1"]
