"""``toolchain train --recipe dal`` (seed 004): SEANet through CARFAC; a smoke run, one step, recipe checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_toolchain
from toolchain.models.compensators.seanet import SEANet, load_seanet
from toolchain.train.dal import _pool, load_dal_recipe, make_batches
from toolchain.train.loop import run_loop
from toolchain.train.losses_dal import CochlearEars, DalObjective
from toolchain.train.recipe import RecipeError


def _recipe(tmp_path: Path, steps: int = 2, preset_probability: float = 1.0) -> Path:
    text = f'''kind = "dal"
[model]
channels = 4
max_channels = 8
audiogram_hidden = 8
kernel_size = 16
skip_taps = 16
skip_channels = 2
prescription = "nalr"
activation = "leaky_relu"
[data]
train_examples = 4
clip_seconds = 0.06
[audiograms]
preset_probability = {preset_probability}
presets = ["moderate-sloping"]
[train]
steps = {steps}
batch_size = 2
lr = 0.001
warmup_steps = 0
threads = 1
[eval]
presets = ["moderate-sloping"]
examples = 1
clip_seconds = 0.06
'''
    p = tmp_path / "tiny_dal.toml"
    p.write_text(text)
    return p


def test_one_training_step_lowers_the_loss(tmp_path: Path, one_thread) -> None:
    recipe = load_dal_recipe(_recipe(tmp_path))
    noisy, clean = _pool(recipe, "train", recipe.data.clip_seconds, recipe.data.train_examples, 0)
    batch = make_batches(noisy, clean, recipe, "cpu")(np.random.default_rng(0), 0)
    torch.manual_seed(0)
    model = SEANet(recipe.model)
    objective = DalObjective(CochlearEars(16000.0), recipe.loss)

    def loss_fn(net, b, rows):
        return objective(net(b["noisy"][rows, None], b["audiogram"][rows])[:, 0], b["clean"][rows], b["audiogram"][rows])

    with torch.no_grad():
        l0, _ = loss_fn(model.eval(), batch, slice(None))
    run_loop(model, lambda rng, step: batch, loss_fn, recipe.train, name="dal", steps=1, progress=False)
    with torch.no_grad():
        l1, _ = loss_fn(model.eval(), batch, slice(None))
    assert float(l1) < float(l0), (float(l0), float(l1))


def test_cli_smoke_run_writes_a_checkpoint_and_drops_its_resume_file(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, steps=2)
    out = tmp_path / "dal.pt"
    r = run_toolchain("train", "--recipe", str(recipe), "--out", str(out), "--steps", "1", "--quiet", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["steps"] == 1 and len(summary["loss_history"]) == 1 and np.isfinite(summary["final_train_loss"])
    row = summary["eval"][0]
    assert row["audiogram"] == "moderate-sloping" and row["unprocessed_nap"] > 0 and row["compensated_sai"] > 0
    model = load_seanet(str(out))
    assert model.config.activation == "leaky_relu" and model.config.prescription == "nalr"
    assert not Path(str(out) + ".ckpt").exists()   # the resume file goes once the run is complete


def test_random_audiograms_are_refused(tmp_path: Path) -> None:
    p = _recipe(tmp_path, preset_probability=0.5)
    with pytest.raises(RecipeError, match="preset_probability = 0.5"):
        load_dal_recipe(p)
    r = run_toolchain("train", "--recipe", str(p), "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "preset_probability" in r.stderr
    assert not (tmp_path / "x.pt").exists()


def test_shipped_dal_recipe() -> None:
    recipe = load_dal_recipe("dal")
    assert recipe.model.activation == "leaky_relu"        # the 16x8 device graph has no PRELU kernel
    assert recipe.model.prescription == "nalr" and recipe.train.threads == 1
    assert recipe.loss.nap > 0 and recipe.loss.sai > 0
