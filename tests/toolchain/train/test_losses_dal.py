"""DAL losses (seed 004): NAP / SAI distance between HI(device(x)) and NH(clean)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import speech_clip
from toolchain.audio.audiogram import PRESETS
from toolchain.fitting.prescription import nalr_fir
from toolchain.train.losses_dal import CochlearEars, DalLossConfig, DalObjective, correlation, relative_l1

FS = 16000.0


# CARFAC's backward is thousands of tiny ops: a second intra-op thread on shared cores is 20x slower
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ears() -> CochlearEars:
    return CochlearEars(FS)


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    # 0.15 s of held-out speech at its corpus level, two clips
    return torch.from_numpy(np.stack([speech_clip("test", i, seconds=0.15) for i in (0, 1)]).astype(np.float32))


def test_normal_ear_on_the_same_sound_has_distance_zero(ears: CochlearEars, speech: torch.Tensor) -> None:
    obj = DalObjective(ears, DalLossConfig())
    normal = torch.zeros(2, 8)
    loss, parts = obj(speech, speech, normal)
    assert parts["nap"] == 0.0 and parts["sai"] == 0.0 and parts["limit"] == 0.0
    assert float(loss) == 0.0
    nh, _ = ears.naps(speech, speech, normal)
    env, s = ears.features(nh, 2.0)
    assert float(correlation(env, env).min()) == pytest.approx(1.0, abs=1e-6)
    assert float(relative_l1(s, s)) == 0.0


def test_impaired_ear_is_further_and_nal_r_closes_part_of_the_gap(ears: CochlearEars, speech: torch.Tensor) -> None:
    moderate = np.asarray(PRESETS["moderate-sloping"], np.float64)
    a = torch.tensor(np.stack([moderate, moderate]), dtype=torch.float32)
    obj = DalObjective(ears, DalLossConfig())
    _, unproc = obj(speech, speech, a)
    assert unproc["nap"] > 0.2 and unproc["sai"] > 0.2          # a moderate loss is far from normal
    h = nalr_fir(moderate, int(FS), 48).astype(np.float32)
    aided = torch.from_numpy(np.stack([np.convolve(x, h)[: x.size] for x in speech.numpy()]))
    _, nalr = obj(aided, speech, a)
    assert nalr["nap"] < unproc["nap"] and nalr["sai"] < unproc["sai"], (unproc, nalr)


def test_gradient_reaches_the_device_output(ears: CochlearEars, speech: torch.Tensor) -> None:
    gain = torch.tensor(1.0, requires_grad=True)
    a = torch.tensor([PRESETS["moderate-sloping"]] * 2, dtype=torch.float32)
    loss, _ = DalObjective(ears, DalLossConfig())(speech * gain, speech, a)
    loss.backward()
    # more gain brings a moderately impaired ear closer to normal: the loss falls with gain
    assert gain.grad is not None and torch.isfinite(gain.grad) and float(gain.grad) < 0


def test_limit_term_and_bad_config() -> None:
    ears = CochlearEars(FS)
    y = torch.full((1, 400), 0.95)
    _, parts = DalObjective(ears, DalLossConfig(nap=1.0, sai=0.0))(y, 0.1 * y, torch.zeros(1, 8))
    assert parts["limit"] == pytest.approx(0.1, rel=1e-5) and parts["sai"] == 0.0
    for bad in ({"nap": -1.0}, {"nap": 0.0, "sai": 0.0}, {"output_limit": 1.5}):
        with pytest.raises(ValueError):
            DalLossConfig(**bad)
