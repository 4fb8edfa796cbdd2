"""Neuro-MSBG-style neural hearing-loss simulator (seed 003): fast, differentiable MSBG.

``HLSim(x, audiogram) -> y``: what a listener with ``audiogram`` (dB HL at the 8 standard
frequencies) hears of the waveform ``x``, trained to reproduce pyclarity's MSBG
(:mod:`toolchain.audio.msbg_ref`, delay-aligned) and then frozen, so compensators can be trained
through it (seed 003, Sec. III-F: HL(compensated, audiogram) ≈ NH(clean)).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runtime.atomic import atomic_write
from runtime.config import ConfigError, strict_from_dict
from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration

AUDIOGRAM_SCALE_DB = 100.0  # thresholds enter the encoder as dB HL / 100
# Floor added to |X|² before the 0.3 power compression: d|X|^0.3/d|X| grows without bound as
# |X| → 0, and near-silent bins would otherwise dominate the gradient a compensator trains on
# (a step along it raised the loss). |X| = 1e-4 is ~60 dB below a speech bin at 65 dB SPL.
POWER_FLOOR = 1e-8


class HLSimConfigError(ConfigError):
    """A bad simulator configuration (one line)."""


@dataclass(frozen=True)
class HLSimConfig:
    """Simulator hyper-parameters (a recipe's ``[hlsim]`` section)."""

    sample_rate: int = 16000
    n_fft: int = 400          # F = 201, seed 003 Sec. II-A1
    hop: int = 200           # 50 % overlap: half the frames of MP-SENet's 100, for CPU speed
    compress: float = 0.3     # MP-SENet magnitude compression
    channels: int = 24
    blocks: int = 4
    kernel_time: int = 5
    kernel_freq: int = 5
    expansion: int = 2
    audiogram_conv_channels: int = 8
    mask_beta: float = 2.0    # MP-SENet learnable sigmoid upper bound
    freq_stages: int = 2      # stride-2 frequency halvings before the dual-path blocks (201 -> 101 -> 51)
    # "lean" layout (the shipped simulator's speed fix): one decoder trunk shared by the mask and
    # phase heads, and no C-channel layer at full frequency resolution: the encoder's first layer
    # reads pairs of input bins, the decoder's last doubling writes the heads (full-resolution
    # tensors dominated the CPU time). False = the original layout (older checkpoints).
    lean: bool = False
    full_scale_sine_db_spl: float = DEFAULT_CALIBRATION.full_scale_sine_db_spl

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "freq_stages" and v == 0:
                continue
            if f.name == "lean":
                if not isinstance(v, bool):
                    raise HLSimConfigError(f"hlsim.lean = {v!r}: expected true or false")
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise HLSimConfigError(f"hlsim.{f.name} = {v!r}: expected a positive number")
        if self.hop > self.n_fft:
            raise HLSimConfigError(f"hlsim.hop = {self.hop} exceeds n_fft = {self.n_fft}")
        if self.kernel_time % 2 == 0 or self.kernel_freq % 2 == 0:
            raise HLSimConfigError("hlsim kernel sizes must be odd (same-length convolutions)")
        if self.lean and self.freq_stages < 1:
            raise HLSimConfigError("hlsim.lean needs freq_stages >= 1 (its first and last layers change resolution)")

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HLSimConfig:
        return strict_from_dict(cls, d, where="hlsim", error=HLSimConfigError)


class SimOutput(NamedTuple):
    wave: Tensor        # (B, n)
    mag: Tensor         # (B, F, T) compressed magnitude
    phase: Tensor       # (B, F, T) radians
    complex: Tensor     # (B, 2, F, T) compressed real/imag (mag · e^{jφ}), the seed's L_Com domain


class AudiogramEncoder(nn.Module):
    """Seed 003 eq. (1): 8 thresholds → Conv1d → ReLU → AvgPool → Flatten → Linear → F."""

    def __init__(self, n_freq: int, conv_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, conv_channels, 3, padding=1)
        self.pool = nn.AvgPool1d(2)
        self.proj = nn.Linear(conv_channels * 4, n_freq)

    def forward(self, audiogram_db_hl: Tensor) -> Tensor:
        a = (audiogram_db_hl / AUDIOGRAM_SCALE_DB).unsqueeze(1)           # (B, 1, 8)
        return self.proj(torch.flatten(self.pool(F.relu(self.conv(a))), 1))  # (B, F)


class _AxisConv(nn.Module):
    """Residual depthwise-separable conv along one axis of channels-last ``(B, T, F, C)``.

    Channels-last with the 1×1 convolutions as ``nn.Linear`` and the depthwise kernel as a sum
    of shifted slices: on a CPU this runs ~5× faster than ``nn.Conv2d`` (whose depthwise and 1×1
    cases fall back to slow paths), and the simulator's speed is one of its targets.
    """

    def __init__(self, channels: int, kernel: int, expansion: int, axis: str) -> None:
        super().__init__()
        self.axis = 1 if axis == "time" else 2
        self.kernel = kernel
        hidden = channels * expansion
        self.depthwise = nn.Parameter(torch.zeros(kernel, channels))
        with torch.no_grad():
            self.depthwise[kernel // 2] = 1.0
            self.depthwise.add_(0.1 * torch.randn(kernel, channels))
        self.depthwise_bias = nn.Parameter(torch.zeros(channels))
        self.expand = nn.Linear(channels, hidden)
        self.act = nn.ReLU(inplace=True)
        self.project = nn.Linear(hidden, channels)
        # No normalisation layer (LayerNorm is costly on a CPU, bench_hlsim.py): residual branches
        # start small instead, which keeps the stack near identity at initialisation.
        with torch.no_grad():
            self.project.weight.mul_(0.1)

    def forward(self, h: Tensor) -> Tensor:
        z, ax = h, self.axis
        half = self.kernel // 2
        n = z.shape[ax]
        # Zero-padded "same" convolution without materialising the padded tensor (its copy and
        # fill were a fifth of the simulator's CPU time): each off-centre tap adds into the part
        # of the output it reaches.
        acc = z * self.depthwise[half] + self.depthwise_bias
        for k in range(self.kernel):
            d = k - half
            if d == 0 or abs(d) >= n:
                continue
            if d > 0:
                acc.narrow(ax, 0, n - d).add_(z.narrow(ax, d, n - d) * self.depthwise[k])
            else:
                acc.narrow(ax, -d, n + d).add_(z.narrow(ax, 0, n + d) * self.depthwise[k])
        return h + self.project(self.act(self.expand(acc)))


class DualPathBlock(nn.Module):
    """Time path then frequency path, each residual (seed 003 Sec. II-A2, CNN block)."""

    def __init__(self, cfg: HLSimConfig) -> None:
        super().__init__()
        self.time = _AxisConv(cfg.channels, cfg.kernel_time, cfg.expansion, "time")
        self.freq = _AxisConv(cfg.channels, cfg.kernel_freq, cfg.expansion, "freq")

    def forward(self, h: Tensor) -> Tensor:
        return self.freq(self.time(h))


class _HalveFreq(nn.Module):
    """Stride-2 frequency down-sampling of ``(B, T, F, C)``: pairs of bins → one (F odd: pad one)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * c_in, c_out)

    def forward(self, h: Tensor) -> Tensor:
        b, t, f, c = h.shape
        if f % 2:
            h = F.pad(h, [0, 0, 0, 1])
        return self.proj(h.reshape(b, t, (f + 1) // 2, 2 * c))


class _DoubleFreq(nn.Module):
    """Inverse of :class:`_HalveFreq` (a transposed conv with kernel = stride = 2), not cropped.

    Output bin ``j`` depends only on input bin ``j // 2``, so a decoder may double all the way
    up and crop to F once at the end (:meth:`HLSim.run_decoder`) with the same values in the kept
    bins: cropping at every stage left each next layer a strided input, and the CPU matmul on a
    strided input took a quarter of the simulator's time.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_out = c_out
        self.proj = nn.Linear(c_in, 2 * c_out)

    def forward(self, h: Tensor) -> Tensor:
        b, t, f, _ = h.shape
        return self.proj(h).reshape(b, t, 2 * f, self.c_out)


class HLSim(nn.Module):
    """The simulator. Input ``x (B, n)``, ``audiogram (B, 8)`` dB HL; ``forward`` returns a
    :class:`SimOutput`: the waveform and the compressed magnitude / phase / complex spectra the
    seed's losses use (:func:`toolchain.train.losses.simulator_loss`).

    Architecture, as seed 003 Fig. 1 (MP-SENet family), sized for a 2-core CPU:

    * **STFT**: Hann, ``n_fft`` 400 → F = 201 bins (the seed's F), hop ``hop``; power-law compressed
      magnitude ``|X|^0.3`` (MP-SENet's compression) and phase ``angle(X)``.
    * **Audiogram encoder** (seed 003 eq. 1): ``a_enc = W · Flatten(AvgPool(ReLU(Conv1d(a))))``,
      8 thresholds → F, broadcast over time as an extra input channel.
    * Input channels: compressed magnitude, phase, audiogram channel, and (our addition) the bin
      level in dB SPL / 100: MSBG's recruitment is a function of absolute level in dB, which a small
      network learns far faster from a log input than from ``|X|^0.3`` alone.
    * **Dense encoder** → C channels, frequency halved (stride 2); **dual-path blocks** (seed 003
      Sec. II-A2, the "CNN block" variant: a depthwise-separable 1-D convolution along time, then
      along frequency, each with channel expansion, activation and a residual); the time path is
      non-causal (the simulator is an offline training/evaluation tool, not a deployed model).
    * **Magnitude-mask decoder**: transposed conv back to F, learnable sigmoid ``β·σ(s·h)`` with
      β = 2 (MP-SENet) times the input's compressed magnitude. **Phase decoder**: two parallel
      heads (real, imaginary) → ``atan2`` (MP-SENet's parallel phase estimation), so the phase is
      never wrapped inside the network; the pair is applied as a rotation of the input phase, and
      both decoders start as the identity (MSBG's output phase is near its input's).
    * Inverse STFT of ``mag^(1/0.3) · e^{jφ}`` → waveform the length of the input.
    """

    def __init__(self, config: HLSimConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or HLSimConfig()
        self.calibration = LevelCalibration(full_scale_sine_db_spl=cfg.full_scale_sine_db_spl)
        c = cfg.channels
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.audiogram_encoder = AudiogramEncoder(cfg.n_freq, cfg.audiogram_conv_channels)
        n_in = 4   # compressed magnitude, phase, audiogram channel, bin level
        if cfg.lean:
            down: list[nn.Module] = [_HalveFreq(n_in, c), nn.ReLU(inplace=True)]
            for _ in range(cfg.freq_stages - 1):
                down += [_HalveFreq(c, c), nn.ReLU(inplace=True)]
        else:
            down = [nn.Linear(n_in, c), nn.ReLU(inplace=True)]
            for _ in range(cfg.freq_stages):
                down += [_HalveFreq(c, c), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*down)
        self.blocks = nn.Sequential(*[DualPathBlock(cfg) for _ in range(cfg.blocks)])

        def decoder(out: int) -> nn.Sequential:
            up: list[nn.Module] = []
            for _ in range(cfg.freq_stages - (1 if cfg.lean else 0)):
                up += [_DoubleFreq(c, c), nn.ReLU(inplace=True)]
            return nn.Sequential(*up, _DoubleFreq(c, out) if cfg.lean else nn.Linear(c, out))

        self.mask_slope = nn.Parameter(torch.ones(cfg.n_freq))   # learnable sigmoid slope per bin
        if cfg.lean:
            self.decoder = decoder(3)                             # mask logit, phase real, phase imaginary
            heads = [self.decoder[-1].proj]
        else:
            self.mask_decoder = decoder(1)
            self.phase_decoder = decoder(2)
            heads = [self.mask_decoder[-1], self.phase_decoder[-1]]
        # Both heads start as the identity (mask β·σ(0) = 1; phase rotation 1 + 0j): MSBG's output
        # is close to its input in phase, so training starts from "no hearing loss", not from noise.
        with torch.no_grad():
            for head in heads:
                head.weight.mul_(0.01)
                head.bias.zero_()
            if cfg.lean:
                self.decoder[-1].proj.bias[1::3] = 1.0            # (bin pair, head) layout: re of each bin
            else:
                self.phase_decoder[-1].bias[0] = 1.0

    # ------------------------------------------------------------------ spectra
    def stft(self, x: Tensor) -> Tensor:
        """Complex STFT (B, F, T) with this simulator's window and hop."""
        cfg = self.config
        return torch.stft(x, cfg.n_fft, cfg.hop, cfg.n_fft, self.window, center=True, return_complex=True)

    def compressed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(|X|^c, angle(X), compressed complex (B, 2, F, T))`` of a waveform: the loss domain."""
        spec = self.stft(x)
        mag = (spec.abs() + 1e-9) ** self.config.compress
        pha = torch.angle(spec)
        return mag, pha, torch.stack([mag * torch.cos(pha), mag * torch.sin(pha)], 1)

    def istft(self, spec: Tensor, length: int) -> Tensor:
        """Waveform ``(B, length)`` of a complex (linear, not compressed) spectrum: :meth:`stft`'s inverse."""
        cfg = self.config
        return torch.istft(spec, cfg.n_fft, cfg.hop, cfg.n_fft, self.window, center=True, length=length)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, audiogram_db_hl: Tensor) -> SimOutput:
        x, audiogram_db_hl = self._batched(x, audiogram_db_hl)
        h, mag_in, cos_in, sin_in = self.encode(x, audiogram_db_hl)
        logit, ri = self.heads(h)
        return self.decode(ri, mag_in * self._mask(logit), cos_in, sin_in, x.shape[-1])

    @staticmethod
    def _batched(x: Tensor, audiogram_db_hl: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if audiogram_db_hl.dim() == 1:
            audiogram_db_hl = audiogram_db_hl.unsqueeze(0).expand(x.shape[0], -1)
        return x, audiogram_db_hl

    def _mask(self, logit: Tensor) -> Tensor:
        """``β·σ(slope·logit)`` as ``(B, F, T)`` from the mask logit ``(B, F, T)``."""
        return self.config.mask_beta * torch.sigmoid(self.mask_slope[:, None] * logit)

    def heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The decoders' outputs cropped to the F bins: mask logit ``(B, F, T)``, phase (re, im) ``(B, F, T, 2)``."""
        if self.config.lean:
            out = self.run_decoder(self.decoder, h).transpose(1, 2)                      # (B, F, T, 3)
            return out[..., 0], out[..., 1:]
        logit = self.run_decoder(self.mask_decoder, h)[..., 0].transpose(1, 2)
        return logit, self.run_decoder(self.phase_decoder, h).transpose(1, 2)

    def run_decoder(self, decoder: nn.Module, h: Tensor) -> Tensor:
        """``decoder(h)`` cropped to the F STFT bins: ``(B, T, F, out)``."""
        return decoder(h)[:, :, : self.config.n_freq]

    def encode(self, x: Tensor, audiogram_db_hl: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(hidden (B, T, F', C), |X|^c (B, F, T), cos, sin of the input phase)`` of ``x (B, n)``."""
        spec = self.stft(x)
        power = spec.real ** 2 + spec.imag ** 2
        mag_in = (power + POWER_FLOOR) ** (self.config.compress / 2)
        # The phase *feature* carries no gradient: d angle/dX ~ 1/|X| explodes in silent bins. The
        # phase that reaches the output goes through cos_in / sin_in below, whose gradient is bounded.
        pha_in = torch.angle(spec).detach()
        norm = torch.rsqrt(power + POWER_FLOOR)
        cos_in, sin_in = spec.real * norm, spec.imag * norm
        # Bin level in dB SPL (Hann-window energy normalised), /100: the level MSBG's recruitment uses;
        # added to the level of POWER_FLOOR rather than clamped, so its gradient stays bounded too.
        win_energy = float((self.window ** 2).sum())
        to_bin = 2.0 / (win_energy * self.config.n_fft)
        level = self.calibration.power_to_db_spl_tensor((power + POWER_FLOOR) * to_bin, floor_power=1e-30)
        aud = self.audiogram_encoder(audiogram_db_hl)[:, :, None].expand_as(mag_in)
        feats = torch.stack([mag_in, pha_in, aud, level / 100.0], -1).transpose(1, 2)   # (B, T, F, 4)
        return self.blocks(self.encoder(feats)), mag_in, cos_in, sin_in

    def decode(self, ri: Tensor, mag: Tensor, cos_in: Tensor, sin_in: Tensor, length: int) -> SimOutput:
        """The output from its compressed magnitude ``mag (B, F, T)`` and the phase heads ``ri (B, F, T, 2)``."""
        # Parallel phase estimation (real, imaginary heads → atan2) as a rotation of the input phase.
        re, im = ri[..., 0], ri[..., 1]
        phase = torch.atan2(sin_in * re + cos_in * im, cos_in * re - sin_in * im)
        wave = self.istft(torch.polar(mag ** (1.0 / self.config.compress), phase), length)
        cplx = torch.stack([mag * torch.cos(phase), mag * torch.sin(phase)], 1)
        return SimOutput(wave, mag, phase, cplx)

    def simulate(self, x: Tensor, audiogram_db_hl: Tensor) -> Tensor:
        """Waveform only (what a compensator's loss sees): ``forward(x, a).wave`` without the loss spectra.

        The rotated phasor is normalised directly instead of going through ``atan2`` and back
        through ``cos``/``sin`` (same value: ``e^{j·atan2(b, a)} = (a + jb) / |a + jb|``).
        """
        x, audiogram_db_hl = self._batched(x, audiogram_db_hl)
        h, mag_in, cos_in, sin_in = self.encode(x, audiogram_db_hl)
        logit, ri = self.heads(h)
        re, im = ri[..., 0], ri[..., 1]
        pr, pi = cos_in * re - sin_in * im, sin_in * re + cos_in * im
        mag = (mag_in * self._mask(logit)) ** (1.0 / self.config.compress)
        # |(pr, pi)| = 0 (digital silence) has no direction; forward's atan2 gives 0 or π there by
        # the sign of a zero real part (atan2(0, -0) = π), so the phasor is ±1 + 0j.
        norm = torch.sqrt(pr * pr + pi * pi)
        zero = norm == 0
        scale = mag / torch.where(zero, torch.ones_like(norm), norm)
        spec = torch.complex(torch.where(zero, torch.copysign(mag, pr), pr * scale), pi * scale)
        return self.istft(spec, x.shape[-1])


def save_hlsim(model: HLSim, path: str, extra: dict[str, Any] | None = None) -> None:
    """Config + weights (+ training metadata) written atomically."""

    payload = {"kind": "hlsim", "config": model.config.to_dict(), "state_dict": model.state_dict(), "extra": extra or {}}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def load_hlsim(path: str, map_location: str = "cpu") -> HLSim:
    """Load a :func:`save_hlsim` checkpoint, in eval mode."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if ckpt.get("kind") != "hlsim":
        raise HLSimConfigError(f"{path}: not a hearing-loss simulator checkpoint (kind={ckpt.get('kind')!r})")
    model = HLSim(HLSimConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


__all__ = ["HLSim", "HLSimConfig", "HLSimConfigError", "SimOutput", "load_hlsim", "save_hlsim"]
