"""Train the SEANet compensator through the filterbank hearing-loss model.

``train_compensator(load_recipe("default"), Path("toolchain/assets/seanet_default.pt"))``
regenerates the shipped default compensator (``toolchain train --recipe default`` runs it).

What one run does, every step of it decided by the recipe:

1. generate the training pool once (``SyntheticCorpus("train", ...)``: espeak-ng speech, cached
   on disk, plus noise) and the normal-hearing perception of each clean clip (the target);
2. for each step draw a batch (a seeded permutation per epoch) and one audiogram per example
   (a preset or ``Audiogram.random``), run ``SEANet(noisy, audiogram)`` and minimise
   :func:`toolchain.train.losses.compensation_loss` against ``NH(clean)`` with AdamW;
3. evaluate on the held-out "test" split for the recipe's presets (loss of the unprocessed
   noisy input vs the compensated one, output level and peak), and save the checkpoint with
   :func:`toolchain.models.compensators.seanet.save_seanet` (recipe, seed, steps, wall time, final loss, eval
   table in ``extra``) plus a human-readable ``<checkpoint>.json`` summary beside it.

Determinism: the same recipe on the same device, torch build and thread count gives the same
weights bit for bit (seeded torch and numpy generators, fixed data order, no other state).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.atomic import atomic_write
from toolchain.audio.audiogram import PRESETS, Audiogram
from toolchain.audio.data import CorpusConfig, SyntheticCorpus
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.models.compensators.seanet import SEANet, save_seanet
from toolchain.models.hearing.hl_filterbank import FilterbankHearingLoss
from toolchain.train.loop import pick_device, progress_bar
from toolchain.train.losses import compensation_loss, silence_penalty
from toolchain.train.quant_noise import quant_noise_loss
from toolchain.train.recipe import AudiogramSampling, Recipe

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "seanet_default.pt"
# The silence forward's length: past the network's receptive field, so its steady state is seen.
SILENCE_SAMPLES = 2048


@dataclass
class TrainResult:
    """What a training run produced (also stored in the checkpoint's ``extra``)."""

    out_path: Path
    recipe_name: str
    seed: int
    steps: int
    device: str
    wall_time_s: float                  # whole run: pool generation, training, evaluation, save
    train_time_s: float                 # the optimisation loop alone
    cpu_time_s: float                   # process CPU time of the whole run (all threads)
    final_train_loss: float             # mean total loss over the last (up to) 20 steps
    loss_history: list[float] = field(default_factory=list)
    eval: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON summary written beside the checkpoint (no loss history)."""
        d = asdict(self)
        d.pop("loss_history")
        d.pop("out_path")
        return {"checkpoint": self.out_path.name, **d}


# ---------------------------------------------------------------------------- data
def corpus_config(recipe: Recipe, seconds: float) -> CorpusConfig:
    d = recipe.data
    return CorpusConfig(sample_rate=recipe.model.sample_rate, seconds=seconds,
                        speech_level_db_spl=d.speech_level_db_spl, snr_db=d.snr_db,
                        noise_types=d.noise_types, noise_probability=d.noise_probability)


def generate_pool(corpus: SyntheticCorpus, *, progress: Any = None, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All ``(noisy, clean)`` clips of ``corpus`` as ``(N, n)`` float32 arrays, in index order."""
    n = corpus.config.num_samples
    noisy = np.empty((len(corpus), n), dtype=np.float32)
    clean = np.empty((len(corpus), n), dtype=np.float32)
    task = None if progress is None else progress.add_task(f"corpus {corpus.split}", total=len(corpus), info="")
    for start in range(0, len(corpus), chunk):
        idx = list(range(start, min(start + chunk, len(corpus))))
        noisy[idx], clean[idx] = corpus.batch(idx)
        if task is not None:
            progress.update(task, advance=len(idx))
    if task is not None:
        progress.remove_task(task)
    return noisy, clean


def sample_audiograms(rng: np.random.Generator, n: int, sampling: AudiogramSampling) -> np.ndarray:
    """``(n, 8)`` dB HL: each a preset with ``preset_probability``, else ``Audiogram.random``."""
    out = np.empty((n, 8), dtype=np.float32)
    for i in range(n):
        if sampling.presets and rng.random() < sampling.preset_probability:
            out[i] = PRESETS[sampling.presets[int(rng.integers(len(sampling.presets)))]]
        else:
            out[i] = Audiogram.random(rng).as_array()
    return out


class _BatchOrder:
    """Indices of successive batches: a fresh seeded permutation of the pool per epoch."""

    def __init__(self, size: int, batch: int, rng: np.random.Generator) -> None:
        self.size, self.batch, self.rng = size, batch, rng
        self.queue: list[int] = []

    def next(self) -> np.ndarray:
        while len(self.queue) < self.batch:
            self.queue.extend(int(i) for i in self.rng.permutation(self.size))
        idx, self.queue = self.queue[:self.batch], self.queue[self.batch:]
        return np.asarray(idx)


# ---------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: SEANet, hl: FilterbankHearingLoss, recipe: Recipe, noisy: np.ndarray,
             clean: np.ndarray, presets: tuple[str, ...], *, device: str = "cpu") -> list[dict[str, Any]]:
    """Per preset: total and perceptual loss of the unprocessed vs compensated signal, levels."""
    model.eval()
    x = torch.as_tensor(noisy, device=device)
    s = torch.as_tensor(clean, device=device)
    target = hl.perceived_normal(s)
    rows = []
    for name in presets:
        a = torch.tensor(PRESETS[name], dtype=torch.float32, device=device).expand(x.shape[0], -1)
        y = model(x[:, None], a)[:, 0]
        _, unproc = compensation_loss(hl, x, s, a, recipe.loss, target=target)
        _, comp = compensation_loss(hl, y, s, a, recipe.loss, target=target)
        y_np = y.cpu().numpy().astype(np.float64)
        rows.append({
            "audiogram": name,
            "unprocessed": round(unproc["total"], 4),
            "compensated": round(comp["total"], 4),
            "unprocessed_perceptual_db": round(unproc["perceptual"], 3),
            "compensated_perceptual_db": round(comp["perceptual"], 3),
            "input_level_db_spl": round(float(np.mean(DEFAULT_CALIBRATION.level_db_spl(noisy, axis=-1))), 2),
            "output_level_db_spl": round(float(np.mean(DEFAULT_CALIBRATION.level_db_spl(y_np, axis=-1))), 2),
            "output_peak": round(float(np.max(np.abs(y_np))), 4),
            "output_over_limit_fraction": float(np.mean(np.abs(y_np) > recipe.loss.output_limit)),
        })
    return rows


# ---------------------------------------------------------------------------- training
def train_compensator(
    recipe: Recipe,
    out_path: Path,
    *,
    progress: bool = True,
    device: str | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Train ``SEANet(recipe.model)`` as the recipe says and save it to ``out_path``.

    ``max_steps`` caps the number of steps (tests, quick looks); the learning-rate schedule
    still follows ``recipe.train.steps``. Returns a :class:`TrainResult`.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if recipe.hl.sample_rate != recipe.model.sample_rate:
        raise ValueError(f"recipe {recipe.name}: [hl] sample_rate {recipe.hl.sample_rate} differs from "
                         f"[model] sample_rate {recipe.model.sample_rate}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    cfg = recipe.train
    steps = cfg.steps if max_steps is None else max(0, min(int(max_steps), cfg.steps))
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    bar = progress_bar() if progress else None
    try:
        if bar is not None:
            bar.start()
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        train_corpus = SyntheticCorpus("train", corpus_config(recipe, recipe.data.clip_seconds),
                                       seed=recipe.data.corpus_seed, size=recipe.data.train_examples,
                                       workers=recipe.data.workers)
        noisy_np, clean_np = generate_pool(train_corpus, progress=bar)
        test_corpus = SyntheticCorpus("test", corpus_config(recipe, recipe.eval.clip_seconds),
                                      seed=recipe.eval.corpus_seed, size=recipe.eval.examples,
                                      workers=recipe.data.workers)
        test_noisy, test_clean = generate_pool(test_corpus, progress=bar)

        model = SEANet(recipe.model).to(dev)
        hl = FilterbankHearingLoss(recipe.hl).to(dev)
        noisy = torch.as_tensor(noisy_np, device=dev)
        clean = torch.as_tensor(clean_np, device=dev)
        with torch.no_grad():
            targets = torch.cat([hl.perceived_normal(clean[i:i + 64]) for i in range(0, len(clean), 64)])
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr_at(0), weight_decay=cfg.weight_decay)
        order = _BatchOrder(len(noisy_np), cfg.batch_size, rng)

        history: list[float] = []
        noise_history: list[float] = []
        task = None if bar is None else bar.add_task("train", total=steps, info="loss -")
        t_train = time.perf_counter()
        ema = math.nan
        model.train()
        for step in range(steps):
            idx = torch.as_tensor(order.next(), device=dev)
            a = torch.as_tensor(sample_audiograms(rng, len(idx), recipe.audiograms), device=dev)
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(step)
            x = noisy[idx][:, None]
            y = model(x, a)
            loss, parts = compensation_loss(hl, y[:, 0], clean[idx], a, recipe.loss, target=targets[idx])
            if recipe.loss.quant_noise > 0 and step >= recipe.loss.quant_noise_from_step:
                qn, parts["quant_noise_snr_db"] = quant_noise_loss(model, x, a, y, recipe.loss.quant_noise_target_db)
                loss = loss + recipe.loss.quant_noise * qn
                parts["total"] = float(loss.detach())
                noise_history.append(parts["quant_noise_snr_db"])
            if recipe.loss.silence > 0:
                quiet = model(torch.zeros_like(x[..., :SILENCE_SAMPLES]), a)
                sil = silence_penalty(quiet, recipe.loss.silence_target_db_spl)
                loss = loss + recipe.loss.silence * sil
                parts["silence"], parts["total"] = float(sil.detach()), float(loss.detach())
            if not math.isfinite(parts["total"]):
                raise FloatingPointError(f"recipe {recipe.name}: loss is {parts['total']} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            history.append(parts["total"])
            ema = parts["total"] if math.isnan(ema) else 0.95 * ema + 0.05 * parts["total"]
            if task is not None:
                info = f"loss {ema:.3f}"
                if noise_history:
                    info += f"  int8-noise SNR {noise_history[-1]:.1f} dB"
                bar.update(task, advance=1, info=info)
        train_time = time.perf_counter() - t_train

        model = model.eval()
        eval_rows = evaluate(model, hl, recipe, test_noisy, test_clean, recipe.eval.presets, device=dev)
        tail = history[-20:]
        final = float(np.mean(tail)) if tail else math.nan
        wall = time.perf_counter() - t_start
        result = TrainResult(out_path=out_path, recipe_name=recipe.name, seed=cfg.seed, steps=steps,
                             device=dev, wall_time_s=round(wall, 2), train_time_s=round(train_time, 2),
                             cpu_time_s=round(time.process_time() - cpu_start, 2),
                             final_train_loss=final, loss_history=history, eval=eval_rows)
        extra = {
            "recipe": recipe.to_dict(),
            "recipe_name": recipe.name,
            "seed": cfg.seed,
            "steps": steps,
            "device": dev,
            "threads": cfg.threads,
            "torch": str(torch.__version__),
            "wall_time_s": result.wall_time_s,
            "train_time_s": result.train_time_s,
            "cpu_time_s": result.cpu_time_s,
            "final_train_loss": final,
            "eval": eval_rows,
            # mean over the last 20 steps of the noise-injected forward's SNR (quant_noise > 0)
            "final_quant_noise_snr_db": float(np.mean(noise_history[-20:])) if noise_history else None,
        }
        save_seanet(model.cpu(), str(out_path), extra=extra)
        _write_json(out_path.with_suffix(".json"),
                    result.summary() | {"final_quant_noise_snr_db": extra["final_quant_noise_snr_db"],
                                        "threads": cfg.threads, "torch": str(torch.__version__),
                                        "recipe": recipe.to_dict()})
        for p in (out_path, out_path.with_suffix(".json")):
            os.chmod(p, 0o644)  # the atomic writers' temp files are private (0600); these are assets
        return result
    finally:
        if bar is not None:
            bar.stop()
        torch.set_num_threads(threads_before)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")


__all__ = ["TrainResult", "train_compensator", "evaluate", "sample_audiograms", "generate_pool",
           "corpus_config", "DEFAULT_CHECKPOINT"]
