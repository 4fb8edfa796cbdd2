"""Causal SEANet-style waveform compensator with FiLM audiogram conditioning.

Seed 004 (DAL) fine-tunes SEANet, "a waveform-to-waveform fully convolutional UNet
generator", as the hearing-aid network; this is its causal, hearing-aid-sized form:
conv encoder with small strides and residual units (PReLU by default, see ``activation``), a bottleneck, a transposed-conv
decoder with U-Net skips, and an input skip so an untrained network is a pass-through.
The audiogram (8 thresholds, the vector Neuro-MSBG conditions on, seed 003) drives per-channel
FiLM terms; :meth:`SEANet.fit` folds them into the weights for a fitted device.

Latency: the product of strides ``S`` bounds it. Output frame ``t`` of the deepest level
needs input up to the end of its frame, so a block must hold a multiple of ``S`` samples and the
model adds no delay beyond the block itself (DESIGN.md: ``S`` ≤ 16 at 16 kHz, i.e. 1 ms).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runtime.atomic import atomic_write
from runtime.config import strict_from_dict
from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ
from toolchain.fitting.prescription import nalr_fir
from toolchain.models.compensators.streaming import CausalConv1d, CausalConvTranspose1d, StreamingGraph


@dataclass(frozen=True)
class SEANetConfig:
    """Architecture of the compensator. Defaults are the shipped hearing-aid student."""

    sample_rate: int = 16000
    channels: int = 8                    # channels at full rate; doubled after each downsampling
    strides: tuple[int, ...] = (2, 2, 4)  # product 16 → 1 ms at 16 kHz
    max_channels: int = 48
    kernel_size: int = 7                 # input / output convs (SEANet uses 7)
    residual_kernel: int = 3             # SEANet residual unit: kernel 3, hidden = dim / compress
    residual_compress: int = 2
    bottleneck_units: int = 1
    audiogram_hidden: int = 32
    input_skip: bool = True
    # skip_taps > 0: the input skip is a short linear filter bank instead of the identity, a causal
    # conv of skip_taps taps into skip_channels FiLM-scaled channels, summed by a 1x1 conv; after
    # fit() a fixed, audiogram-specific FIR. The frequency-dependent gain (the bulk of a
    # prescription, +10..+25 dB) then needs no trip through the nonlinear trunk, whose int8
    # noise it would amplify (toolchain/train/quant_noise.py).
    skip_taps: int = 0
    skip_channels: int = 4
    # prescription = "nalr": the skip is not learnt but is the classic fitting itself, the
    # minimum-phase NAL-R FIR of the audiogram (toolchain/fitting/prescription.py), so the network
    # is the prescription plus a learned correction and starts as exactly the prescription.
    # Fitted, the FIR is split over 2 skip channels, the FIR and what int8 rounding of it leaves
    # (residual quantisation): per-channel int8 weights alone hold a 48-tap FIR to ~38 dB.
    prescription: str = "none"
    # SEANet uses ELU, but TFLite's converter leaves ELU in float (DEQUANTIZE/ELU/QUANTIZE);
    # PReLU (DESIGN.md: "ELU/PReLU") has a full-integer kernel, so it is the deployable default.
    activation: str = "prelu"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        if any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be >= 1, got {self.strides}")
        if self.skip_taps < 0 or self.skip_channels < 1:
            raise ValueError(f"skip_taps must be >= 0 and skip_channels >= 1, got {self.skip_taps}, {self.skip_channels}")
        if self.skip_taps and not self.input_skip:
            raise ValueError("skip_taps needs input_skip = true")
        if self.prescription not in PRESCRIPTIONS:
            raise ValueError(f"prescription {self.prescription!r}; expected one of {list(PRESCRIPTIONS)}")
        if self.prescription != "none" and (not self.skip_taps or self.skip_channels != 2):
            raise ValueError("prescription needs skip_taps > 0 and skip_channels = 2 (the FIR and its int8 residual)")
        if self.skip_taps and self.skip_taps != self.kernel_size:
            # Both convs then keep the same input history, which calibrates to the same range, so
            # the converter gives the input one scale; otherwise it inserts a QUANTIZE
            # (requantise) op for one of them, which the C kernel does not implement.
            raise ValueError(f"skip_taps {self.skip_taps} must equal kernel_size {self.kernel_size} (or be 0)")

    @property
    def total_stride(self) -> int:
        return int(math.prod(self.strides))

    def level_channels(self) -> list[int]:
        chans = [self.channels]
        for _ in self.strides:
            chans.append(min(chans[-1] * 2, self.max_channels))
        return chans

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SEANetConfig":
        return strict_from_dict(cls, d, where="SEANet config")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strides"] = list(self.strides)
        if d["prescription"] == "none":
            del d["prescription"]  # checkpoints written before the field existed stay comparable
        return d


ACTIVATIONS = ("prelu", "elu", "leaky_relu")
PRESCRIPTIONS = ("none", "nalr")
INT8_QMAX = 127  # symmetric per-channel int8 weights, as TFLite's converter quantises them


def int8_weight_round(w: np.ndarray) -> np.ndarray:
    """``w`` after TFLite's symmetric per-channel int8 weight quantisation (one channel)."""
    scale = np.float32(np.max(np.abs(w)) / INT8_QMAX)
    if scale == 0:
        return np.zeros_like(w)
    return (np.round(w.astype(np.float32) / scale) * scale).astype(w.dtype)


def make_activation(kind: str, channels: int) -> nn.Module:
    """The activation layer of the configured kind (PReLU learns one slope per channel)."""
    if kind == "prelu":
        return nn.PReLU(channels, init=0.25)
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2)
    return nn.ELU()


class _FilmCounter:
    """Hands out consecutive FiLM slices while the network is built."""

    def __init__(self) -> None:
        self.total = 0

    def take(self, channels: int) -> int:
        offset = self.total
        self.total += 2 * channels
        return offset


class ResidualUnit(nn.Module):
    """SEANet residual unit: ``x + conv1x1(act(conv_k(act(x))))`` with FiLM on the 1x1 conv."""

    def __init__(self, dim: int, kernel: int, compress: int, film: _FilmCounter | None, activation: str = "prelu") -> None:
        super().__init__()
        hidden = max(dim // compress, 1)
        self.act1 = make_activation(activation, dim)
        self.conv1 = CausalConv1d(dim, hidden, kernel)
        self.act2 = make_activation(activation, hidden)
        self.conv2 = CausalConv1d(hidden, dim, 1, film_offset=None if film is None else film.take(dim))

    def forward(self, x: Tensor, film: Tensor | None = None) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))), film)


class SEANet(nn.Module):
    """The compensator. ``forward(x, audiogram)`` maps ``(B, 1, n)`` waveforms to ``(B, 1, n)``.

    ``audiogram`` is ``(B, 8)`` thresholds in dB HL (scaled by 1/100 inside). Pass ``None`` for a
    fitted model (FiLM folded in by :meth:`fit`), which is what gets exported and streamed.
    """

    def __init__(self, config: SEANetConfig = SEANetConfig()) -> None:
        super().__init__()
        self.config = config
        film = _FilmCounter()
        ch = config.level_channels()
        k, rk, rc, a = config.kernel_size, config.residual_kernel, config.residual_compress, config.activation
        self.in_conv = CausalConv1d(1, ch[0], k, film_offset=film.take(ch[0]))
        self.enc_res = nn.ModuleList()
        self.enc_act = nn.ModuleList()
        self.down = nn.ModuleList()
        for i, s in enumerate(config.strides):
            self.enc_res.append(ResidualUnit(ch[i], rk, rc, None, a))
            self.enc_act.append(make_activation(a, ch[i]))
            self.down.append(CausalConv1d(ch[i], ch[i + 1], 2 * s, stride=s, film_offset=film.take(ch[i + 1])))
        self.bottleneck = nn.ModuleList(ResidualUnit(ch[-1], rk, rc, film, a) for _ in range(config.bottleneck_units))
        self.dec_act = nn.ModuleList()
        self.up = nn.ModuleList()
        self.dec_res = nn.ModuleList()
        for i in reversed(range(len(config.strides))):
            self.dec_act.append(make_activation(a, ch[i + 1]))
            self.up.append(CausalConvTranspose1d(ch[i + 1], ch[i], config.strides[i], taps=2))
            self.dec_res.append(ResidualUnit(ch[i], rk, rc, film, a))
        self.out_act = make_activation(a, ch[0])
        self.out_conv = CausalConv1d(ch[0], 1, k)
        # Taken last so the FiLM offsets of every other layer do not depend on the skip.
        self.skip_in: CausalConv1d | None = None
        self.skip_out: CausalConv1d | None = None
        if config.skip_taps:
            c = config.skip_channels
            learnt = config.prescription == "none"
            self.skip_in = CausalConv1d(1, c, config.skip_taps, film_offset=film.take(c) if learnt else None)
            self.skip_out = CausalConv1d(c, 1, 1)
            if not learnt:
                for p in (*self.skip_in.parameters(), *self.skip_out.parameters()):
                    p.requires_grad_(False)
        self.film_dims = film.total
        self.audiogram_encoder: nn.Module | None = nn.Sequential(
            nn.Linear(len(AUDIOGRAM_FREQS_HZ), config.audiogram_hidden),
            nn.ELU(),
            nn.Linear(config.audiogram_hidden, self.film_dims),
        )
        # FiLM starts as identity, the output conv at zero: an untrained model is a pass-through,
        # so training starts from "no processing" rather than from noise in the patient's ear.
        nn.init.zeros_(self.audiogram_encoder[-1].weight)
        nn.init.zeros_(self.audiogram_encoder[-1].bias)
        nn.init.zeros_(self.out_conv.conv.weight)
        nn.init.zeros_(self.out_conv.conv.bias)
        if self.skip_in is not None and self.skip_out is not None:
            # Channel 0 starts as the identity (the newest tap), the others random but muted by
            # the 1x1 sum, so their gradient is not zero.
            with torch.no_grad():
                self.skip_in.conv.weight[0].zero_()
                self.skip_in.conv.weight[0, 0, -1] = 1.0
                self.skip_in.conv.bias.zero_()
                self.skip_out.conv.weight.zero_()
                self.skip_out.conv.weight[0, 0, 0] = 1.0
                self.skip_out.conv.bias.zero_()
        self.register_buffer("fitted_audiogram", torch.full((len(AUDIOGRAM_FREQS_HZ),), float("nan")))

    # ------------------------------------------------------------------ graph
    def forward(self, x: Tensor, audiogram: Tensor | None = None) -> Tensor:
        film = None if audiogram is None else self.audiogram_encoder(audiogram / 100.0)
        h = self.in_conv(x, film)
        skips = []
        for res, act, down in zip(self.enc_res, self.enc_act, self.down):
            h = res(h)
            skips.append(h)
            h = down(act(h), film)
        for res in self.bottleneck:
            h = res(h, film)
        for act, up, res, skip in zip(self.dec_act, self.up, self.dec_res, reversed(skips)):
            h = up(act(h)) + skip
            h = res(h, film)
        y = self.out_conv(self.out_act(h))
        if self.config.prescription != "none" and audiogram is not None:
            y = y + self.prescribe(x, audiogram)
        elif self.skip_in is not None and self.skip_out is not None:
            y = y + self.skip_out(self.skip_in(x, film))
        elif self.config.input_skip:
            y = y + x
        return y

    def prescription_fir(self, thresholds_db_hl: np.ndarray) -> np.ndarray:
        """The prescription FIR (taps in time order) for one audiogram."""
        return _nalr_fir_cached(tuple(float(v) for v in np.asarray(thresholds_db_hl).ravel()),
                                self.config.sample_rate, self.config.skip_taps)

    def prescribe(self, x: Tensor, audiogram: Tensor) -> Tensor:
        """Each example of ``x`` (B, 1, n) through the prescription FIR of its own audiogram (B, 8)."""
        firs = np.stack([self.prescription_fir(a) for a in audiogram.detach().cpu().numpy()])
        w = torch.from_numpy(firs[:, None, ::-1].copy()).to(x)  # conv1d correlates: newest tap last
        b, _, n = x.shape
        y = F.conv1d(F.pad(x.reshape(1, b, n), (w.shape[-1] - 1, 0)), w, groups=b)
        return y.reshape(b, 1, n)

    # --------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        return self.audiogram_encoder is None

    @torch.no_grad()
    def fit(self, thresholds_db_hl: np.ndarray | Tensor) -> "SEANet":
        """A copy with the audiogram baked in: FiLM terms folded into conv weights and biases."""
        if self.is_fitted:
            raise ValueError("model is already fitted to an audiogram")
        a = torch.as_tensor(np.asarray(thresholds_db_hl, dtype=np.float32)).reshape(1, -1)
        fitted = copy.deepcopy(self).eval()
        film = fitted.audiogram_encoder(a / 100.0)
        for m in fitted.modules():
            if isinstance(m, CausalConv1d):
                m.fold_film(film)
        if self.config.prescription != "none":
            h = self.prescription_fir(a[0].numpy()).astype(np.float32)[::-1].copy()
            q = int8_weight_round(h)
            w = torch.from_numpy(np.stack([q, h - q]))[:, None, :]
            fitted.skip_in.conv.weight.copy_(w)
            fitted.skip_in.conv.bias.zero_()
            fitted.skip_out.conv.weight.fill_(1.0)
            fitted.skip_out.conv.bias.zero_()
        fitted.audiogram_encoder = None
        fitted.fitted_audiogram.copy_(a[0])
        return fitted

    def streaming(self) -> StreamingGraph:
        """Explicit-state step runner of a fitted model."""
        if not self.is_fitted:
            raise ValueError("stream a fitted model: call fit(audiogram) first (the deployed graph has no audiogram input)")
        return StreamingGraph(self, concrete_args={"audiogram": None})

    # ----------------------------------------------------------- accounting
    def algorithmic_latency_samples(self, block: int) -> int:
        """Impulse-to-output delay bound: the block that must fill (the model itself looks no further)."""
        self.check_block(block)
        return block

    def check_block(self, block: int) -> None:
        s = self.config.total_stride
        if block <= 0 or block % s:
            raise ValueError(f"block {block} must be a positive multiple of the model's total stride {s}")

    def deployed_parameters(self) -> int:
        """Parameters that ship to the device (the audiogram encoder stays on the host)."""
        skip = set() if self.audiogram_encoder is None else {id(p) for p in self.audiogram_encoder.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    def macs_per_second(self) -> float:
        """Multiply-accumulates per second of audio of the deployed network."""
        sr = self.config.sample_rate
        total = 0.0
        frames = float(sr)

        def conv_macs(conv: nn.Conv1d, out_frames: float) -> float:
            return out_frames * conv.in_channels * conv.out_channels * conv.kernel_size[0] / conv.groups

        total += conv_macs(self.in_conv.conv, frames)
        for res, down in zip(self.enc_res, self.down):
            total += conv_macs(res.conv1.conv, frames) + conv_macs(res.conv2.conv, frames)
            frames /= down.stride_in
            total += conv_macs(down.conv, frames)
        for res in self.bottleneck:
            total += conv_macs(res.conv1.conv, frames) + conv_macs(res.conv2.conv, frames)
        for up, res in zip(self.up, self.dec_res):
            total += frames * up.in_channels * up.out_channels * up.taps * up.stride
            frames *= up.stride
            total += conv_macs(res.conv1.conv, frames) + conv_macs(res.conv2.conv, frames)
        total += conv_macs(self.out_conv.conv, frames)
        if self.skip_in is not None and self.skip_out is not None:
            total += conv_macs(self.skip_in.conv, frames) + conv_macs(self.skip_out.conv, frames)
        return total


@functools.lru_cache(maxsize=4096)
def _nalr_fir_cached(thresholds: tuple[float, ...], sample_rate: int, taps: int) -> np.ndarray:
    # Training draws audiograms from presets and a random generator; presets repeat every batch.
    return nalr_fir(np.asarray(thresholds), sample_rate, taps)


def load_seanet(path: str, map_location: str = "cpu") -> SEANet:
    """Load a checkpoint written by :func:`save_seanet` (config + state dict)."""
    return seanet_from_checkpoint(torch.load(path, map_location=map_location, weights_only=True))


def seanet_from_checkpoint(ckpt: dict[str, Any]) -> SEANet:
    """The model in an already-loaded :func:`save_seanet` payload (toolchain.models.compensators.registry reads files once)."""
    model = SEANet(SEANetConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def save_seanet(model: SEANet, path: str, extra: dict[str, Any] | None = None) -> None:
    """Save config + weights (+ recipe metadata) atomically."""

    payload = {"config": model.config.to_dict(), "state_dict": model.state_dict(), "extra": extra or {}}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


__all__ = ["SEANet", "SEANetConfig", "ResidualUnit", "load_seanet", "save_seanet", "seanet_from_checkpoint"]
