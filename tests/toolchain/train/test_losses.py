"""Tests for the compensator's training loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.audio.audiogram import PRESETS
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.models.hearing.hl_filterbank import FilterbankHearingLoss
from toolchain.train.losses import LossConfig, compensation_loss, limit_penalty, spectral_shape_loss

SR = 16000


@pytest.fixture(scope="module")
def hl() -> FilterbankHearingLoss:
    return FilterbankHearingLoss()


def speechy(db_spl: float, seed: int, batch: int = 2, seconds: float = 0.5) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = []
    for _ in range(batch):
        spec = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SR), 50.0))
        x = np.fft.irfft(spec, n) * (1.1 + np.sin(2 * np.pi * rng.uniform(2, 6) * t))
        out.append(DEFAULT_CALIBRATION.set_level(x, db_spl))
    return torch.tensor(np.stack(out))


def test_zero_when_compensated_is_clean_for_normal_hearing(hl: FilterbankHearingLoss) -> None:
    clean = speechy(65.0, 0)
    normal = torch.zeros(2, 8)
    loss, parts = compensation_loss(hl, clean, clean, normal)
    assert float(loss) < 1e-4
    assert set(parts) == {"perceptual", "spectral", "limit", "ucl", "total"}
    assert parts["perceptual"] < 1e-4 and parts["limit"] == 0.0 and parts["ucl"] == 0.0
    # Accepts (B, 1, n) too.
    loss3, _ = compensation_loss(hl, clean[:, None], clean[:, None], normal)
    assert float(loss3) < 1e-4


def test_hearing_loss_raises_the_loss_and_gain_lowers_it(hl: FilterbankHearingLoss) -> None:
    clean = speechy(60.0, 1)
    a = torch.tensor([PRESETS["moderate-sloping"]] * 2)
    _, unprocessed = compensation_loss(hl, clean, clean, a)
    _, amplified = compensation_loss(hl, clean * 10 ** (20 / 20), clean, a)
    assert unprocessed["perceptual"] > 5.0
    assert amplified["perceptual"] < unprocessed["perceptual"]


def test_gradient_reaches_the_compensated_signal(hl: FilterbankHearingLoss) -> None:
    clean = speechy(60.0, 2)
    y = (clean * 1.5).requires_grad_(True)
    loss, _ = compensation_loss(hl, y, clean, torch.tensor([PRESETS["mild-flat"]] * 2))
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_limit_penalty_only_above_the_limit() -> None:
    y = torch.zeros(2, 100)
    y[0, 10] = 0.89
    y[1, 20] = -0.5
    assert float(limit_penalty(y, 0.89)) == 0.0
    y[0, 11] = -0.99
    assert float(limit_penalty(y, 0.89)) == pytest.approx(0.10 / 2, abs=1e-6)
    assert float(limit_penalty(y, 1.0)) == 0.0
    # In the full loss: positive when a sample exceeds the limit, zero otherwise.
    hl = FilterbankHearingLoss()
    clean = speechy(60.0, 3)
    normal = torch.zeros(2, 8)
    _, parts = compensation_loss(hl, clean, clean, normal)
    assert parts["limit"] == 0.0
    loud = clean / clean.abs().amax(dim=-1, keepdim=True) * 0.95
    _, parts = compensation_loss(hl, loud, clean, normal)
    assert parts["limit"] > 0.0
    _, parts = compensation_loss(hl, loud, clean, normal, LossConfig(output_limit=0.96))
    assert parts["limit"] == 0.0


def test_ucl_penalty_for_energy_far_above_ucl(hl: FilterbankHearingLoss) -> None:
    clean = speechy(60.0, 4)
    a = torch.zeros(2, 8)
    _, quiet = compensation_loss(hl, clean, clean, a)
    loud = torch.tensor(DEFAULT_CALIBRATION.set_level(clean.numpy(), 118.0, axis=-1))
    _, blasting = compensation_loss(hl, loud, clean, a)
    assert quiet["ucl"] == 0.0 and blasting["ucl"] > 0.0


def test_spectral_term_ignores_a_static_gain_but_not_noise() -> None:
    clean = speechy(60.0, 5)
    eq = torch.fft.irfft(torch.fft.rfft(clean) * torch.linspace(0.5, 4.0, clean.shape[-1] // 2 + 1), clean.shape[-1])
    noisy = clean + 0.3 * clean.std() * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert float(spectral_shape_loss(clean * 3.0, clean)) < 1e-3
    assert float(spectral_shape_loss(eq, clean)) < 0.5 * float(spectral_shape_loss(noisy, clean))


def test_loss_config_validation() -> None:
    with pytest.raises(ValueError, match="output_limit"):
        LossConfig(output_limit=1.5)
    with pytest.raises(ValueError, match="loss config: unknown key .wat.; expected one of perceptual"):
        LossConfig.from_dict({"perceptual": 1.0, "wat": 2})
    assert LossConfig.from_dict(LossConfig().to_dict()) == LossConfig()


# ------------------------------------------------------------------ simulator losses (seed 003)
def test_phase_losses_are_zero_for_identical_phase_and_wrap_invariant():
    import math

    from toolchain.train.losses import anti_wrap, phase_losses

    torch.manual_seed(0)
    p = (torch.rand(2, 9, 7) * 2 - 1) * math.pi
    zero = phase_losses(p, p)
    assert all(float(v) == 0.0 for v in zero.values())
    shifted = phase_losses(p, p + 2 * math.pi * torch.randint(-3, 4, p.shape).float())
    assert all(float(v) < 1e-5 for v in shifted.values())
    off = phase_losses(p, p + 0.5)
    assert abs(float(off["ip"]) - 0.5) < 1e-5 and float(off["gd"]) < 1e-5 and float(off["iaf"]) < 1e-5
    assert torch.allclose(anti_wrap(torch.tensor([0.0, math.pi, 2 * math.pi, -0.25])),
                          torch.tensor([0.0, math.pi, 0.0, 0.25]), atol=1e-6)


def test_simulator_loss_terms_on_known_signals():
    from toolchain.models.hearing.hlsim import HLSim, HLSimConfig
    from toolchain.train.losses import SimLossConfig, simulator_loss

    sim = HLSim(HLSimConfig(channels=8, blocks=1))
    y = torch.randn(2, 4000) * 0.05
    mag, pha, cpx = sim.compressed(y)

    class Same:  # an "output" identical to the target
        pass

    same = Same()
    same.mag, same.phase, same.complex, same.wave = mag, pha, cpx, y
    total, parts = simulator_loss(same, mag, pha, cpx, y, SimLossConfig())
    assert float(total) < 1e-6 and parts["time"] == 0.0
    louder = Same()
    m2, p2, c2 = sim.compressed(2 * y)
    louder.mag, louder.phase, louder.complex, louder.wave = m2, p2, c2, 2 * y
    _, parts2 = simulator_loss(louder, mag, pha, cpx, y, SimLossConfig())
    assert parts2["magnitude"] > 0 and parts2["time"] > 0 and parts2["phase"] < 1e-3  # same phase
