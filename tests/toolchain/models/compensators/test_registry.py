"""load_compensator: one loader for every checkpoint kind, one-line errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.helpers import MODERATE, randomised_seanet
from toolchain.models.compensators import registry
from toolchain.models.compensators.registry import (
    CompensatorError,
    CompensatorKind,
    load_compensator,
    register_compensator,
)
from toolchain.models.compensators.seanet import SEANetConfig, save_seanet

DEFAULT_CHECKPOINT = REPO / "toolchain" / "assets" / "seanet_default.pt"


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_the_shipped_default_loads_as_seanet():
    c = load_compensator(DEFAULT_CHECKPOINT)
    assert c.kind == "seanet" and c.sample_rate == 16000 and c.block_multiple == 16
    assert c.config == c.model.config.to_dict() and c.parameters() > 0


def test_fitted_runner_is_the_fitted_model_on_any_length(tmp_path):
    m = randomised_seanet(3, SEANetConfig(channels=4, max_channels=16))
    path = tmp_path / "small.pt"
    save_seanet(m, str(path))
    c = load_compensator(path)
    run = c.fitted(MODERATE)
    x = np.random.default_rng(0).standard_normal(16 * 50 + 5).astype(np.float32) * 0.1  # not a stride multiple
    y = run(x)
    assert y.shape == x.shape and y.dtype == np.float32
    with torch.no_grad():
        ref = m.fit(MODERATE)(torch.from_numpy(x[: 16 * 50]).reshape(1, 1, -1)).reshape(-1).numpy()
    np.testing.assert_allclose(y[: 16 * 50], ref, atol=1e-5)  # causal: the padding changes nothing before it


def test_dispatch_on_the_checkpoint_kind(tmp_path):
    class Toy(torch.nn.Module):
        def __init__(self, gain: float) -> None:
            super().__init__()
            self.gain = gain

        def fit(self, thresholds):
            return Toy(self.gain + float(np.mean(thresholds)) / 100.0)

        def forward(self, x):
            return x * self.gain

    register_compensator(CompensatorKind(name="toy-test", build=lambda p: Toy(float(p["gain"])),
                                         sample_rate=lambda m: 8000, block_multiple=lambda m: 4))
    try:
        path = tmp_path / "toy.pt"
        torch.save({"kind": "toy-test", "gain": 2.0}, path)
        c = load_compensator(path)
        assert c.kind == "toy-test" and c.sample_rate == 8000 and c.block_multiple == 4
        np.testing.assert_allclose(c.fitted(np.full(8, 50.0))(np.ones(6, np.float32)), np.full(6, 2.5))
    finally:
        registry._KINDS.pop("toy-test")


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(CompensatorError) as e:
        load_compensator(tmp_path / "absent.pt")
    assert "absent.pt" in _one_line(e) and "not found" in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CompensatorError) as e:
        load_compensator(junk)
    assert "not a model checkpoint" in _one_line(e)
    unknown = tmp_path / "unknown.pt"
    torch.save({"kind": "no-such-kind", "state_dict": {}}, unknown)
    with pytest.raises(CompensatorError) as e:
        load_compensator(unknown)
    assert "unknown compensator kind 'no-such-kind'" in _one_line(e) and "seanet" in str(e.value)
    other = tmp_path / "other.pt"
    torch.save({"config": {"n_mels": 80}, "state_dict": {}}, other)
    with pytest.raises(CompensatorError) as e:
        load_compensator(other)
    assert "no registered kind recognises it" in _one_line(e)
    broken = tmp_path / "broken.pt"
    torch.save({"config": SEANetConfig().to_dict(), "state_dict": {"in_conv.conv.weight": torch.zeros(1)}}, broken)
    with pytest.raises(CompensatorError) as e:
        load_compensator(broken)
    assert "not a valid seanet checkpoint" in _one_line(e)
