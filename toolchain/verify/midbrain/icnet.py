"""ICNet (seed 001) and ψ-ICNet (seed 000): DNN models of the auditory midbrain, in torch.

ICNet maps a sound waveform at 24414.0625 Hz to the multi-unit activity (MUA) of 512 units
per animal in 1.3-ms bins (762.9395 Hz): a shared causal conv encoder (SincNet front end, five
strided convs, a 64-channel bottleneck) and one linear decoder per animal, each modulated by
that animal's time input. ψ-ICNet keeps the encoder and replaces the per-animal decoders by one
shared decoder fed with a bottleneck individualised by a handful of hearing-loss parameters ψ.

The verifier (``toolchain/verify``) runs both in fp32 on CUDA when present. The official ICNet
weights are Keras HDF5; :mod:`toolchain.verify.midbrain.icnet_keras_import` loads them into
:class:`ICNet` (no TensorFlow involved). Every architectural constant below cites the seed
section that fixes it: "001 §DNN models", "001 §Training", "000 §Fig. 1" and so on.

Conventions (chosen to match the released Keras model, so that imported weights map 1:1):

* input ``x``: ``(batch, samples)`` or ``(batch, 1, samples)``, already in ICNet units — see
  :func:`to_icnet_units` (001 §Training: "RMS 0.04 corresponded to 94 dB SPL");
* causal convs pad ``kernel - 1`` zeros on the left, as Keras ``padding="causal"`` does, also
  when strided (so output ``j`` of a stride-2 layer sees inputs up to ``2j``);
* the decoder's ``512 × Nc`` channels are unit-major (channel ``u * Nc + n``), the order of the
  released model's reshape to ``(time, 512, Nc)``;
* outputs are ``(batch, [branch,] time, units, Nc)``: class probabilities (softmax, Nc = 5) or
  the Poisson rate λ (softplus, Nc = 1, last axis of size 1).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runtime.atomic import atomic_write
from runtime.config import strict_from_dict
from toolchain.audio.levels import DEFAULT_CALIBRATION

# ----------------------------------------------------------------------------- seed constants
#: Audio rate of the model input. 001 §Training: "24,414.0625 Hz sound input frames".
FS_AUDIO = 24414.0625
#: Frame of sound per training example. 001 §Training: "sound input frames of 8,192 samples".
FRAME_SAMPLES = 8192
#: Left context added to each frame. 001 §Training: "Context of 2,048 samples was added on the left side".
CONTEXT_SAMPLES = 2048
#: SincNet front end. 001 §DNN models (1): "a SincNet layer with 48 bandpass filters of size 64 and stride of 1".
SINC_FILTERS = 48
SINC_KERNEL = 64
#: The released ICNet SincNet layer builds symmetric filters of ``kernel_size + 1`` taps
#: (``Filt_dim = kernel_size + 1`` in its ``SincNetBlock``): 32 taps each side of the centre.
#: Same trainable parameters (two per filter), so the parameter count is the seed's.
SINC_TAPS = SINC_KERNEL + 1
#: Encoder stack. 001 §DNN models (2): "five 1D convolutional layers with 128 filters of size 64 and stride of 2".
ENCODER_LAYERS = 5
ENCODER_CHANNELS = 128
ENCODER_KERNEL = 64
ENCODER_STRIDE = 2
#: Bottleneck. 001 §DNN models (3): "a 1D bottleneck convolutional layer with 64 filters of size 64 and a stride of 1".
BOTTLENECK_CHANNELS = 64
BOTTLENECK_KERNEL = 64
#: Decoder. 001 §DNN models (4): "a decoder convolutional layer without bias and 512 × N_c filters of size 1".
DECODER_UNITS = 512
#: 001 §DNN models: "N_c = 5 and the decoder output was followed by a softmax" (counts 0..4);
#: "For the Poisson model, N_c = 1 ... followed by a softplus activation".
N_CLASSES_CATEGORICAL = 5
N_CLASSES_POISSON = 1
#: Max MUA count per bin. 001 §DNN models: "All neural activity was clipped ... at a maximum value of 4".
MAX_COUNT = 4
#: Multi-branch ICNet. 001 §Time-variant multi-branch: each animal's time input "was given to a
#: convolutional layer with 64 filters of size 1 (with bias), followed by a PReLU activation" and
#: "multiplied (elementwise) by the bottleneck output". Nine animals (001 §Results; config.yaml n_decoders: 9).
TIME_CHANNELS = 64
N_BRANCHES = 9
#: Decimation: 2^5 = 32 → 762.939453125 Hz output (001 §Training: "a decimation factor of 2^5").
DECIMATION = ENCODER_STRIDE ** ENCODER_LAYERS
FS_MUA = FS_AUDIO / DECIMATION
#: Bins per frame after cropping. 001 §Training: "neural activity frames of 256 samples";
#: "64 cropped samples at the level of the bottleneck".
OUTPUT_BINS = FRAME_SAMPLES // DECIMATION
CROP_BINS = CONTEXT_SAMPLES // DECIMATION
#: Input scaling. 001 §Training: "scaled such that a root-mean-square (RMS) value of 0.04
#: corresponded to a level of 94 dB SPL" (released config.yaml: audio_normalisation 0.04 on Pa).
ICNET_RMS_AT_94_DB_SPL = 0.04
ICNET_REFERENCE_DB_SPL = 94.0
#: Time input. 001 §Training: "time inputs were expressed in seconds and were scaled by 1/36,000".
TIME_NORMALISATION = 1.0 / 36000.0
#: Stationary simulation. 001 §Discussion: "setting the time input to a fixed value (for example, 1 h ...)".
DEFAULT_TIME_HOURS = 1.0

# ψ-ICNet (seed 000).
#: 000 §Comparison against ICNet: "we trained models with 3 and 6 ψ parameters".
PSI_SIZES = (3, 6)
#: 000 §Fig. 1: "A further 4 convolutional layers containing progressively fewer kernels of size 16".
PSI_FUSION_LAYERS = 4
PSI_FUSION_KERNEL = 16
#: 000 §Fig. 1: "A three layer convolutional network with N_ψ, 2N_ψ and 3N_ψ kernels".
PSI_EXPAND_MULTIPLIERS = (1, 2, 3)
#: 000 §Modelling changes over time: ψ "between -10 and 10"; s_t in [0, 20]; W_t in [0, 50];
#: o_t in [0.05, 0.5] (30 min .. 5 h, time in hours / 10); fixed bias -6 in Eq. 1.
PSI_RANGE = (-10.0, 10.0)
TT_SCALE_RANGE = (0.0, 20.0)
TT_SLOPE_RANGE = (0.0, 50.0)
TT_ONSET_RANGE = (0.05, 0.5)
TT_BIAS = -6.0
#: 000 §Dataset: nine animals (3 NH, 6 HI).
PSI_ANIMALS = 9


# ------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ICNetConfig:
    """ICNet architecture; the defaults are seed 001's (and the released model's)."""

    sample_rate: float = FS_AUDIO
    context: int = CONTEXT_SAMPLES
    sinc_filters: int = SINC_FILTERS
    sinc_kernel: int = SINC_KERNEL
    encoder_layers: int = ENCODER_LAYERS
    encoder_channels: int = ENCODER_CHANNELS
    encoder_kernel: int = ENCODER_KERNEL
    encoder_stride: int = ENCODER_STRIDE
    bottleneck_channels: int = BOTTLENECK_CHANNELS
    bottleneck_kernel: int = BOTTLENECK_KERNEL
    decoder_units: int = DECODER_UNITS
    n_classes: int = N_CLASSES_CATEGORICAL
    n_branches: int = N_BRANCHES
    time_channels: int = TIME_CHANNELS

    def __post_init__(self) -> None:
        ints = ("context", "sinc_filters", "sinc_kernel", "encoder_layers", "encoder_channels",
                "encoder_kernel", "encoder_stride", "bottleneck_channels", "bottleneck_kernel",
                "decoder_units", "n_classes", "n_branches", "time_channels")
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "context" else 1):
                raise ValueError(f"ICNet config: {name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not (isinstance(self.sample_rate, (int, float)) and math.isfinite(self.sample_rate) and self.sample_rate > 0):
            raise ValueError(f"ICNet config: sample_rate must be a positive number, got {self.sample_rate!r}")
        object.__setattr__(self, "sample_rate", float(self.sample_rate))
        if self.n_classes not in (N_CLASSES_CATEGORICAL, N_CLASSES_POISSON):
            raise ValueError(f"ICNet config: n_classes must be 5 (categorical) or 1 (Poisson), got {self.n_classes}")
        if self.sinc_kernel % 2:
            raise ValueError(f"ICNet config: sinc_kernel must be even (filters of kernel+1 taps), got {self.sinc_kernel}")
        if self.context % self.decimation:
            raise ValueError(f"ICNet config: context {self.context} must be a multiple of the decimation {self.decimation}")

    @property
    def decimation(self) -> int:
        return self.encoder_stride ** self.encoder_layers

    @property
    def output_rate(self) -> float:
        return self.sample_rate / self.decimation

    @property
    def crop(self) -> int:
        """Bottleneck frames removed on the left (the context)."""
        return self.context // self.decimation

    @property
    def sinc_taps(self) -> int:
        return self.sinc_kernel + 1

    @property
    def poisson(self) -> bool:
        return self.n_classes == N_CLASSES_POISSON

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ICNetConfig":
        return strict_from_dict(cls, d, where="ICNet config")


# ------------------------------------------------------------------------------- layers
class KerasCausalConv1d(nn.Module):
    """Conv1d with Keras ``padding="causal"`` semantics: ``kernel - 1`` zeros on the left.

    Whole-signal and stateless, as the released Keras model runs (not the streaming
    :class:`toolchain.models.compensators.streaming.CausalConv1d` of the compensators). With stride ``s`` the output has ``ceil(L / s)`` frames and frame ``j`` depends on inputs
    ``s*j - (kernel - 1) .. s*j`` only (001 §DNN models: "used a causal kernel").
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self.pad = kernel_size - 1

    @property
    def weight(self) -> Tensor:
        return self.conv.weight

    @property
    def bias(self) -> Tensor | None:
        return self.conv.bias

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (self.pad, 0)))


class SymLog(nn.Module):
    """001 §DNN models (1): "symmetric logarithmic activation y = sgn(x) × log(|x| + 1)"."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sign(x) * torch.log1p(torch.abs(x))


class SincConv(nn.Module):
    """SincNet band-pass filterbank (Ravanelli & Bengio 2018, 001 ref. 36), causal, stride 1.

    Each filter is the difference of two windowed sinc low-passes with learned lower cut-off
    ``|b1|`` and bandwidth ``|band|`` (both in units of the sample rate, +50 Hz minimum each),
    normalised to unit peak and Hamming-windowed. The parameter layout ``(filters, 1)`` and the
    filter construction follow the released ICNet layer so that its weights import unchanged.
    """

    #: Not seed constants (neither seed 000 nor 001 states them): the SincNet convention of
    #: Ravanelli & Bengio's reference ``sinc_conv`` (mravanelli/SincNet, dnn_models.py:
    #: ``min_freq=50.0; min_band=50.0``), kept by the released ICNet ``SincConv1D`` (adapted from
    #: grausof/keras-sincnet). The mel initialisation in ``__init__`` (points equally spaced from
    #: 80 to mel(fs/2), first lower edge 30 Hz, last upper edge fs/2 − 100 Hz) is SincNet's too.
    MIN_FREQ_HZ = 50.0
    MIN_BAND_HZ = 50.0

    def __init__(self, n_filters: int = SINC_FILTERS, kernel_size: int = SINC_KERNEL, sample_rate: float = FS_AUDIO) -> None:
        super().__init__()
        self.n_filters = int(n_filters)
        self.taps = int(kernel_size) + 1
        self.sample_rate = float(sample_rate)
        half = (self.taps - 1) // 2
        # Mel-spaced initial band edges (SincNet's initialisation).
        low_mel, high_mel = 80.0, 2595.0 * np.log10(1.0 + (self.sample_rate / 2.0) / 700.0)
        f_cos = 700.0 * (10.0 ** (np.linspace(low_mel, high_mel, self.n_filters) / 2595.0) - 1.0)
        b1, b2 = np.roll(f_cos, 1), np.roll(f_cos, -1)
        b1[0], b2[-1] = 30.0, self.sample_rate / 2.0 - 100.0
        self.filt_b1 = nn.Parameter(torch.tensor(b1 / self.sample_rate, dtype=torch.float32).reshape(-1, 1))
        self.filt_band = nn.Parameter(torch.tensor((b2 - b1) / self.sample_rate, dtype=torch.float32).reshape(-1, 1))
        t_right = torch.linspace(1.0, float(half), half, dtype=torch.float32) / self.sample_rate
        self.register_buffer("t_right", t_right.reshape(1, -1), persistent=False)
        n = torch.linspace(0.0, float(self.taps - 1), self.taps, dtype=torch.float32)
        self.register_buffer("window", (0.54 - 0.46 * torch.cos(2.0 * math.pi * n / self.taps)).reshape(1, -1),
                             persistent=False)

    def _sinc(self, f: Tensor) -> Tensor:
        arg = 2.0 * math.pi * f * self.sample_rate * self.t_right  # (N, half)
        right = torch.sin(arg) / arg
        ones = torch.ones(f.shape[0], 1, dtype=f.dtype, device=f.device)
        return torch.cat([torch.flip(right, dims=[1]), ones, right], dim=1)

    def filters(self) -> Tensor:
        """The current filters, ``(filters, 1, taps)`` (cross-correlation kernels, as Keras')."""
        fs = self.sample_rate
        beg = torch.abs(self.filt_b1) + self.MIN_FREQ_HZ / fs
        end = beg + torch.abs(self.filt_band) + self.MIN_BAND_HZ / fs
        band = 2.0 * end * self._sinc(end) - 2.0 * beg * self._sinc(beg)
        band = band / torch.amax(band, dim=1, keepdim=True)
        return (band * self.window).unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(F.pad(x, (self.taps - 1, 0)), self.filters())


class ConvPReLU(nn.Module):
    """Causal conv followed by a per-channel PReLU (Keras ``PReLU(shared_axes=[1])``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = KerasCausalConv1d(in_channels, out_channels, kernel_size, stride)
        self.act = nn.PReLU(out_channels, init=0.0)  # Keras' PReLU initialises alpha to 0

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class ICNetEncoder(nn.Module):
    """SincNet + symlog, five strided causal convs + PReLU, bottleneck conv + PReLU (uncropped)."""

    def __init__(self, config: ICNetConfig = ICNetConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.sinc = SincConv(c.sinc_filters, c.sinc_kernel, c.sample_rate)
        self.symlog = SymLog()
        chans = [c.sinc_filters] + [c.encoder_channels] * c.encoder_layers
        self.convs = nn.ModuleList(
            ConvPReLU(chans[i], chans[i + 1], c.encoder_kernel, c.encoder_stride) for i in range(c.encoder_layers))
        self.bottleneck = ConvPReLU(c.encoder_channels, c.bottleneck_channels, c.bottleneck_kernel, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.symlog(self.sinc(x))
        for conv in self.convs:
            h = conv(h)
        return self.bottleneck(h)


def _as_ncw(x: Tensor) -> Tensor:
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() == 3 and x.shape[1] == 1:
        return x
    raise ValueError(f"expected audio of shape (batch, samples) or (batch, 1, samples), got {tuple(x.shape)}")


def _check_length(n: int, config: ICNetConfig) -> None:
    if n % config.decimation or n <= config.context:
        raise ValueError(f"ICNet input length must be a multiple of {config.decimation} samples and longer than "
                         f"the {config.context}-sample context, got {n}")


def _distribution(logits: Tensor, units: int, n_classes: int) -> Tensor:
    """Decoder output ``(B, units*Nc, T)`` → ``(B, T, units, Nc)`` probabilities or Poisson rate."""
    b, _, t = logits.shape
    # Unit-major channels: a free view (B, units, Nc, T); the softmax runs along a strided axis with
    # time contiguous (several times faster than over a last axis of 5), then a permuted view.
    z = logits.reshape(b, units, n_classes, t)
    p = F.softplus(z) if n_classes == N_CLASSES_POISSON else torch.softmax(z, dim=2)
    return p.permute(0, 3, 1, 2)


class ICNet(nn.Module):
    """The multi-branch time-variant ICNet (001 §Time-variant multi-branch architecture)."""

    def __init__(self, config: ICNetConfig = ICNetConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.encoder = ICNetEncoder(c)
        # 001: "a convolutional layer with 64 filters of size 1 (with bias), followed by a PReLU".
        self.time_branches = nn.ModuleList(ConvPReLU(1, c.time_channels, 1) for _ in range(c.n_branches))
        # 001 (4): "a decoder convolutional layer without bias and 512 × N_c filters of size 1".
        self.decoders = nn.ModuleList(
            nn.Conv1d(c.bottleneck_channels, c.decoder_units * c.n_classes, 1, bias=False) for _ in range(c.n_branches))
        if c.time_channels != c.bottleneck_channels:
            raise ValueError("ICNet config: time_channels must equal bottleneck_channels (elementwise product)")

    # ------------------------------------------------------------------ pieces
    def bottleneck(self, x: Tensor) -> Tensor:
        """Cropped bottleneck response ``(B, 64, T)`` (the released model's ``cropped_output``)."""
        x = _as_ncw(x)
        _check_length(x.shape[-1], self.config)
        return self.encoder(x)[..., self.config.crop:]

    def time_input(self, batch: int, bins: int, hours: float | Tensor = DEFAULT_TIME_HOURS, *,
                   device: Any = None) -> Tensor:
        """A constant (stationary) time input ``(B, 1, T)`` in the model's units (s / 36000)."""
        h = torch.as_tensor(hours, dtype=torch.float32, device=device).reshape(-1, 1, 1)
        return (h * 3600.0 * TIME_NORMALISATION).expand(batch, 1, bins).contiguous()

    def decode(self, r_b: Tensor, time: Tensor | None = None, branches: Sequence[int] | None = None) -> Tensor:
        """``(B, n_branches, T, units, Nc)`` from the cropped bottleneck.

        ``time`` is ``(B, 1, T)`` or ``(B, T)`` in model units (see :meth:`time_input`), one for
        all branches; None → the stationary default (1 h).
        """
        b, _, t = r_b.shape
        if time is None:
            time = self.time_input(b, t, device=r_b.device)
        elif time.dim() == 2:
            time = time.unsqueeze(1)
        if time.shape[-1] != t:
            raise ValueError(f"time input has {time.shape[-1]} bins, the bottleneck {t}")
        c = self.config
        idx = list(range(c.n_branches)) if branches is None else [int(i) for i in branches]
        # All selected branches at once (the same maths as each branch's ConvPReLU → product → Conv1d,
        # as batched matmuls: one large op instead of n small ones).
        tw = torch.stack([self.time_branches[i].conv.weight.reshape(-1) for i in idx])[None, :, :, None]
        tb = torch.stack([self.time_branches[i].conv.bias for i in idx])[None, :, :, None]
        ta = torch.stack([self.time_branches[i].act.weight for i in idx])[None, :, :, None]
        z = tw * time.to(r_b.dtype)[:, None] + tb  # (B, n, 64, T): 64 filters of size 1 on the time input
        z = torch.where(z >= 0, z, ta * z)  # PReLU
        w = torch.stack([self.decoders[i].weight[:, :, 0] for i in idx])  # (n, units·Nc, 64)
        logits = torch.matmul(w, r_b[:, None] * z)  # (B, n, units·Nc, T)
        b, n = logits.shape[:2]
        dist = _distribution(logits.reshape(b * n, -1, t), c.decoder_units, c.n_classes)
        return dist.reshape(b, n, *dist.shape[1:])

    def forward(self, x: Tensor, time: Tensor | None = None, branches: Sequence[int] | None = None) -> Tensor:
        """Audio in ICNet units ``(B, L)`` → ``(B, n_branches, (L - context) / 32, 512, Nc)``."""
        return self.decode(self.bottleneck(x), time, branches)

    # ------------------------------------------------------------------ description
    def layer_summary(self, samples: int = FRAME_SAMPLES + CONTEXT_SAMPLES) -> list[tuple[str, tuple[int, ...], int]]:
        """``(name, output shape (C, T) for one example, parameters)`` per layer, in order."""
        c = self.config
        rows: list[tuple[str, tuple[int, ...], int]] = []
        n = samples

        def count(m: nn.Module) -> int:
            return sum(p.numel() for p in m.parameters())

        rows.append(("sinc", (c.sinc_filters, n), count(self.encoder.sinc)))
        for i, conv in enumerate(self.encoder.convs):
            n = -(-n // c.encoder_stride)
            rows.append((f"conv{i + 1}", (c.encoder_channels, n), count(conv)))
        rows.append(("bottleneck", (c.bottleneck_channels, n), count(self.encoder.bottleneck)))
        n -= c.crop
        rows.append(("cropped_output", (c.bottleneck_channels, n), 0))
        for i in range(c.n_branches):
            rows.append((f"time{i}", (c.time_channels, n), count(self.time_branches[i])))
            rows.append((f"decoder{i}", (c.decoder_units, n, c.n_classes), count(self.decoders[i])))
        return rows

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ------------------------------------------------------------------------------- ψ-ICNet
def time_transfer(psi: Tensor, t: Tensor | float, scale: Tensor, slope: Tensor, onset: Tensor) -> Tensor:
    """000 Eq. 1: T_ψ(ψ, t) = ψ if t ≤ o_t, else ψ + s_t ⊙ σ(W_t (t − o_t) − 6) − I, I = s_t ⊙ σ(−6).

    ``t`` is the recording time in hours / 10; all vectors broadcast against ``psi``. The
    parameters are clamped to their ranges (000: s_t ∈ [0, 20], W_t ∈ [0, 50], o_t ∈ [0.05, 0.5]).
    """
    t = torch.as_tensor(t, dtype=psi.dtype, device=psi.device)
    s = scale.clamp(*TT_SCALE_RANGE)
    w = slope.clamp(*TT_SLOPE_RANGE)
    o = onset.clamp(*TT_ONSET_RANGE)
    bias = torch.tensor(TT_BIAS, dtype=psi.dtype, device=psi.device)
    shifted = psi + s * torch.sigmoid(w * (t - o) + bias) - s * torch.sigmoid(bias)
    return torch.where(t <= o, psi, shifted)


@dataclass(frozen=True)
class PsiICNetConfig:
    """ψ-ICNet (seed 000): ICNet's encoder, ψ conditioning, fusion convs, one shared decoder."""

    #: The encoder is ICNet's (001: five convs of 128 filters of size 64). Seed 000 is
    #: inconsistent here: its Fig. 1 caption says "5 causal convolutional layers with 246 kernels
    #: of size 60", its text says "We use the same sound encoder as ICNet" and that the encoders
    #: "were initialised with weights from an ICNet model". We follow the text (128 × 64), which
    #: is also what lets :meth:`PsiICNet.from_icnet` copy ICNet's encoder weights.
    encoder: ICNetConfig = field(default_factory=lambda: ICNetConfig(n_branches=1))
    n_psi: int = 6
    n_animals: int = PSI_ANIMALS
    fusion_layers: int = PSI_FUSION_LAYERS
    fusion_kernel: int = PSI_FUSION_KERNEL
    #: Output channels of the fusion convs; None → "progressively fewer" (000 Fig. 1), evenly
    #: spaced from 64 + 3Nψ down to 64. The seed gives only the end points; this is our choice.
    fusion_channels: tuple[int, ...] | None = None
    #: Kernel size of the ψ expansion convs: ψ is constant over time, so 1 (the seed gives none).
    expand_kernel: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            object.__setattr__(self, "encoder", ICNetConfig.from_dict(self.encoder))
        if self.n_psi not in PSI_SIZES:
            raise ValueError(f"ψ-ICNet config: n_psi must be 3 or 6 (Pellatt et al. 2025), got {self.n_psi!r}")
        for name in ("n_animals", "fusion_layers", "fusion_kernel", "expand_kernel"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ψ-ICNet config: {name} must be a positive integer, got {v!r}")
        if self.fusion_channels is not None:
            chans = tuple(int(c) for c in self.fusion_channels)
            if len(chans) != self.fusion_layers or chans[-1] != self.encoder.bottleneck_channels:
                raise ValueError(f"ψ-ICNet config: fusion_channels must list {self.fusion_layers} widths ending at "
                                 f"{self.encoder.bottleneck_channels}, got {chans}")
            object.__setattr__(self, "fusion_channels", chans)

    @property
    def expand_channels(self) -> tuple[int, ...]:
        return tuple(m * self.n_psi for m in PSI_EXPAND_MULTIPLIERS)

    @property
    def fused_in(self) -> int:
        return self.encoder.bottleneck_channels + self.expand_channels[-1]

    def fusion_widths(self) -> tuple[int, ...]:
        if self.fusion_channels is not None:
            return self.fusion_channels
        lo, hi, k = self.encoder.bottleneck_channels, self.fused_in, self.fusion_layers
        return tuple(int(round(hi - (hi - lo) * (i + 1) / k)) for i in range(k))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fusion_channels"] = None if self.fusion_channels is None else list(self.fusion_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PsiICNetConfig":
        return strict_from_dict(cls, d, where="ψ-ICNet config")


class PsiICNet(nn.Module):
    """ψ-ICNet (000 Fig. 1 and 2).

    ``forward(x, psi)`` takes the conditioning values fed to the network — the ψ sample, in
    (0, 1) after the sigmoid of 000 Fig. 2 — one row per example. :meth:`condition` builds them
    from raw ψ means (range −10..10) and, optionally, a recording time (Eq. 1).
    """

    def __init__(self, config: PsiICNetConfig = PsiICNetConfig()) -> None:
        super().__init__()
        c = config
        e = c.encoder
        self.config = c
        self.encoder = ICNetEncoder(e)
        ex = (c.n_psi,) + c.expand_channels
        # PReLU after each ψ expansion and fusion conv is our assumption, not stated in seed 000
        # (its Fig. 1 names the convs but no activation): ICNet (001 §DNN models) follows every hidden
        # conv — encoder, bottleneck, time input — with a PReLU, so we do the same here.
        self.expand = nn.ModuleList(ConvPReLU(ex[i], ex[i + 1], c.expand_kernel) for i in range(len(ex) - 1))
        widths = (c.fused_in,) + c.fusion_widths()
        self.fusion = nn.ModuleList(ConvPReLU(widths[i], widths[i + 1], c.fusion_kernel) for i in range(c.fusion_layers))
        self.decoder = nn.Conv1d(e.bottleneck_channels, e.decoder_units * e.n_classes, 1, bias=False)
        # Variational conditioning (000 Fig. 2): per-animal means, diagonal log-variances, and the
        # time transfer function's s_t, W_t, o_t per animal and ψ element.
        self.psi_mean = nn.Parameter(torch.zeros(c.n_animals, c.n_psi))
        self.psi_log_var = nn.Parameter(torch.full((c.n_animals, c.n_psi), math.log(1.0 / c.n_animals)))
        self.tt_scale = nn.Parameter(torch.zeros(c.n_animals, c.n_psi))
        self.tt_slope = nn.Parameter(torch.ones(c.n_animals, c.n_psi))
        self.tt_onset = nn.Parameter(torch.full((c.n_animals, c.n_psi), TT_ONSET_RANGE[1]))

    @classmethod
    def from_icnet(cls, icnet: ICNet, config: PsiICNetConfig | None = None) -> "PsiICNet":
        """A ψ-ICNet whose encoder starts from ICNet's (000: "encoders ... initialised with weights from an ICNet")."""
        cfg = config or PsiICNetConfig(encoder=replace(icnet.config, n_branches=1))
        model = cls(cfg)
        model.encoder.load_state_dict(icnet.encoder.state_dict())
        return model

    def condition(self, psi_mean: Tensor, t: Tensor | float | None = None, animal: int | None = None, *,
                  sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Raw ψ means ``(B, n_psi)`` (−10..10) → the network's conditioning values in (0, 1).

        With ``t`` (hours / 10) and ``animal``, that animal's time transfer function (Eq. 1) is
        applied first; ``sample`` draws from N(σ(μ_t), Σ_ψ) by reparameterisation, else the mean.
        """
        mu = psi_mean.clamp(*PSI_RANGE)
        if t is not None:
            if animal is None:
                raise ValueError("a recording time needs the animal whose time transfer function applies")
            mu = time_transfer(mu, t, self.tt_scale[animal], self.tt_slope[animal], self.tt_onset[animal])
        p = torch.sigmoid(mu)
        if sample:
            if animal is None:
                raise ValueError("sampling ψ needs the animal whose covariance applies")
            std = torch.exp(0.5 * self.psi_log_var[animal])
            eps = torch.randn(p.shape, generator=generator, dtype=p.dtype, device=p.device)
            p = p + std * eps
        return p

    def animal_psi(self, animal: int, t: float | None = None) -> Tensor:
        """The conditioning values of a training animal (its learned mean, no sampling)."""
        return self.condition(self.psi_mean[animal:animal + 1], t, animal)

    def bottleneck(self, x: Tensor, psi: Tensor) -> Tensor:
        """The individualised, cropped bottleneck r'_b ``(B, 64, T)``."""
        x = _as_ncw(x)
        e = self.config.encoder
        _check_length(x.shape[-1], e)
        r_b = self.encoder(x)
        psi = torch.as_tensor(psi, dtype=r_b.dtype, device=r_b.device)
        if psi.dim() == 1:
            psi = psi.unsqueeze(0)
        if psi.shape[-1] != self.config.n_psi or psi.shape[0] not in (1, r_b.shape[0]):
            raise ValueError(f"ψ must be ({r_b.shape[0]}, {self.config.n_psi}), got {tuple(psi.shape)}")
        h = psi.unsqueeze(-1).expand(r_b.shape[0], -1, r_b.shape[-1])  # ψ held over time: (B, Nψ, T)
        for conv in self.expand:
            h = conv(h)
        h = torch.cat([r_b, h], dim=1)
        for conv in self.fusion:
            h = conv(h)
        return h[..., e.crop:]

    def forward(self, x: Tensor, psi: Tensor) -> Tensor:
        """``(B, T, 512, Nc)``: the shared decoder's distribution for conditioning values ``psi``."""
        e = self.config.encoder
        return _distribution(self.decoder(self.bottleneck(x, psi)), e.decoder_units, e.n_classes)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ------------------------------------------------------------------------------- helpers
def icnet_gain(calibration: Any = None) -> float:
    """Factor from project digital audio to ICNet units (001 §Training: RMS 0.04 ↔ 94 dB SPL).

    The digital ↔ dB SPL mapping is the project's one calibration (``toolchain.audio.levels``):
    a digital RMS of 1 is ``calibration.rms_to_db_spl(1.0)`` dB SPL.
    """

    cal = calibration or DEFAULT_CALIBRATION
    unit_rms_db = float(cal.rms_to_db_spl(1.0))
    return ICNET_RMS_AT_94_DB_SPL * 10.0 ** ((unit_rms_db - ICNET_REFERENCE_DB_SPL) / 20.0)


def to_icnet_units(x: Any, calibration: Any = None) -> np.ndarray:
    """Project audio (digital, float32) → ICNet's input scale, level preserved."""
    return (np.asarray(x, dtype=np.float32) * np.float32(icnet_gain(calibration))).astype(np.float32)


def frame_signal(x: np.ndarray, config: ICNetConfig = ICNetConfig(), frame: int = FRAME_SAMPLES) -> np.ndarray:
    """``(n,)`` → ``(frames, context + frame)``: consecutive frames, each with its left context
    (zeros before the start), the last zero-padded — as the released example slices sound."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if frame % config.decimation:
        raise ValueError(f"frame must be a multiple of {config.decimation}, got {frame}")
    n_frames = max(1, -(-x.size // frame))
    padded = np.zeros(config.context + n_frames * frame, dtype=np.float32)
    padded[config.context:config.context + x.size] = x
    idx = np.arange(n_frames)[:, None] * frame + np.arange(config.context + frame)[None, :]
    return padded[idx]


def expected_counts(dist: Tensor, n_classes: int | None = None) -> Tensor:
    """E_C[R]: Σ n p(n) over the last axis (categorical) or the Poisson rate λ (Nc = 1)."""
    nc = dist.shape[-1] if n_classes is None else n_classes
    if nc == N_CLASSES_POISSON:
        return dist[..., 0]
    counts = torch.arange(nc, dtype=dist.dtype, device=dist.device)
    return (dist * counts).sum(-1)


def count_probabilities(dist: Tensor) -> Tensor:
    """Per-bin count distribution over 0..4: the categorical output itself, or the Poisson pmf
    clipped at 4 (001: activity "clipped ... at a maximum value of 4")."""
    if dist.shape[-1] != N_CLASSES_POISSON:
        return dist
    lam = dist[..., 0].clamp_min(1e-12)
    ks = torch.arange(MAX_COUNT, dtype=dist.dtype, device=dist.device)
    pmf = torch.exp(ks * torch.log(lam).unsqueeze(-1) - lam.unsqueeze(-1) - torch.lgamma(ks + 1))
    tail = (1.0 - pmf.sum(-1, keepdim=True)).clamp_min(0.0)
    return torch.cat([pmf, tail], dim=-1)


def sample_counts(dist: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw MUA counts (0..4) from the model's distribution (001 §Evaluation: "sampled from")."""
    p = count_probabilities(dist)
    u = torch.rand(p.shape[:-1], generator=generator, dtype=p.dtype, device=p.device).unsqueeze(-1)
    cdf = torch.cumsum(p, dim=-1)
    return (u > cdf[..., :-1]).sum(-1).to(torch.int8)


def save_psi_icnet(model: PsiICNet, path: str | os.PathLike[str], *, audiogram_to_psi: dict[str, Any] | None = None) -> None:
    """Write a ψ-ICNet checkpoint: config, state dict and (optionally) an audiogram → ψ map.

    ``audiogram_to_psi`` = ``{"weight": (n_psi, 8), "bias": (n_psi,)}`` maps thresholds / 100
    (dB HL at 250..8000 Hz) to raw ψ means. It is user-supplied, not from the seeds: ψ-ICNet
    learns ψ per animal from neural recordings (seed 000), so a map to human audiograms is the
    checkpoint owner's own fit (e.g. against ABR thresholds as in 000's ABRNet comparison).
    """
    payload: dict[str, Any] = {"format": "psi-icnet/1", "config": model.config.to_dict(),
                               "state_dict": model.state_dict()}
    if audiogram_to_psi is not None:
        payload["audiogram_to_psi"] = {k: np.asarray(v, np.float32).tolist() for k, v in audiogram_to_psi.items()}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def load_psi_icnet(path: str | os.PathLike[str]) -> tuple[PsiICNet, dict[str, Any] | None]:
    """Read :func:`save_psi_icnet`'s checkpoint → (model in eval mode, audiogram → ψ map or None)."""
    payload = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "psi-icnet/1":
        raise ValueError(f"{path}: not a ψ-ICNet checkpoint (format psi-icnet/1)")
    model = PsiICNet(PsiICNetConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload.get("audiogram_to_psi")


__all__ = [
    "BOTTLENECK_CHANNELS", "CONTEXT_SAMPLES", "DECIMATION", "DECODER_UNITS", "FRAME_SAMPLES", "FS_AUDIO", "FS_MUA",
    "ICNet", "ICNetConfig", "ICNetEncoder", "N_BRANCHES", "OUTPUT_BINS", "PsiICNet", "PsiICNetConfig", "SincConv",
    "SymLog", "count_probabilities", "expected_counts", "frame_signal", "icnet_gain", "load_psi_icnet",
    "sample_counts", "save_psi_icnet", "time_transfer", "to_icnet_units",
]
