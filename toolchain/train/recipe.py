"""Training recipes: TOML files that hold every number a trained model depends on.

A recipe has these sections (each optional; a missing key keeps the dataclass default, but a
shipped recipe spells everything out so that it documents the model it produced):

``[model]``       :class:`toolchain.models.compensators.seanet.SEANetConfig` fields
``[data]``        :class:`DataConfig`: the synthetic corpus (seed, size, clip length, levels, SNR)
``[audiograms]``  :class:`AudiogramSampling`: presets vs ``Audiogram.random`` per example
``[train]``       :class:`TrainConfig`: seed, steps, batch, optimiser, schedule, threads
``[loss]``        :class:`toolchain.train.losses.LossConfig`: loss weights
``[hl]``          :class:`toolchain.models.hearing.hl_filterbank.FilterbankHLConfig`: hearing-loss model
``[eval]``        :class:`EvalConfig`: held-out evaluation after training

plus an optional top-level ``description`` string. :func:`load_recipe` accepts a bare name
(``"default"`` → ``toolchain/train/recipes/default.toml``) or a path. Every problem raises
:class:`RecipeError` whose message is one line naming the file and the bad section/key/value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import config
from runtime.config import ConfigError, strict_from_dict
from toolchain.audio.audiogram import PRESETS
from toolchain.audio.data import NOISE_TYPES
from toolchain.models.compensators.seanet import SEANetConfig
from toolchain.models.hearing.hl_filterbank import FilterbankHLConfig
from toolchain.train.losses import LossConfig

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def asset_path(name: str | Path) -> Path:
    """A checkpoint a recipe names: absolute or existing as given, else relative to toolchain/assets/."""
    p = Path(name)
    return p if p.is_absolute() or p.exists() else ASSETS / p


class RecipeError(ConfigError):
    """A bad recipe file or value; ``str()`` is one line naming the file and the problem."""


@dataclass(frozen=True)
class DataConfig:
    """The training pool drawn from ``SyntheticCorpus("train", ...)``."""

    corpus_seed: int = 0
    train_examples: int = 512            # pool size, generated once before training
    clip_seconds: float = 1.0
    speech_level_db_spl: tuple[float, float] = (50.0, 80.0)
    snr_db: tuple[float, float] = (0.0, 30.0)
    noise_probability: float = 0.7
    noise_types: tuple[str, ...] = NOISE_TYPES
    workers: int = 1                     # espeak-ng threads for the pool (cached on disk anyway)

    def __post_init__(self) -> None:
        if self.train_examples < 1:
            raise ValueError(f"train_examples must be >= 1, got {self.train_examples}")
        if self.corpus_seed < 0:
            raise ValueError(f"corpus_seed must be >= 0, got {self.corpus_seed}")
        if not self.clip_seconds > 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for name in ("speech_level_db_spl", "snr_db"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {[lo, hi]}")
        if not 0.0 <= self.noise_probability <= 1.0:
            raise ValueError(f"noise_probability must be in [0, 1], got {self.noise_probability}")
        bad = [t for t in self.noise_types if t not in NOISE_TYPES]
        if bad:
            raise ValueError(f"unknown noise_types {bad}; expected some of {list(NOISE_TYPES)}")


@dataclass(frozen=True)
class AudiogramSampling:
    """Per training example: a preset with ``preset_probability``, else ``Audiogram.random``."""

    preset_probability: float = 0.3
    presets: tuple[str, ...] = tuple(PRESETS)

    def __post_init__(self) -> None:
        if not 0.0 <= self.preset_probability <= 1.0:
            raise ValueError(f"preset_probability must be in [0, 1], got {self.preset_probability}")
        _check_presets(self.presets)
        if self.preset_probability > 0 and not self.presets:
            raise ValueError("preset_probability > 0 needs at least one preset")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: AdamW with linear warm-up then a cosine (or constant) schedule."""

    seed: int = 0
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-3
    lr_schedule: str = "cosine"          # "cosine" (to lr * final_lr_fraction) or "constant"
    final_lr_fraction: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0               # max global gradient norm; 0 disables
    threads: int = 2                     # torch CPU threads (the recipe runs on 2 cores)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("steps", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {self.lr_schedule!r}; expected one of {list(LR_SCHEDULES)}")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("warmup_steps, weight_decay and grad_clip must be >= 0")

    def lr_at(self, step: int) -> float:
        """Learning rate of (0-based) ``step``."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        span = max(self.steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0) / span, 1.0)
        lo = self.lr * self.final_lr_fraction
        return lo + 0.5 * (self.lr - lo) * (1.0 + math.cos(math.pi * t))


LR_SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: ``examples`` clips of the "test" split, per audiogram preset."""

    presets: tuple[str, ...] = ("normal", "mild-flat", "moderate-sloping", "severe-sloping")
    examples: int = 16
    clip_seconds: float = 2.0
    corpus_seed: int = 0

    def __post_init__(self) -> None:
        _check_presets(self.presets)
        if self.examples < 1:
            raise ValueError(f"examples must be >= 1, got {self.examples}")
        if not self.clip_seconds > 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if self.corpus_seed < 0:
            raise ValueError(f"corpus_seed must be >= 0, got {self.corpus_seed}")


def _check_presets(names: tuple[str, ...]) -> None:
    bad = [p for p in names if p not in PRESETS]
    if bad:
        raise ValueError(f"unknown audiogram presets {bad}; valid presets: {', '.join(sorted(PRESETS))}")


# section name → (Recipe attribute type, how to build it from a checked dict)
_SECTIONS: dict[str, type] = {
    "model": SEANetConfig,
    "data": DataConfig,
    "audiograms": AudiogramSampling,
    "train": TrainConfig,
    "loss": LossConfig,
    "hl": FilterbankHLConfig,
    "eval": EvalConfig,
}
_TOP_LEVEL_KEYS = {"description": str}


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``name`` is the file stem; ``source`` the file it came from (if any)."""

    name: str = "custom"
    description: str = ""
    model: SEANetConfig = field(default_factory=SEANetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    audiograms: AudiogramSampling = field(default_factory=AudiogramSampling)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    hl: FilterbankHLConfig = field(default_factory=FilterbankHLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, numbers, strings): the TOML content, for checkpoints."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        for section in _SECTIONS:
            out[section] = _plain(dataclasses.asdict(getattr(self, section)))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, name: str = "custom", source: str = "<dict>") -> "Recipe":
        """Build from a dict shaped like the TOML file (``to_dict`` output is accepted too)."""
        d = dict(d)
        name = d.pop("name", name)
        kwargs: dict[str, Any] = {"name": str(name), "source": None if source == "<dict>" else source}
        for key, value in d.items():
            if key in _TOP_LEVEL_KEYS:
                if not isinstance(value, _TOP_LEVEL_KEYS[key]):
                    raise RecipeError(f"{source}: {key} = {value!r}: expected a string")
                kwargs[key] = value
            elif key in _SECTIONS:
                if not isinstance(value, dict):
                    raise RecipeError(f"{source}: '{key}' must be a section [{key}], got {value!r}")
                kwargs[key] = _build_section(key, _SECTIONS[key], value, source)
            else:
                raise RecipeError(f"{source}: unknown section or key '{key}'; expected sections "
                                  f"{', '.join('[' + s + ']' for s in _SECTIONS)} and optional 'description'")
        return cls(**kwargs)

    def replace(self, **sections: Any) -> "Recipe":
        """A copy with whole sections (or name/description) replaced."""
        return dataclasses.replace(self, **sections)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _build_section(section: str, cls: type, table: dict[str, Any], source: str) -> Any:
    try:
        return strict_from_dict(cls, table, where=f"{source}: [{section}]", error=RecipeError)
    except RecipeError:
        raise
    except (ValueError, TypeError) as exc:  # the dataclass's own checks of the values
        raise RecipeError(f"{source}: [{section}] {exc}") from None


def recipe_path(name_or_path: str | Path) -> Path:
    """A bare name (no ``/``, no ``.toml``) → ``RECIPES_DIR/<name>.toml``; anything else a path."""
    s = str(name_or_path)
    if isinstance(name_or_path, str) and "/" not in s and "\\" not in s and not s.endswith(".toml"):
        return RECIPES_DIR / f"{s}.toml"
    return Path(name_or_path)


def available_recipes() -> list[str]:
    """Names of the recipes shipped in ``RECIPES_DIR``."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def read_toml(name_or_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(path, table)`` of a recipe file; every problem → :class:`RecipeError` naming the file."""
    path = recipe_path(name_or_path)
    data = config.read_toml(path, what="recipe file", error=RecipeError,
                            missing_hint=f"shipped recipes: {', '.join(available_recipes()) or 'none'}")
    if "name" in data:
        raise RecipeError(f"{path}: unknown key 'name' (a recipe's name is its file name)")
    return path, data


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and validate a compensator recipe; every problem → :class:`RecipeError` naming the file."""
    path, data = read_toml(name_or_path)
    if data.get("kind", "compensator") != "compensator":
        raise RecipeError(f"{path}: kind = {data['kind']!r} is not a compensator recipe")
    data.pop("kind", None)
    data.pop("out", None)        # where the CLI writes (recipe_output), not part of the recipe itself
    return Recipe.from_dict(data, name=path.stem, source=str(path))


def recipe_output(name_or_path: str | Path, kind_default: Path) -> Path:
    """The checkpoint a recipe writes when ``--out`` is not given: its top-level ``out`` (a file in
    toolchain/assets/ or a path), else ``kind_default``. Two recipes of one kind (hlsim stages,
    distil and distil_stftnet) must not overwrite each other's shipped file."""
    path, data = read_toml(name_or_path)
    out = data.get("out")
    if out is None:
        return kind_default
    if not isinstance(out, str) or not out.endswith(".pt"):
        raise RecipeError(f"{path}: out = {out!r}: expected a checkpoint file name ending in .pt")
    p = Path(out)
    return p if p.is_absolute() else ASSETS / p


def recipe_kind(name_or_path: str | Path) -> str:
    """The recipe's top-level ``kind`` ("compensator" when absent, "simulator", "distil", "dal")."""
    path, data = read_toml(name_or_path)
    kind = data.get("kind", "compensator")
    if kind not in RECIPE_KINDS:
        raise RecipeError(f"{path}: kind = {kind!r}; expected one of {', '.join(RECIPE_KINDS)}")
    return kind


RECIPE_KINDS = ("compensator", "simulator", "distil", "dal")


def build_sections(path: Path, data: dict[str, Any], sections: dict[str, type]) -> dict[str, Any]:
    """Each ``[section]`` of ``data`` built into its dataclass (absent sections: defaults).

    Unknown sections/keys and bad values raise :class:`RecipeError` naming the file; top-level
    ``kind``, ``description`` and ``out`` strings are allowed and returned as-is.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("kind", "description", "out"):
            if not isinstance(value, str):
                raise RecipeError(f"{path}: {key} = {value!r}: expected a string")
            out[key] = value
        elif key in sections:
            if not isinstance(value, dict):
                raise RecipeError(f"{path}: '{key}' must be a section [{key}], got {value!r}")
            out[key] = _build_section(key, sections[key], value, str(path))
        else:
            raise RecipeError(f"{path}: unknown section or key '{key}'; expected sections "
                              f"{', '.join('[' + s + ']' for s in sections)}, 'kind', 'description' and 'out'")
    for key, cls in sections.items():
        if key not in out:
            try:
                out[key] = cls()
            except (TypeError, ValueError) as exc:
                raise RecipeError(f"{path}: section [{key}] is required ({exc})") from None
    return out


__all__ = ["ASSETS", "AudiogramSampling", "DataConfig", "EvalConfig", "Recipe", "RecipeError", "TrainConfig",
           "RECIPES_DIR", "RECIPE_KINDS", "asset_path", "available_recipes", "build_sections", "load_recipe", "read_toml",
           "recipe_kind", "recipe_output", "recipe_path"]
