"""Tests for TOML training recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.models.compensators.seanet import SEANetConfig
from toolchain.models.hearing.hl_filterbank import FilterbankHLConfig
from toolchain.train.recipe import RECIPES_DIR, Recipe, RecipeError, load_recipe, recipe_path


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_default_recipe_loads() -> None:
    r = load_recipe("default")
    assert r.name == "default"
    assert r.source == str(RECIPES_DIR / "default.toml")
    # The shipped model is the classic prescription plus a learnt correction, in a family the 16x8
    # device graph runs (no PReLU), its 48-tap input history shared by the input conv and the FIR.
    assert r.model == SEANetConfig(kernel_size=48, skip_taps=48, skip_channels=2, prescription="nalr",
                                   activation="leaky_relu")
    assert r.loss.envelope > 0 and r.loss.silence > 0 and r.loss.quant_noise == 0
    assert r.hl.sample_rate == r.model.sample_rate
    assert r.train.threads <= 2
    assert {"moderate-sloping", "severe-sloping"} <= set(r.eval.presets)
    assert load_recipe(RECIPES_DIR / "default.toml") == r
    # Round trip through the checkpoint dict form.
    assert Recipe.from_dict(r.to_dict(), source=r.source) == r


def test_bare_name_and_path_resolution(tmp_path: Path) -> None:
    assert recipe_path("default") == RECIPES_DIR / "default.toml"
    assert recipe_path("x/y.toml") == Path("x/y.toml")
    p = write(tmp_path, "[train]\nsteps = 3\n", "tiny.toml")
    r = load_recipe(p)
    assert r.name == "tiny" and r.train.steps == 3
    assert r.model == SEANetConfig() and r.hl == FilterbankHLConfig()  # defaults fill the rest


def test_unknown_key(tmp_path: Path) -> None:
    p = write(tmp_path, "[train]\nsteps = 3\nlearning_rate = 0.1\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    msg = one_line(exc)
    assert str(p) in msg and "learning_rate" in msg and "[train]" in msg


def test_unknown_section(tmp_path: Path) -> None:
    p = write(tmp_path, "[optimiser]\nlr = 0.1\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    msg = one_line(exc)
    assert str(p) in msg and "optimiser" in msg


def test_unknown_model_key(tmp_path: Path) -> None:
    p = write(tmp_path, "[model]\nchanels = 8\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    assert str(p) in one_line(exc) and "chanels" in str(exc.value)


@pytest.mark.parametrize("section, key, value", [
    ("train", "steps", '"100"'),
    ("train", "steps", "1.5"),
    ("train", "batch_size", "true"),
    ("loss", "perceptual", '"high"'),
    ("data", "speech_level_db_spl", "[50.0]"),
    ("data", "speech_level_db_spl", '[50.0, "loud"]'),
    ("model", "strides", "4"),
    ("hl", "n_bands", "28.0"),
])
def test_wrong_type(tmp_path: Path, section: str, key: str, value: str) -> None:
    p = write(tmp_path, f"[{section}]\n{key} = {value}\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    msg = one_line(exc)
    assert str(p) in msg and key in msg and f"[{section}]" in msg and "expected" in msg


def test_bad_value(tmp_path: Path) -> None:
    p = write(tmp_path, '[train]\nlr_schedule = "zigzag"\n')
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    msg = one_line(exc)
    assert str(p) in msg and "lr_schedule" in msg and "zigzag" in msg
    p = write(tmp_path, '[audiograms]\npresets = ["normal", "deafish"]\n')
    with pytest.raises(RecipeError, match="deafish"):
        load_recipe(p)
    p = write(tmp_path, '[model]\nactivation = "gelu"\n')
    with pytest.raises(RecipeError, match=r"\[model\].*gelu"):
        load_recipe(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as exc:
        load_recipe("no-such-recipe")
    msg = one_line(exc)
    assert "no-such-recipe.toml" in msg and "not found" in msg and "default" in msg
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.toml")


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "[train]\nsteps = 3\nlr = = 0.1\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    msg = one_line(exc)
    assert str(p) in msg and "invalid TOML" in msg and "line 3" in msg


def test_section_must_be_a_table(tmp_path: Path) -> None:
    p = write(tmp_path, 'train = 3\n')
    with pytest.raises(RecipeError, match="section"):
        load_recipe(p)
    p = write(tmp_path, 'name = "x"\n')
    with pytest.raises(RecipeError, match="name"):
        load_recipe(p)


def test_each_shipped_recipe_names_its_own_output_file():
    """Two recipes of one kind (the hlsim stages; distil and distil_stftnet) never overwrite each other."""
    from toolchain.train.cli import DEFAULT_OUT
    from toolchain.train.recipe import ASSETS, available_recipes, recipe_kind, recipe_output

    outs = {r: recipe_output(r, DEFAULT_OUT[recipe_kind(r)]) for r in available_recipes()}
    assert len(set(outs.values())) == len(outs), outs
    assert outs["default"] == ASSETS / "seanet_default.pt"
    assert outs["hlsim"] == ASSETS / "hlsim_stage1.pt" and outs["hlsim_finetune"] == ASSETS / "hlsim_default.pt"
    assert outs["distil"] == ASSETS / "seanet_distil.pt"


def test_a_bad_output_name_is_one_line(tmp_path):
    from toolchain.train.recipe import RecipeError, recipe_output

    p = tmp_path / "r.toml"
    p.write_text('kind = "simulator"\nout = "model.onnx"\n')
    with pytest.raises(RecipeError, match=r"out = 'model.onnx': expected a checkpoint file name ending in .pt"):
        recipe_output(str(p), tmp_path / "x.pt")
