"""Noise injection for int8 robustness: one step per tensor, a cheat-proof SNR, a real gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import MODERATE, randomised_seanet
from toolchain.models.compensators.seanet import ResidualUnit, SEANet
from toolchain.models.compensators.streaming import CausalConv1d, CausalConvTranspose1d
from toolchain.train.quant_noise import activation_noise, noise_snr_db, quant_noise_loss, quant_step


def test_step_spans_each_examples_range_and_zero():
    t = torch.tensor([[[1.0, 3.0]], [[-2.0, 1.0]], [[-0.5, -0.25]]])          # (B, C, n)
    step = quant_step(t)
    assert step.shape == (3, 1, 1)
    # [0, 3] (zero included), [-2, 1], [-0.5, 0]: one grid per example, as per-audiogram calibration
    torch.testing.assert_close(step.ravel(), torch.tensor([3.0, 3.0, 0.5]) / 255)
    assert quant_step(t, levels=16)[1].item() == pytest.approx(3.0 / 15)


def test_every_quantised_tensor_gets_at_most_half_a_step():
    m = randomised_seanet(1)
    expected = sum(isinstance(k, (CausalConv1d, CausalConvTranspose1d, ResidualUnit, nn.PReLU))
                   for n, k in m.named_modules() if not n.startswith("audiogram_encoder"))
    x = torch.randn(2, 1, 320) * 0.1
    a = torch.from_numpy(MODERATE).expand(2, -1)
    seen: dict[str, torch.Tensor] = {}
    torch.manual_seed(0)
    with torch.no_grad(), activation_noise(m) as hooked:
        # A hook registered after the noise hooks sees the noisy output of out_act; its input
        # (the previous tensor) is noisy too, so compare against a clean out_act on that input.
        h = m.out_act.register_forward_hook(lambda _m, i, o: seen.update(inp=i[0].detach(), out=o.detach()))
        m(x, a)
        h.remove()
    assert hooked == expected > 40
    exact = m.out_act(seen["inp"]).detach()
    diff = (seen["out"] - exact).abs()
    step = quant_step(exact)
    assert (diff.amax(dim=(1, 2)) > 0).all() and (diff <= 0.5 * step + 1e-7).all()
    # the hooks are gone afterwards: the model is deterministic again
    with torch.no_grad():
        assert torch.equal(m(x, a), m(x, a))


def test_snr_per_clip():
    ref = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    noisy = ref + torch.tensor([[0.1, 0.0], [0.0, -0.2]])
    torch.testing.assert_close(noise_snr_db(ref, ref, noisy),
                               torch.tensor([10 * np.log10(2.0 / 0.01), 10 * np.log10(4.0 / 0.04)], dtype=torch.float32))


def test_a_pass_through_is_noise_free():
    """Why the term joins late in training: the untrained network (output conv at zero) passes
    none of its internal noise on, so from step 0 the term would reward doing nothing."""
    m = SEANet()
    x = torch.randn(2, 1, 320) * 0.1
    a = torch.from_numpy(MODERATE).expand(2, -1)
    y = m(x, a)
    loss, snr = quant_noise_loss(m, x, a, y, target_db=40.0)
    assert snr > 150 and loss.item() == 0.0


def test_loss_has_a_gradient_but_no_dc_escape():
    m = randomised_seanet(2).train()
    x = torch.randn(2, 1, 320) * 0.1
    a = torch.from_numpy(MODERATE).expand(2, -1)
    torch.manual_seed(0)
    y = m(x, a)
    loss, snr = quant_noise_loss(m, x, a, y, target_db=80.0)
    assert 0 < snr < 80 and loss.item() == pytest.approx(80.0 - snr, abs=1e-3)   # every clip below 80 dB
    loss.backward()
    assert m.in_conv.conv.weight.grad.abs().sum() > 0
    # A DC offset on the output (out_conv's bias) is inaudible to the hearing-loss loss; measured
    # against its own output the network raised one to -0.59 full scale instead of lowering its
    # noise. Against the detached, mean-removed reference it buys nothing.
    assert m.out_conv.conv.bias.grad.abs().item() < 1e-6 * m.in_conv.conv.weight.grad.abs().sum().item()


def test_fitted_models_take_the_noise_too():
    m = randomised_seanet(3).fit(MODERATE)
    x = torch.randn(1, 1, 320) * 0.1
    with torch.no_grad():
        y = m(x)
        _, snr = quant_noise_loss(m, x, None, y, target_db=40.0)
    assert np.isfinite(snr) and 0 < snr < 100
