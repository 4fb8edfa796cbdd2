"""``toolchain train --recipe dal``: the SEANet compensator trained through CARFAC (seed 004, DAL).

The compensator ``C`` learns ``HI(C(x), audiogram) ≈ NH(clean)``: a CARFAC fitted to the
listener's audiogram hears the device output, a normal CARFAC hears the clean speech, and the
NAP and SAI losses of :mod:`toolchain.train.losses_dal` compare the two. The loop is the shared
one (:func:`toolchain.train.loop.run_loop`: seeded batches, progress bar, ``--resume`` from
``<out>.ckpt``, DDP under ``torchrun``).

A ``kind = "dal"`` recipe has the sections ``[model]`` (SEANetConfig), ``[data]``,
``[audiograms]``, ``[train]``, ``[loss]`` (:class:`DalLossConfig`) and ``[eval]``. Audiograms
must be presets (``preset_probability = 1``): each new audiogram costs a CARFAC fit (~10 s), so
a random one per example is refused rather than silently slow. After training, the held-out
"test" split is scored per eval preset: NAP and SAI distance of the unprocessed and of the
compensated noisy speech against NH(clean).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from runtime.atomic import atomic_write
from toolchain.audio.audiogram import PRESETS
from toolchain.audio.data import SyntheticCorpus
from toolchain.models.compensators.seanet import SEANet, SEANetConfig, save_seanet
from toolchain.train.compensator import corpus_config, generate_pool, sample_audiograms
from toolchain.train.loop import DistEnv, init_distributed, run_loop, set_threads
from toolchain.train.losses_dal import CochlearEars, DalLossConfig, DalObjective
from toolchain.train.recipe import (
    AudiogramSampling,
    DataConfig,
    EvalConfig,
    Recipe,
    RecipeError,
    TrainConfig,
    build_sections,
    read_toml,
)

SECTIONS: dict[str, type] = {"model": SEANetConfig, "data": DataConfig, "audiograms": AudiogramSampling,
                             "train": TrainConfig, "loss": DalLossConfig, "eval": EvalConfig}


@dataclass(frozen=True)
class DalRecipe:
    """A parsed ``kind = "dal"`` recipe."""

    name: str
    description: str
    model: SEANetConfig
    data: DataConfig
    audiograms: AudiogramSampling
    train: TrainConfig
    loss: DalLossConfig
    eval: EvalConfig

    def to_dict(self) -> dict[str, Any]:
        """The TOML content as plain data (stored in the checkpoint)."""
        out: dict[str, Any] = {"kind": "dal", "description": self.description}
        for key in SECTIONS:
            v = getattr(self, key)
            out[key] = v.to_dict() if hasattr(v, "to_dict") else json.loads(json.dumps(asdict(v)))
        return out


def load_dal_recipe(name_or_path: str | Path) -> DalRecipe:
    """Read and validate a DAL recipe; every problem → :class:`RecipeError` naming the file."""
    path, data = read_toml(name_or_path)
    if data.get("kind") != "dal":
        raise RecipeError(f"{path}: kind = {data.get('kind')!r}; a DAL recipe says kind = \"dal\"")
    s = build_sections(path, data, SECTIONS)
    if s["audiograms"].preset_probability != 1.0:
        raise RecipeError(f"{path}: [audiograms] preset_probability = {s['audiograms'].preset_probability}: a DAL "
                          "recipe trains on presets only (1.0); each random audiogram would need its own CARFAC fit")
    return DalRecipe(name=path.stem, description=s.get("description", ""), **{k: s[k] for k in SECTIONS})


def _pool(recipe: DalRecipe, split: str, seconds: float, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    corpus = SyntheticCorpus(split, corpus_config(Recipe(model=recipe.model, data=recipe.data), seconds),
                             seed=seed, size=size, workers=recipe.data.workers)
    return generate_pool(corpus)


def make_batches(noisy: np.ndarray, clean: np.ndarray, recipe: DalRecipe, device: str):
    """``batch_fn(rng, step)`` for :func:`run_loop`: random pool rows and one preset audiogram each."""
    def batch_fn(rng: np.random.Generator, step: int) -> dict[str, Tensor]:
        idx = rng.integers(0, len(noisy), size=recipe.train.batch_size)
        a = sample_audiograms(rng, len(idx), recipe.audiograms)
        return {"noisy": torch.as_tensor(noisy[idx], device=device), "clean": torch.as_tensor(clean[idx], device=device),
                "audiogram": torch.as_tensor(a, device=device)}

    return batch_fn


@torch.no_grad()
def evaluate_dal(model: nn.Module, objective: DalObjective, noisy: np.ndarray, clean: np.ndarray,
                 presets: tuple[str, ...], device: str) -> list[dict[str, Any]]:
    """Per preset: NAP / SAI distance to NH(clean) of the unprocessed and the compensated noisy clips."""
    model.eval()
    x = torch.as_tensor(noisy, device=device)
    s = torch.as_tensor(clean, device=device)
    rows = []
    for name in presets:
        a = torch.tensor(PRESETS[name], dtype=torch.float32, device=device).expand(x.shape[0], -1)
        y = model(x[:, None], a)[:, 0]
        _, unproc = objective(x, s, a)
        _, comp = objective(y, s, a)
        rows.append({"audiogram": name,
                     **{f"unprocessed_{k}": round(v, 4) for k, v in unproc.items() if k != "limit"},
                     **{f"compensated_{k}": round(v, 4) for k, v in comp.items()},
                     "output_peak": round(float(y.abs().max()), 4)})
    return rows


def train_dal(recipe: DalRecipe, out_path: Path, *, device: str | None = None, max_steps: int | None = None,
              resume: bool = False, progress: bool = True, env: DistEnv | None = None) -> dict[str, Any]:
    """Train ``SEANet(recipe.model)`` through CARFAC; save it to ``out_path`` (+ a JSON summary beside it)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    env = env or init_distributed(device)
    threads = set_threads(recipe.train.threads)
    try:
        torch.manual_seed(recipe.train.seed)
        model = SEANet(recipe.model)
        ears = CochlearEars(float(recipe.model.sample_rate)).to(env.device)
        objective = DalObjective(ears, recipe.loss)
        # Fit every preset's impaired ear before the clock of the loop starts (memoised per process).
        ears.impaired_parameters(np.asarray([PRESETS[p] for p in recipe.audiograms.presets]))
        noisy, clean = _pool(recipe, "train", recipe.data.clip_seconds, recipe.data.train_examples,
                             recipe.data.corpus_seed)

        def loss_fn(net: nn.Module, b: dict[str, Tensor], rows: slice) -> tuple[Tensor, dict[str, float]]:
            x, c, a = b["noisy"][rows], b["clean"][rows], b["audiogram"][rows]
            y = net(x[:, None], a)[:, 0]
            return objective(y, c, a)

        ckpt = Path(str(out_path) + ".ckpt")
        res = run_loop(model, make_batches(noisy, clean, recipe, env.device), loss_fn, recipe.train, name="dal",
                       env=env, steps=None if max_steps is None else min(int(max_steps), recipe.train.steps),
                       checkpoint=ckpt, resume=resume, progress=progress)
        model = model.eval()
        test_noisy, test_clean = _pool(recipe, "test", recipe.eval.clip_seconds, recipe.eval.examples,
                                       recipe.eval.corpus_seed)
        eval_rows = evaluate_dal(model, objective, test_noisy, test_clean, recipe.eval.presets, env.device)
        summary = {
            "recipe": recipe.to_dict(), "recipe_name": recipe.name, "seed": recipe.train.seed, "device": env.device,
            "world_size": env.world_size, "threads": recipe.train.threads, "torch": str(torch.__version__),
            "steps": res.steps, "resumed_from": res.resumed_from, "skipped_steps": res.skipped_steps,
            "parameters": sum(p.numel() for p in model.parameters()),
            "first_loss": res.history[0] if res.history else None, "final_train_loss": res.final_loss,
            "loss_history": [round(v, 5) for v in res.history],
            "train_time_s": round(res.train_time_s, 1), "wall_time_s": round(time.perf_counter() - t0, 1),
            "cpu_time_s": round(time.process_time() - cpu0, 1), "eval": eval_rows,
        }
        if env.is_main:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            save_seanet(model.cpu(), str(out_path), extra=summary)
            with atomic_write(out_path.with_suffix(".json"), "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2)
                fh.write("\n")
            for p in (out_path, out_path.with_suffix(".json")):
                os.chmod(p, 0o644)  # the atomic writer's temp files are private (0600); these are assets
            ckpt.unlink(missing_ok=True)
        return summary
    finally:
        torch.set_num_threads(threads)


__all__ = ["DalRecipe", "evaluate_dal", "load_dal_recipe", "make_batches", "train_dal"]
