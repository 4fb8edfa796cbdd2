"""Quantisation-noise robustness: train the compensator so that its int8 graph tracks its fp32 self.

Full-integer int8 gives every activation tensor 256 levels over its calibrated range. What that
costs at the output is not the grid alone but how much the network *amplifies* the grid's error:
the first default compensator's last PReLU carried a large positive mean that its output conv
cancelled (8 channels, rms 0.79, summed to an output of rms 0.09), so errors that were 33 dB
below every internal signal came out 14 dB below the output (per-layer drift report).

:func:`activation_noise` adds, to the output of every conv, transposed conv, activation and
residual add, uniform noise one quantisation step wide: ``(max − min) / 255`` of that tensor over
each clip (the grid of a per-tensor calibration for that clip's audiogram; the step is detached, so the
network cannot shrink it by gradient). :func:`quant_noise_loss` compares the noisy output with the
clean forward and penalises each clip's SNR below a target with a hinge, in dB. Scaling a tensor
and the next layer's weights inversely changes nothing (the step scales with the range), so the
only way down this loss is fewer cancellations and fewer outliers: the noise gain itself.

Input and output are left clean: the int8 input grid is the same for the fp32 reference in
the manifest's same-input figure, and the output grid cannot be trained away.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from toolchain.models.compensators.seanet import ResidualUnit
from toolchain.models.compensators.streaming import CausalConv1d, CausalConvTranspose1d

# Modules whose outputs become int8 tensors in the exported graph (ResidualUnit: its ADD).
_NOISY_ACTIVATIONS = (nn.PReLU, nn.LeakyReLU, nn.ELU)


def _noisy_module(m: nn.Module) -> bool:

    return isinstance(m, (CausalConv1d, CausalConvTranspose1d, ResidualUnit) + _NOISY_ACTIVATIONS)


def quant_step(t: Tensor, levels: int = 256) -> Tensor:
    """One step of a per-tensor asymmetric grid over each example's range (detached, ``(B, 1, ..)``).

    Per example, because every fitted bundle is calibrated for its own audiogram: a batch mixing
    normal and severe losses must not give the normal ones the severe ones' grid.
    """
    t = t.detach()
    flat = t.reshape(t.shape[0], -1)
    # The converter's range always includes 0 (a representable zero point).
    span = flat.amax(dim=1).clamp(min=0.0) - flat.amin(dim=1).clamp(max=0.0)
    return (span / (levels - 1)).reshape((-1,) + (1,) * (t.dim() - 1))


@contextmanager
def activation_noise(model: nn.Module, levels: int = 256) -> Iterator[int]:
    """Within the block, every quantised module of ``model`` adds one step of uniform noise.

    Yields the number of hooked modules. Noise comes from torch's global generator, so a seeded
    run stays deterministic.
    """
    def hook(_m: nn.Module, _inp: tuple, out: Tensor) -> Tensor:
        return out + (torch.rand_like(out) - 0.5) * quant_step(out, levels)

    # The audiogram encoder runs on the host at fitting time; it is not in the int8 graph.
    handles = [m.register_forward_hook(hook) for name, m in model.named_modules()
               if _noisy_module(m) and not name.startswith("audiogram_encoder")]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def noise_snr_db(reference: Tensor, clean: Tensor, noisy: Tensor) -> Tensor:
    """Per example 10·log10(Σ reference² / Σ (noisy − clean)²), shape ``(B,)``."""
    b = reference.shape[0]
    err = (noisy - clean).reshape(b, -1).pow(2).sum(dim=1).clamp(min=1e-20)
    return 10.0 * torch.log10(reference.reshape(b, -1).pow(2).sum(dim=1).clamp(min=1e-20) / err)


def quant_noise_loss(model: nn.Module, x: Tensor, audiogram: Tensor | None, y: Tensor, target_db: float,
                     levels: int = 256) -> tuple[Tensor, float]:
    """``(mean over clips of max(target_db − SNR, 0), mean SNR)``: the noise-injected forward's
    error in dB below ``y``, per clip, so quiet and loud clips and mild and severe losses count alike.

    ``y`` is the clean forward ``model(x, audiogram)``. The reference power is ``y`` less its
    per-clip mean, *detached*: a reference the gradient can move is cheaper to inflate than the
    noise is to lower (trials: a DC offset of −0.59 full scale, or +45 dB above 4 kHz, both
    inaudible to the hearing-loss model's loss), while against the input ``x`` the network lowers
    its gain instead, which undoes the compensation. Detached, the only way down is less noise at
    the same output, and since the step of every tensor scales with its range, louder internal
    signals are no way out either.
    """
    ref = (y - y.mean(dim=-1, keepdim=True)).detach()
    with activation_noise(model, levels):
        y_noisy = model(x, audiogram)
    snr = noise_snr_db(ref, y, y_noisy.reshape(y.shape))
    return torch.relu(target_db - snr).mean(), float(snr.detach().mean())


__all__ = ["activation_noise", "noise_snr_db", "quant_noise_loss", "quant_step"]
