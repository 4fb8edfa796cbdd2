"""Midbrain comparison on the full-precision path: ICNet / ψ-ICNet in fp32, CUDA when present.

The question the verifier asks (DESIGN.md, "Verification on the full-precision path"): does the
impaired midbrain, listening to compensated speech, respond like a normal midbrain listening to
the clean speech? For each condition — unprocessed, compensated (the bundle's int8 output),
NAL-R — the *test* model's response is compared with two trials sampled from the *reference*
model's response to the clean speech (FEVE, seed 000 Eq. 4; KL_W, Eq. 5; per-channel
correlation). The reference model's own expectation gives the ceiling, and "gap closed" says how
far from the unprocessed value towards that ceiling the compensator gets.

Models (both fp32): the reference is the normal-hearing model, the test model the impaired one
(ψ-ICNet with ψ for the listener's audiogram). Both must share their output units, so with a
ψ-ICNet both come from it (ψ for 0 dB HL vs ψ for the audiogram). With ICNet alone there is no
impaired model: the comparison then runs ICNet on both sides and says so — it measures how the
processing changes a *normal* midbrain's response, not how much of the hearing-loss gap closes.

Audio goes to the model as the seeds prescribe: resampled to 24414.0625 Hz (soxr), scaled with
the project's one SPL calibration to ICNet's units (RMS 0.04 = 94 dB SPL), cut into frames of
8192 samples with 2048 samples of left context, and batched.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from toolchain.audio.io import resample
from toolchain.verify.metrics import FidelityAccumulator, gap_closed
from toolchain.verify.midbrain.icnet import (
    FRAME_SAMPLES,
    FS_AUDIO,
    ICNet,
    ICNetConfig,
    PsiICNet,
    count_probabilities,
    expected_counts,
    frame_signal,
    sample_counts,
    to_icnet_units,
)

CEILING = "normal hearing (ceiling)"
DEVICES = ("auto", "cuda", "cpu")


# ------------------------------------------------------------------------------ device
def select_device(requested: str | None = None) -> tuple[torch.device, str]:
    """``(device, note)``: CUDA when asked for or available, else the CPU (never an error)."""
    req = (requested or "auto").lower()
    if req not in DEVICES:
        raise ValueError(f"unknown device {requested!r}; expected one of {', '.join(DEVICES)}")
    if req == "cpu":
        return torch.device("cpu"), "CPU (requested)"
    try:
        available = bool(torch.cuda.is_available())
    except Exception:  # a broken driver install must not stop a CPU run
        available = False
    if available:
        try:
            name = torch.cuda.get_device_name(0)
        except Exception:
            name = "CUDA device"
        return torch.device("cuda"), f"CUDA ({name})"
    if req == "cuda":
        return torch.device("cpu"), "CUDA requested but not available: fell back to the CPU"
    return torch.device("cpu"), "no CUDA device: running on the CPU"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------ models
@dataclass
class MidbrainModel:
    """A model with fixed conditioning, seen as ``frames (B, context + frame) → (B, T, units, classes)``."""

    name: str
    module: torch.nn.Module
    psi: Tensor | None = None  # ψ-ICNet conditioning values (1, n_psi), post-sigmoid
    branches: Sequence[int] | None = None  # ICNet branches whose units are concatenated
    hours: float | None = None  # ICNet time input (None → the stationary default)

    @property
    def config(self) -> ICNetConfig:
        m = self.module
        return m.config.encoder if isinstance(m, PsiICNet) else m.config

    @property
    def units(self) -> int:
        c = self.config
        if isinstance(self.module, PsiICNet):
            return c.decoder_units
        return c.decoder_units * (c.n_branches if self.branches is None else len(self.branches))

    def to(self, device: torch.device) -> "MidbrainModel":
        self.module.to(device=device, dtype=torch.float32).eval()
        if self.psi is not None:
            self.psi = self.psi.to(device=device, dtype=torch.float32)
        return self

    def distribution(self, frames: Tensor) -> Tensor:
        m = self.module
        if isinstance(m, PsiICNet):
            if self.psi is None:
                raise ValueError(f"{self.name}: ψ-ICNet needs its ψ")
            return m(frames, self.psi.expand(frames.shape[0], -1))
        assert isinstance(m, ICNet)
        r_b = m.bottleneck(frames)
        time_in = None
        if self.hours is not None:
            time_in = m.time_input(frames.shape[0], r_b.shape[-1], self.hours, device=frames.device)
        out = m.decode(r_b, time_in, self.branches)  # (B, nb, T, U, K)
        b, nb, t, u, k = out.shape
        return out.permute(0, 2, 1, 3, 4).reshape(b, t, nb * u, k)


@dataclass
class Response:
    """A model's response to one signal: expected counts, summed count distribution, trials."""

    mean: np.ndarray  # (T, units) float32, E_C[R]
    dist_sum: np.ndarray  # (units, 5) float64, Σ_t p(count)
    trials: np.ndarray | None  # (2, T, units) int8 sampled counts, when asked for
    model_seconds: float  # wall time in the model (device-synchronised)
    audio_seconds: float


def simulate(model: MidbrainModel, audio: np.ndarray, device: torch.device, *, batch_frames: int = 4,
             trials: bool = False, generator: torch.Generator | None = None) -> Response:
    """Run ``model`` on ``audio`` (ICNet units at 24414.0625 Hz, shape ``(n,)``) frame by frame, batched."""
    cfg = model.config
    x = np.asarray(audio, np.float32).reshape(-1)
    if x.size == 0:
        raise ValueError("no audio to simulate")
    frames = frame_signal(x, cfg, FRAME_SAMPLES)
    bins = -(-x.size // cfg.decimation)
    means, samples = [], []
    dist_sum = np.zeros((model.units, 5), np.float64)
    elapsed = 0.0
    done = 0
    with torch.inference_mode():
        for i in range(0, len(frames), max(1, int(batch_frames))):
            chunk = torch.from_numpy(frames[i:i + batch_frames])
            _sync(device)
            t0 = time.perf_counter()
            dist = model.distribution(chunk.to(device))
            _sync(device)
            elapsed += time.perf_counter() - t0
            b, t = dist.shape[:2]
            dist = dist.reshape(b * t, *dist.shape[2:])
            keep = min(b * t, bins - done)
            dist = dist[:keep]
            p = count_probabilities(dist)
            means.append(expected_counts(dist).float().cpu().numpy())
            dist_sum += p.sum(0).double().cpu().numpy()
            if trials:
                gen_device = generator.device if generator is not None else device
                pp = p if p.device == gen_device else p.to(gen_device)
                samples.append(torch.stack([sample_counts(pp, generator), sample_counts(pp, generator)]).cpu().numpy())
            done += keep
            if done >= bins:
                break
    return Response(mean=np.concatenate(means, 0), dist_sum=dist_sum,
                    trials=np.concatenate(samples, 1) if trials else None,
                    model_seconds=elapsed, audio_seconds=x.size / cfg.sample_rate)


def time_model(model: MidbrainModel, device: torch.device, *, seconds: float = 1.0, batch_frames: int = 4,
               seed: int = 0) -> dict[str, Any]:
    """Seconds of compute per second of audio (after a warm-up frame on CUDA), on noise at ~65 dB SPL."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FS_AUDIO))
    x = to_icnet_units(rng.standard_normal(n).astype(np.float32) * 0.02)
    model.to(device)
    if device.type == "cuda":
        simulate(model, x[:FRAME_SAMPLES], device, batch_frames=1)  # warm-up (CUDA context, kernels, allocator)
    r = simulate(model, x, device, batch_frames=batch_frames)
    return {"seconds_per_second": r.model_seconds / r.audio_seconds, "audio_seconds": r.audio_seconds,
            "model_seconds": r.model_seconds, "batch_frames": int(batch_frames), "device": str(device)}


# ------------------------------------------------------------------------------ ψ
def psi_for_audiogram(mapping: Mapping[str, Any] | None, thresholds_db_hl: Sequence[float], n_psi: int) -> np.ndarray:
    """Raw ψ means for an audiogram from a checkpoint's ``audiogram_to_psi`` linear map.

    ``mapping = {"weight": (n_psi, 8), "bias": (n_psi,)}`` applied to thresholds / 100.

    The map is the user's, not the seed's: seed 000 learns ψ per animal from recordings of
    midbrain activity (and argues audiometric thresholds describe hearing loss less well; its
    ABRNet variant, which feeds ABR thresholds instead of learned ψ, did worse). Nothing in the
    seeds maps a human audiogram to ψ. Whoever trains a ψ-ICNet and fits such a map stores it
    with that checkpoint (:func:`toolchain.verify.midbrain.icnet.save_psi_icnet`); without one, ψ must be
    given explicitly (``toolchain verify --psi / --psi-normal``).
    """
    if mapping is None:
        raise ValueError("the ψ-ICNet checkpoint has no audiogram → ψ map (a user-supplied map; ψ-ICNet, Pellatt et al. 2025, learns ψ "
                         "per animal, not from audiograms)")
    w = np.asarray(mapping.get("weight"), np.float64)
    b = np.asarray(mapping.get("bias", np.zeros(n_psi)), np.float64).reshape(-1)
    a = np.asarray(thresholds_db_hl, np.float64).reshape(-1) / 100.0
    if w.shape != (n_psi, a.size) or b.shape != (n_psi,):
        raise ValueError(f"audiogram → ψ map has weight {w.shape} / bias {b.shape}; expected ({n_psi}, {a.size}) / "
                         f"({n_psi},)")
    return (w @ a + b).astype(np.float32)


# ------------------------------------------------------------------------------ comparison
@dataclass
class Comparison:
    """Result of :func:`compare`: one row per condition plus timing."""

    reference: str
    test: str
    impaired: bool
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # a short stretch of responses, for plots

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference_model": self.reference, "test_model": self.test,
                               "impaired_model": self.impaired, "timing": self.timing, "conditions": {}}
        for name, r in self.conditions.items():
            out["conditions"][name] = {k: v for k, v in r.items() if k != "per_channel"}
        return out


def _prepare(x: np.ndarray, sample_rate: float, calibration: Any) -> np.ndarray:
    return to_icnet_units(resample(np.asarray(x, np.float32), float(sample_rate), FS_AUDIO), calibration)


def compare(reference: MidbrainModel, test: MidbrainModel, clean: Sequence[np.ndarray],
            processed: Mapping[str, Sequence[np.ndarray]], sample_rate: float, device: torch.device, *,
            impaired: bool, calibration: Any = None, batch_frames: int = 4, seed: int = 0,
            example_bins: int = 400) -> Comparison:
    """Reference model on ``clean`` (two sampled trials) vs test model on each processed version.

    ``processed[name][i]`` is clip ``i`` after processing ``name`` (same length as ``clean[i]``,
    time-aligned). The reference's own expectation is the ceiling condition.
    """
    if reference.units != test.units:
        raise ValueError(f"reference ({reference.units} units) and test ({test.units}) models must share units")
    for name, clips in processed.items():
        if len(clips) != len(clean):
            raise ValueError(f"condition {name!r} has {len(clips)} clips for {len(clean)} clean ones")
    reference.to(device)
    test.to(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    acc = FidelityAccumulator(reference.units)
    model_s: dict[str, float] = {}
    audio_s = 0.0
    cmp = Comparison(reference=reference.name, test=test.name, impaired=impaired)
    for i, x in enumerate(clean):
        ref = simulate(reference, _prepare(x, sample_rate, calibration), device, batch_frames=batch_frames,
                       trials=True, generator=gen)
        assert ref.trials is not None
        model_s["reference"] = model_s.get("reference", 0.0) + ref.model_seconds
        audio_s += ref.audio_seconds
        conds = {CEILING: (ref.mean, ref.dist_sum)}
        if i == 0:
            cmp.examples[CEILING] = ref.mean[:example_bins]
        for name, clips in processed.items():
            if len(clips[i]) != len(x):
                raise ValueError(f"condition {name!r}: clip {i} has {len(clips[i])} samples, the clean one {len(x)}")
            r = simulate(test, _prepare(clips[i], sample_rate, calibration), device, batch_frames=batch_frames)
            model_s[name] = model_s.get(name, 0.0) + r.model_seconds
            conds[name] = (r.mean, r.dist_sum)
            if i == 0:
                cmp.examples[name] = r.mean[:example_bins]
        acc.add(ref.trials[0], ref.trials[1], ref.mean, conds)
    for name in acc.conditions:
        cmp.conditions[name] = acc.result(name)
    base = cmp.conditions.get("unprocessed")
    ceil = cmp.conditions[CEILING]
    for name, r in cmp.conditions.items():
        if base is not None and name not in (CEILING, "unprocessed"):
            r["feve_gap_closed"] = gap_closed(base["feve"], r["feve"], ceil["feve"])
            r["kl_w_gap_closed"] = gap_closed(base["kl_w"], r["kl_w"], ceil["kl_w"])
    total = sum(model_s.values())
    runs_audio = audio_s * (1 + len(processed))
    cmp.timing = {"device": str(device), "audio_seconds_per_condition": audio_s, "model_seconds": total,
                  "seconds_per_second": total / runs_audio if runs_audio else math.nan,
                  "batch_frames": int(batch_frames)}
    return cmp


__all__ = ["CEILING", "Comparison", "DEVICES", "MidbrainModel", "Response", "compare", "psi_for_audiogram",
           "select_device", "simulate", "time_model"]
