"""Tests for the compensator training loop and the shipped default checkpoint."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain.audio.audiogram import PRESETS
from toolchain.audio.data import SyntheticCorpus
from toolchain.models.compensators.seanet import SEANet, SEANetConfig, load_seanet
from toolchain.models.hearing.hl_filterbank import FilterbankHearingLoss
from toolchain.train.compensator import (
    DEFAULT_CHECKPOINT,
    TrainResult,
    corpus_config,
    sample_audiograms,
    train_compensator,
)
from toolchain.train.losses import compensation_loss
from toolchain.train.recipe import (
    AudiogramSampling,
    DataConfig,
    EvalConfig,
    Recipe,
    TrainConfig,
    load_recipe,
)

TINY = Recipe(
    name="tiny",
    data=DataConfig(train_examples=8, clip_seconds=0.25, noise_probability=0.5,
                    noise_types=("white", "pink", "speech-shaped")),
    audiograms=AudiogramSampling(preset_probability=1.0, presets=("moderate-sloping", "severe-sloping")),
    train=TrainConfig(seed=3, steps=40, batch_size=4, lr=0.005, lr_schedule="constant", warmup_steps=0,
                      threads=1),
    eval=EvalConfig(presets=("moderate-sloping",), examples=2, clip_seconds=0.25),
)


def batch_loss(model: SEANet, recipe: Recipe, noisy: np.ndarray, clean: np.ndarray, preset: str) -> float:
    hl = FilterbankHearingLoss(recipe.hl)
    x, s = torch.from_numpy(noisy), torch.from_numpy(clean)
    a = torch.tensor([PRESETS[preset]] * len(x))
    with torch.no_grad():
        y = model.eval()(x[:, None], a)[:, 0]
        return compensation_loss(hl, y, s, a, recipe.loss)[0].item()


def test_few_steps_lower_the_loss_on_a_fixed_batch(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    result = train_compensator(TINY, out, progress=False, device="cpu")
    assert isinstance(result, TrainResult)
    assert result.steps == 40 and len(result.loss_history) == 40 and result.device == "cpu"
    assert out.exists() and out.with_suffix(".json").exists()
    noisy, clean = SyntheticCorpus("train", corpus_config(TINY, 0.25), seed=0, size=4).batch(range(4))
    before = batch_loss(SEANet(TINY.model), TINY, noisy, clean, "moderate-sloping")  # untrained = pass-through
    after = batch_loss(load_seanet(str(out)), TINY, noisy, clean, "moderate-sloping")
    assert after < 0.85 * before
    # The checkpoint carries the recipe and the run's numbers.
    extra = torch.load(out, weights_only=True)["extra"]
    assert Recipe.from_dict(extra["recipe"]) == dataclasses.replace(TINY, source=None)
    assert extra["seed"] == 3 and extra["steps"] == 40
    assert extra["final_train_loss"] == pytest.approx(result.final_train_loss)
    assert [r["audiogram"] for r in extra["eval"]] == ["moderate-sloping"]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["recipe_name"] == "tiny" and summary["eval"] == extra["eval"]


def test_same_seed_gives_identical_weights(tmp_path: Path) -> None:
    runs = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        recipe = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, seed=seed))
        train_compensator(recipe, tmp_path / f"{tag}.pt", progress=False, device="cpu", max_steps=3)
        runs[tag] = torch.load(tmp_path / f"{tag}.pt", weights_only=True)["state_dict"]
    assert runs["a"].keys() == runs["b"].keys()
    for k in runs["a"]:  # (the unfitted model's fitted_audiogram buffer is NaN)
        torch.testing.assert_close(runs["a"][k], runs["b"][k], rtol=0, atol=0, equal_nan=True, msg=k)
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_quant_noise_term_joins_at_its_step(tmp_path: Path) -> None:
    loss = dataclasses.replace(TINY.loss, quant_noise=0.3, quant_noise_target_db=60.0, quant_noise_from_step=2)
    recipe = dataclasses.replace(TINY, loss=loss, model=SEANetConfig(skip_taps=7))
    out = tmp_path / "qn.pt"
    result = train_compensator(recipe, out, progress=False, device="cpu", max_steps=5)
    extra = torch.load(out, weights_only=True)["extra"]
    # three noisy steps (2, 3, 4), each SNR finite and below the 60 dB target, so the term counted
    assert 0 < extra["final_quant_noise_snr_db"] < 60
    assert json.loads(out.with_suffix(".json").read_text())["final_quant_noise_snr_db"] == extra["final_quant_noise_snr_db"]
    assert result.steps == 5
    plain = train_compensator(TINY, tmp_path / "plain.pt", progress=False, device="cpu", max_steps=2)
    assert torch.load(tmp_path / "plain.pt", weights_only=True)["extra"]["final_quant_noise_snr_db"] is None
    assert plain.steps == 2


def test_audiogram_sampling_is_seeded_and_valid() -> None:
    s = AudiogramSampling(preset_probability=0.5, presets=("mild-flat", "severe-sloping"))
    a = sample_audiograms(np.random.default_rng(1), 64, s)
    b = sample_audiograms(np.random.default_rng(1), 64, s)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 8) and (a >= 0).all() and (a <= 120).all()
    presets = {tuple(PRESETS["mild-flat"]), tuple(PRESETS["severe-sloping"])}
    n_presets = sum(tuple(map(float, row)) in presets for row in a)
    assert 16 < n_presets < 48
    only = sample_audiograms(np.random.default_rng(2), 8, AudiogramSampling(preset_probability=1.0, presets=("normal",)))
    assert (only == 0).all()


# ------------------------------------------------------------------ the shipped checkpoint
@pytest.fixture(scope="module")
def shipped() -> tuple[SEANet, dict]:
    assert DEFAULT_CHECKPOINT.exists(), f"{DEFAULT_CHECKPOINT} is missing: run toolchain train --recipe default"
    return load_seanet(str(DEFAULT_CHECKPOINT)), torch.load(DEFAULT_CHECKPOINT, weights_only=True)["extra"]


def test_shipped_checkpoint_matches_its_recipe(shipped: tuple[SEANet, dict]) -> None:
    model, extra = shipped
    recipe = load_recipe("default")
    assert model.config == recipe.model
    # the shipped default is the classic prescription plus a learnt correction, in a family the 16x8
    # device graph can run (LiteRT's 16x8 quantiser has no PRELU)
    assert recipe.model.prescription == "nalr" and recipe.model.activation == "leaky_relu"
    assert extra["recipe_name"] == "default"
    assert Recipe.from_dict(extra["recipe"]) == dataclasses.replace(recipe, source=None)
    assert extra["steps"] == recipe.train.steps and extra["seed"] == recipe.train.seed
    summary = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert summary["eval"] == extra["eval"] and summary["steps"] == extra["steps"]
    rows = {r["audiogram"]: r for r in extra["eval"]}
    # What the impaired ear perceives moves towards normal hearing (dB of perceptual error).
    assert rows["moderate-sloping"]["compensated_perceptual_db"] < 0.7 * rows["moderate-sloping"]["unprocessed_perceptual_db"]
    assert rows["severe-sloping"]["compensated_perceptual_db"] < 0.8 * rows["severe-sloping"]["unprocessed_perceptual_db"]
    assert rows["moderate-sloping"]["compensated"] < 0.7 * rows["moderate-sloping"]["unprocessed"]
    # The float model does not limit itself: NAL-R's linear gain takes loud peaks past the output limit
    # and the device's limiter holds them (tests/runtime/test_engine.py). For the default fitting at
    # conversational levels that stays rare; the severe-sloping fitting leans on the limiter more.
    assert rows["mild-flat"]["output_over_limit_fraction"] <= 0.001
    assert rows["moderate-sloping"]["output_over_limit_fraction"] <= 0.01
    assert max(r["output_over_limit_fraction"] for r in rows.values()) <= 0.15
    levels = [rows[p]["output_level_db_spl"] for p in ("normal", "mild-flat", "moderate-sloping", "severe-sloping")]
    assert levels == sorted(levels) and levels[-1] > levels[0] + 20.0


def test_shipped_checkpoint_compensates_a_held_out_clip(shipped: tuple[SEANet, dict]) -> None:
    model, extra = shipped
    recipe = Recipe.from_dict(extra["recipe"])
    # The test split (disjoint sentences and voices), with a corpus seed the evaluation did not use.
    noisy, clean = SyntheticCorpus("test", corpus_config(recipe, 1.0), seed=101, size=2).batch([0, 1])
    # unprocessed: the noisy input itself (an untrained model of this recipe is already NAL-R)
    unprocessed = batch_loss(SEANet(dataclasses.replace(recipe.model, prescription="none", skip_taps=0)), recipe,
                             noisy, clean, "moderate-sloping")
    compensated = batch_loss(model, recipe, noisy, clean, "moderate-sloping")
    assert compensated < 0.8 * unprocessed
    # The output gets louder as the hearing loss gets worse.
    x = torch.from_numpy(noisy)[:, None]
    with torch.no_grad():
        rms = {p: model(x, torch.tensor([PRESETS[p]] * 2)).pow(2).mean().sqrt().item()
               for p in ("normal", "mild-flat", "moderate-sloping", "severe-sloping")}
    assert rms["normal"] < rms["mild-flat"] < rms["moderate-sloping"] < rms["severe-sloping"]
