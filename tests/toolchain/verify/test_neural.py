"""Midbrain comparison plumbing: device choice, framing, the condition comparison, ψ for an audiogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.verify import neural
from toolchain.verify.midbrain.icnet import ICNet, ICNetConfig, PsiICNet, PsiICNetConfig
from toolchain.verify.neural import CEILING, MidbrainModel, compare, psi_for_audiogram, select_device, simulate


def test_device_selection_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dev, note = select_device("cuda")
    assert dev.type == "cpu" and "fell back" in note
    dev, note = select_device(None)
    assert dev.type == "cpu" and "no CUDA" in note
    assert select_device("cpu")[0].type == "cpu"

    def broken() -> bool:
        raise RuntimeError("driver mismatch")

    monkeypatch.setattr(torch.cuda, "is_available", broken)
    assert select_device("auto")[0].type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    dev, note = select_device("auto")
    assert dev.type == "cuda" and "Fake GPU" in note
    assert select_device("cpu")[0].type == "cpu"  # an explicit CPU request wins
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")


class Toy(MidbrainModel):
    """A stand-in midbrain with ICNet's framing: per 32-sample bin, 8 units whose count
    distribution follows the bin's level (dB) against unit thresholds; ``loss_db`` elevates them."""

    def __init__(self, loss_db: float = 0.0) -> None:
        super().__init__(f"toy (loss {loss_db:g} dB)", torch.nn.Identity())
        self.loss_db = loss_db

    @property
    def config(self) -> ICNetConfig:
        return ICNetConfig(n_branches=1)

    @property
    def units(self) -> int:
        return 8

    def to(self, device: torch.device) -> "Toy":
        return self

    def distribution(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, 2048:].reshape(frames.shape[0], -1, 32)
        db = 10 * torch.log10(x.pow(2).mean(-1) + 1e-12) - self.loss_db  # (B, T)
        thr = torch.linspace(-75, -45, 8)
        z = (db.unsqueeze(-1) - thr) / 6.0  # (B, T, 8)
        n = torch.arange(5.0)
        return torch.softmax(n * z.unsqueeze(-1) - 0.5 * n * n, dim=-1)


def test_simulate_frames_batches_and_keeps_time_alignment():
    n = 2 * 8192 + 500
    x = np.zeros(n, np.float32)
    k = 8192 + 3 * 32 + 5  # inside bin 259, in the second frame
    x[k] = 1.0
    for batch in (1, 3):
        r = simulate(Toy(), x, torch.device("cpu"), batch_frames=batch, trials=True)
        assert r.mean.shape == (-(-n // 32), 8) and r.trials.shape == (2, r.mean.shape[0], 8)
        assert int(np.argmax(r.mean[:, 0])) == k // 32
        assert r.dist_sum.shape == (8, 5) and np.allclose(r.dist_sum.sum(-1), r.mean.shape[0])
        assert r.trials.dtype == np.int8 and r.trials.min() >= 0 and r.trials.max() <= 4


def _speechlike(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = np.clip(np.sin(2 * np.pi * 3.3 * t) * np.sin(2 * np.pi * 0.7 * t + 1), 0, None) ** 2
    return (rng.standard_normal(t.size) * env * 0.05).astype(np.float32)


def test_compare_measures_how_much_of_the_gap_is_closed():
    clean = [_speechlike(1.0, 16000, s) for s in range(2)]
    gain = 10 ** (20 / 20)
    processed = {
        "unprocessed": clean,
        "compensated": [c * gain for c in clean],  # undoes the toy's 20-dB threshold elevation exactly
        "half": [c * np.float32(10 ** (10 / 20)) for c in clean],
    }
    cmp = compare(Toy(0.0), Toy(20.0), clean, processed, 16000, torch.device("cpu"), impaired=True, batch_frames=2)
    res = cmp.conditions
    assert set(res) == {CEILING, "unprocessed", "compensated", "half"}
    assert res[CEILING]["feve"] > 0.8 and res[CEILING]["kl_w"] < 0.05
    assert res["unprocessed"]["feve"] < res["half"]["feve"] < res["compensated"]["feve"]
    assert res["compensated"]["feve"] == pytest.approx(res[CEILING]["feve"], abs=1e-3)
    assert res["compensated"]["feve_gap_closed"] == pytest.approx(1.0, abs=0.01)
    assert 0.0 < res["half"]["feve_gap_closed"] < 1.0
    assert res["compensated"]["kl_w_gap_closed"] == pytest.approx(1.0, abs=0.05)
    assert cmp.timing["seconds_per_second"] > 0
    d = cmp.to_dict()
    assert "per_channel" not in d["conditions"]["half"] and d["impaired_model"] is True

    with pytest.raises(ValueError, match="share units"):
        small = Toy()
        small.__class__ = type("Small", (Toy,), {"units": property(lambda self: 4)})
        compare(Toy(), small, clean, processed, 16000, torch.device("cpu"), impaired=True)


def test_midbrain_model_wraps_icnet_and_psi_icnet():
    torch.manual_seed(0)
    net = ICNet(ICNetConfig(n_branches=2)).eval()
    frames = torch.randn(1, 2048 + 64) * 0.01
    mm = MidbrainModel("icnet", net)
    assert mm.units == 1024
    with torch.inference_mode():
        d = mm.distribution(frames)
        direct = net(frames)
    assert d.shape == (1, 2, 1024, 5)
    assert torch.equal(d[:, :, 512:], direct[:, 1])  # branch-major units
    psi_net = PsiICNet(PsiICNetConfig(n_psi=3)).eval()
    pm = MidbrainModel("psi", psi_net, psi=psi_net.condition(torch.zeros(1, 3)))
    with torch.inference_mode():
        assert pm.distribution(frames).shape == (1, 2, 512, 5)
    assert pm.units == 512


def test_psi_for_audiogram():
    w = np.zeros((3, 8))
    w[0, :] = 1.0
    w[2, 7] = -2.0
    psi = psi_for_audiogram({"weight": w, "bias": [0.5, 0, 0]}, [10, 20, 30, 40, 50, 60, 70, 80], 3)
    assert np.allclose(psi, [0.5 + 3.6, 0.0, -1.6])
    with pytest.raises(ValueError, match="no audiogram"):
        psi_for_audiogram(None, [0] * 8, 3)
    with pytest.raises(ValueError, match="expected"):
        psi_for_audiogram({"weight": np.zeros((6, 8))}, [0] * 8, 3)
    assert neural.DEVICES == ("auto", "cuda", "cpu")
