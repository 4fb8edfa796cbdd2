"""``stftnet``: the Neuro-MSBG-style compensator, a larger fp32 teacher (seed 003 Sec. III-E).

Seed 003 trains its compensator with "the same architecture as Neuro-MSBG, but with a key
modification in the magnitude path: the original masking-based magnitude encoder is replaced by
a mapping strategy designed to enhance or restore lost information". So this is
:class:`toolchain.models.hearing.hlsim.HLSim` (STFT magnitude + phase + audiogram channel + bin level,
dual-path time/frequency blocks, parallel phase decoder) whose magnitude decoder outputs a gain
instead of a bounded mask: the compressed output magnitude is ``|X|^c · g`` with
``log g = c · G · tanh(logit)`` (linear gain up to ``±max_gain_db``), identity at initialisation.

It is a teacher, not a deployable model: centred STFT frames and symmetric time kernels look
ahead (about ``n_fft`` samples plus the kernels' reach), which a hearing aid cannot afford. The
causal SEANet student learns from it (:mod:`toolchain.train.distil`).

Contract of :mod:`toolchain.models.compensators.registry`: ``forward(x (B, 1, n), audiogram (B, 8)) → (B, 1, n)``
and ``fit(thresholds)`` returns a copy with the audiogram baked in (``forward(x)`` only).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from runtime.atomic import atomic_write
from toolchain.models.compensators.registry import CompensatorKind, register_compensator
from toolchain.models.hearing.hlsim import HLSim, HLSimConfig

KIND = "stftnet"


@dataclass(frozen=True)
class STFTNetConfig(HLSimConfig):
    """The simulator's hyper-parameters plus the gain range of the magnitude mapping."""

    channels: int = 32
    max_gain_db: float = 60.0   # |gain| bound; above ~60 dB a device only adds noise and feedback


class STFTNet(HLSim):
    """See the module docstring."""

    def __init__(self, config: STFTNetConfig | None = None) -> None:
        super().__init__(config or STFTNetConfig())
        # The mask's learnable sigmoid slope has no role in a gain mapping (an unused parameter
        # would also stall DDP, which waits for every parameter's gradient).
        del self.mask_slope
        self.register_buffer("fitted_audiogram", torch.full((8,), float("nan")))

    @property
    def is_fitted(self) -> bool:
        return bool(torch.isfinite(self.fitted_audiogram).all())

    def forward(self, x: Tensor, audiogram: Tensor | None = None) -> Tensor:  # type: ignore[override]
        squeeze = x.dim() == 3
        wave = x[:, 0] if squeeze else x
        if audiogram is None:
            if not self.is_fitted:
                raise ValueError("stftnet needs an audiogram (or fit() it to one first)")
            audiogram = self.fitted_audiogram.expand(wave.shape[0], -1)
        h, mag_in, cos_in, sin_in = self.encode(wave, audiogram)
        logit, ri = self.heads(h)                                                        # (B, F, T), (B, F, T, 2)
        bound = self.config.max_gain_db / 20.0 * math.log(10.0)                         # natural log
        mag = mag_in * torch.exp(self.config.compress * bound * torch.tanh(logit / bound))
        y = self.decode(ri, mag, cos_in, sin_in, wave.shape[-1]).wave
        return y[:, None] if squeeze else y

    def fit(self, thresholds_db_hl: np.ndarray | Tensor) -> "STFTNet":
        """A copy that uses ``thresholds_db_hl`` whenever ``forward`` gets no audiogram."""
        if self.is_fitted:
            raise ValueError("model is already fitted to an audiogram")
        fitted = copy.deepcopy(self).eval()
        fitted.fitted_audiogram.copy_(torch.as_tensor(np.asarray(thresholds_db_hl, np.float32)).reshape(8))
        return fitted


def save_stftnet(model: STFTNet, path: str, extra: dict[str, Any] | None = None) -> None:
    """Config + weights (+ training metadata) written atomically, with ``kind = "stftnet"``."""

    payload = {"kind": KIND, "config": model.config.to_dict(), "state_dict": model.state_dict(), "extra": extra or {}}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def _build(payload: Mapping[str, Any]) -> STFTNet:
    cfg = STFTNetConfig(**dict(payload["config"]))
    model = STFTNet(cfg)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


register_compensator(CompensatorKind(name=KIND, build=_build, sample_rate=lambda m: m.config.sample_rate,
                                     block_multiple=lambda m: 1))

__all__ = ["KIND", "STFTNet", "STFTNetConfig", "save_stftnet"]
