"""Simulator recipes: the two shipped stages load, and ``[init]`` (fine-tuning) errors are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.models.hearing.hlsim import HLSim, HLSimConfig, load_hlsim, save_hlsim
from toolchain.train.recipe import RECIPES_DIR, RecipeError
from toolchain.train.simulator import ASSETS, load_simulator_recipe


def test_shipped_stages_load_and_stage_two_starts_from_the_shipped_stage_one():
    stage1 = load_simulator_recipe("hlsim")
    stage2 = load_simulator_recipe("hlsim_finetune")
    assert stage1.init.path() is None
    assert stage2.init.path() == ASSETS / "hlsim_stage1.pt" and stage2.init.path().is_file()
    assert stage2.hlsim == stage1.hlsim and load_hlsim(str(stage2.init.path())).config == stage2.hlsim
    assert stage2.train.lr < stage1.train.lr


def _recipe(tmp_path: Path, init: str) -> Path:
    text = (RECIPES_DIR / "hlsim_finetune.toml").read_text(encoding="utf-8")
    text = text.replace('checkpoint = "hlsim_stage1.pt"', f'checkpoint = "{init}"')
    p = tmp_path / "ft.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_missing_init_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(RecipeError) as e:
        load_simulator_recipe(_recipe(tmp_path, str(tmp_path / "nope.pt")))
    assert "[init] checkpoint" in str(e.value) and "nope.pt" in str(e.value) and "\n" not in str(e.value)


def test_init_with_another_architecture_is_refused(tmp_path):
    from toolchain.train.simulator import train_simulator

    other = tmp_path / "small.pt"
    save_hlsim(HLSim(HLSimConfig(channels=8, blocks=1)), str(other))
    recipe = load_simulator_recipe(_recipe(tmp_path, str(other)))
    with pytest.raises(RecipeError, match="different \\[hlsim\\] config"):
        train_simulator(recipe, tmp_path / "out.pt", device="cpu", max_steps=1, progress=False, evaluate=False)
