"""Shared test helpers (not fixtures): non-trivial models and short speech."""

from __future__ import annotations

import numpy as np
import torch

from toolchain.models.compensators.seanet import SEANet, SEANetConfig

# Round 2 · 1 of 6: the shipped default's device graph (16x8) against fp32, end to end on held-out
# speech at 60-70 dB SPL (per-level targets: tests/toolchain/export/test_self_noise.py).
DEFAULT_DEVICE_SNR_DB = 45.0
# Random-weight models (no noise training) only have to stay clear of broken graphs.
INT8_SNR_FLOOR_DB = 12.0

MODERATE = np.array([20, 25, 35, 45, 50, 55, 60, 65], np.float32)


def randomised_seanet(seed: int = 0, config: SEANetConfig = SEANetConfig()) -> SEANet:
    """A SEANet with random (not pass-through) weights, so graph errors cannot hide."""
    torch.manual_seed(seed)
    m = SEANet(config)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() > 1 and "audiogram" not in name:
                fan_in = p.shape[1] * p.shape[-1]
                p.normal_(0.0, 0.5 / np.sqrt(fan_in))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            elif "audiogram" in name:
                p.normal_(0.0, 0.05)
    return m.eval()


def speech_clip(split: str = "test", index: int = 0, seconds: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
    """A deterministic synthetic speech-in-noise clip from the corpus (noisy mixture)."""
    from toolchain.audio.data import CorpusConfig, SyntheticCorpus

    corpus = SyntheticCorpus(split, CorpusConfig(sample_rate=sample_rate, seconds=seconds), seed=0, size=index + 1)
    return corpus[index].noisy.astype(np.float32)
