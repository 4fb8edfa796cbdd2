"""Teacher through the frozen simulator, then teacher -> student distillation; recipe errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_toolchain
from toolchain.models.compensators.seanet import SEANetConfig, load_seanet
from toolchain.models.hearing.hlsim import HLSim, HLSimConfig, save_hlsim
from toolchain.train.distil import CompensationObjective, CompLoss, load_distil_recipe, train_distilled
from toolchain.train.recipe import RecipeError, TrainConfig

SMALL = SEANetConfig(channels=4, max_channels=8, audiogram_hidden=8)


@pytest.fixture(scope="module")
def tiny_sim(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    sim = HLSim(HLSimConfig(channels=8, blocks=1))
    path = tmp_path_factory.mktemp("sim") / "sim.pt"
    save_hlsim(sim.eval(), str(path))
    return path


def _recipe(tmp_path: Path, sim: Path, steps: int = 4, **over: str) -> Path:
    text = f'''kind = "distil"
[simulator]
checkpoint = "{sim}"
[teacher]
channels = 8
max_channels = 16
audiogram_hidden = 8
[student]
channels = 4
max_channels = 8
audiogram_hidden = 8
[data]
train_examples = 4
clip_seconds = 0.25
[teacher_train]
steps = {steps}
batch_size = 2
warmup_steps = 0
threads = 1
[student_train]
steps = {steps}
batch_size = 2
warmup_steps = 0
threads = 1
'''
    for k, v in over.items():
        text = text.replace(k, v)
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_training_through_the_shipped_simulator_lowers_the_loss():
    """A few steps through the frozen, shipped simulator already move the compensator toward
    HLSim(C(x), moderate loss) = HLSim(clean, normal)."""
    from tests.helpers import speech_clip
    from toolchain.audio.audiogram import Audiogram
    from toolchain.audio.levels import set_level
    from toolchain.models.hearing.hlsim import load_hlsim
    from toolchain.train.loop import run_loop
    from toolchain.train.simulator import DEFAULT_SIMULATOR

    torch.manual_seed(0)
    objective = CompensationObjective(load_hlsim(str(DEFAULT_SIMULATOR)), CompLoss())

    class Gain(torch.nn.Module):
        """The simplest compensator: one broadband gain (dB), learned through the simulator."""

        def __init__(self) -> None:
            super().__init__()
            self.log_gain = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, audiogram):
            return x * torch.exp(self.log_gain)

    model = Gain()
    clean = torch.as_tensor(np.stack([set_level(speech_clip("train", i, seconds=0.5), 60.0) for i in range(2)]),
                            dtype=torch.float32)
    a = torch.as_tensor(np.stack([Audiogram.preset("moderate-sloping").as_array()] * 2), dtype=torch.float32)
    batch = {"noisy": clean, "clean": clean, "audiogram": a}

    def loss_fn(net, b, rows):
        y = net(b["noisy"][rows][:, None], b["audiogram"][rows])[:, 0]
        return objective(y, b["audiogram"][rows], objective.targets(b["clean"][rows]))

    cfg = TrainConfig(steps=20, batch_size=2, lr=5e-2, warmup_steps=0, threads=1)
    res = run_loop(model, lambda rng, s: batch, loss_fn, cfg, name="t", progress=False)
    assert np.mean(res.history[-3:]) < 0.9 * res.history[0], res.history
    assert float(model.log_gain) > 0.2  # a moderate loss is compensated by amplifying, never by attenuating
    assert all(not p.requires_grad for p in objective.sim.parameters())  # the simulator stayed frozen


def test_teacher_and_student_are_trained_and_saved(tmp_path, tiny_sim):
    recipe = load_distil_recipe(_recipe(tmp_path, tiny_sim, steps=3))
    out = tmp_path / "student.pt"
    summary = train_distilled(recipe, out, progress=False)
    teacher = load_seanet(str(tmp_path / "student_teacher.pt"))
    student = load_seanet(str(out))
    assert teacher.config.channels == 8 and student.config.channels == 4
    assert summary["teacher"]["steps"] == 3 and summary["student"]["steps"] == 3
    assert (tmp_path / "student.json").exists()
    assert not list(tmp_path.glob("*.ckpt"))  # checkpoints of finished runs are removed
    # The student is deployable: it fits to an audiogram and streams.
    fitted = student.fit(np.full(8, 40.0, np.float32))
    y = fitted(torch.randn(1, 1, 256) * 0.05)
    assert torch.all(torch.isfinite(y))


def test_recipe_errors_are_one_line(tmp_path, tiny_sim):
    with pytest.raises(RecipeError, match="strides"):
        load_distil_recipe(_recipe(tmp_path, tiny_sim, **{"channels = 4\n": "channels = 4\nstrides = [4, 4]\n"}))
    with pytest.raises(RecipeError, match="unknown key 'chanels'"):
        load_distil_recipe(_recipe(tmp_path, tiny_sim, **{"channels = 8\n": "chanels = 8\n"}))
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "distil"\n[teacher_train]\nsteps = "many"\n')
    r = run_toolchain("train", "--recipe", str(bad), timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "steps" in r.stderr, r.stderr
    r = run_toolchain("train", "--recipe", "no-such-recipe", timeout=120)
    assert r.returncode == 2 and "recipe file not found" in r.stderr
    wrong = tmp_path / "w.toml"
    wrong.write_text('kind = "painting"\n')
    r = run_toolchain("train", "--recipe", str(wrong), timeout=120)
    assert r.returncode == 2 and "painting" in r.stderr and "Traceback" not in r.stderr


def test_missing_simulator_checkpoint_is_a_clear_error(tmp_path):
    recipe = load_distil_recipe(_recipe(tmp_path, tmp_path / "nope.pt"))
    with pytest.raises(RecipeError, match="not found"):
        train_distilled(recipe, tmp_path / "s.pt", progress=False)


def test_objective_hears_the_clipped_output_and_penalises_overshoot(tiny_sim):
    """Above the limit the simulator hears the clipped signal; the penalty is a mean, so bounded."""
    from toolchain.models.hearing.hlsim import load_hlsim
    from toolchain.train.losses import limit_penalty

    objective = CompensationObjective(load_hlsim(str(tiny_sim)), CompLoss(output_limit=0.5, limit=1.0))
    rng = np.random.default_rng(0)
    clean = torch.as_tensor(rng.standard_normal((2, 4000)).astype(np.float32) * 0.1)
    a = torch.zeros(2, 8)
    target = objective.targets(clean)
    loud = clean * 40.0  # almost every sample far above the 0.5 limit
    clipped = loud.clamp(-0.5, 0.5)
    _, parts_loud = objective(loud, a, target)
    _, parts_clipped = objective(clipped, a, target)
    # The simulator terms are those of the clipped signal: the ear hears what the device delivers.
    for k in parts_clipped:
        if k.startswith("sim_"):
            assert parts_loud[k] == pytest.approx(parts_clipped[k], rel=1e-6)
    assert parts_clipped["limit"] == 0.0
    expected = float(torch.relu(loud.abs() - 0.5).mean())
    assert parts_loud["limit"] == pytest.approx(expected, rel=1e-6)
    # Bounded by the mean overshoot, whatever the clip length (the old per-clip sum grew with it).
    assert float(limit_penalty(loud, 0.5, per_sample=True)) == pytest.approx(
        float(limit_penalty(loud.repeat(1, 4), 0.5, per_sample=True)))
    y = loud.clone().requires_grad_(True)
    total, _ = objective(y, a, target)
    total.backward()
    assert torch.isfinite(y.grad).all() and float(y.grad.abs().max()) > 0


def test_target_noise_keeps_that_fraction_of_the_noise_in_the_target(tiny_sim):
    from toolchain.models.hearing.hlsim import load_hlsim

    sim = load_hlsim(str(tiny_sim))
    rng = np.random.default_rng(1)
    clean = torch.as_tensor(rng.standard_normal((1, 4000)).astype(np.float32) * 0.05)
    noisy = clean + torch.as_tensor(rng.standard_normal((1, 4000)).astype(np.float32) * 0.05)
    keep_all = CompensationObjective(sim, CompLoss(target_noise=1.0)).targets(clean, noisy)
    keep_half = CompensationObjective(sim, CompLoss(target_noise=0.5)).targets(clean, noisy)
    clean_only = CompensationObjective(sim, CompLoss()).targets(clean, noisy)
    normal = torch.zeros(1, 8)
    assert torch.allclose(keep_all[0], sim(noisy, normal).mag)
    assert torch.allclose(keep_half[0], sim(clean + 0.5 * (noisy - clean), normal).mag)
    assert torch.allclose(clean_only[0], sim(clean, normal).mag)
    with pytest.raises(ValueError, match="target_noise"):
        CompLoss(target_noise=1.5)


def test_stftnet_teacher_trains_and_teaches_the_seanet_student(tmp_path, tiny_sim):
    """[teacher] kind = "stftnet": the Neuro-MSBG-style teacher, output + simulator losses only."""
    from toolchain.models.compensators.registry import load_compensator

    text = {"[teacher]\nchannels = 8\nmax_channels = 16\naudiogram_hidden = 8\n":
            '[teacher]\nkind = "stftnet"\nchannels = 8\nblocks = 1\n',
            "[student_train]": "[distil]\nfeature = 0.0\n[student_train]"}
    recipe = load_distil_recipe(_recipe(tmp_path, tiny_sim, steps=2, **text))
    assert recipe.teacher_kind == "stftnet" and recipe.to_dict()["teacher"]["kind"] == "stftnet"
    out = tmp_path / "student.pt"
    summary = train_distilled(recipe, out, progress=False)
    assert summary["teacher"]["kind"] == "stftnet" and summary["student"]["steps"] == 2
    teacher = load_compensator(tmp_path / "student_teacher.pt")
    assert teacher.kind == "stftnet" and teacher.extra["role"] == "teacher"
    assert load_compensator(out).kind == "seanet"
    # The feature loss needs a SEANet bottleneck; an stftnet teacher with it on is a one-line error.
    with pytest.raises(RecipeError, match="feature loss needs a SEANet teacher") as e:
        load_distil_recipe(_recipe(tmp_path, tiny_sim, **{"[teacher]\n": '[teacher]\nkind = "stftnet"\n',
                                                           "max_channels = 16\naudiogram_hidden = 8\n": ""}))
    assert "\n" not in str(e.value)
    with pytest.raises(RecipeError, match="kind = 'transformer'"):
        load_distil_recipe(_recipe(tmp_path, tiny_sim, **{"[teacher]\n": '[teacher]\nkind = "transformer"\n'}))
