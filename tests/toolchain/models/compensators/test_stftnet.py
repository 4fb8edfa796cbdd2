"""The Neuro-MSBG-style stftnet teacher: contract of the registry, identity start, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.models.compensators.registry import compensator_kinds, load_compensator
from toolchain.models.compensators.stftnet import STFTNet, STFTNetConfig, save_stftnet

SMALL = STFTNetConfig(channels=8, blocks=1)


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2)))


def test_shapes_and_identity_at_initialisation():
    torch.manual_seed(0)
    net = STFTNet(SMALL).eval()
    x = torch.randn(2, 1, 4000) * 0.05
    with torch.no_grad():
        y = net(x, torch.full((2, 8), 40.0))
    assert y.shape == x.shape and torch.isfinite(y).all()
    # Gain mapping and phase rotation both start at identity: output ≈ input before training.
    assert _snr_db(x.numpy()[:, 0, 400:-400], y.numpy()[:, 0, 400:-400]) > 20


def test_gain_mapping_is_bounded_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = STFTNet(STFTNetConfig(channels=8, blocks=1, max_gain_db=20.0))
    x = (torch.randn(2, 1, 4000) * 0.05).requires_grad_(True)
    y = net(x, torch.full((2, 8), 50.0))
    (y ** 2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient for {missing}"
    with torch.no_grad():
        net.mask_decoder[-1].bias.fill_(100.0)   # saturate the mapping: +max_gain_db at most
        loud = net(x.detach(), torch.full((2, 8), 50.0))
    gain_db = 20 * np.log10(float(loud.abs().max()) / float(x.detach().abs().max()))
    assert 10.0 < gain_db < 20.0 + 3.0


def test_fit_bakes_in_the_audiogram_and_checkpoints_load_through_the_registry(tmp_path):
    torch.manual_seed(1)
    net = STFTNet(SMALL).eval()
    a = np.array([20, 25, 35, 45, 50, 55, 60, 65], np.float32)
    x = torch.randn(1, 1, 3000) * 0.05
    fitted = net.fit(a)
    with torch.no_grad():
        assert torch.allclose(fitted(x), net(x, torch.as_tensor(a)[None]))
    with pytest.raises(ValueError, match="already fitted"):
        fitted.fit(a)
    with pytest.raises(ValueError, match="needs an audiogram"):
        net(x)
    path = tmp_path / "t.pt"
    save_stftnet(net, str(path), extra={"role": "teacher"})
    assert "stftnet" in compensator_kinds()
    comp = load_compensator(path)
    assert comp.kind == "stftnet" and comp.extra["role"] == "teacher" and comp.block_multiple == 1
    run = comp.fitted(a)
    with torch.no_grad():
        np.testing.assert_allclose(run(x.numpy()[0, 0]), net(x, torch.as_tensor(a)[None]).numpy()[0, 0], atol=1e-6)
