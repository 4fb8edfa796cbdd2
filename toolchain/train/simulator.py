"""Train the Neuro-MSBG-style simulator (:mod:`toolchain.models.hearing.hlsim`) against pyclarity MSBG.

``toolchain train --recipe hlsim``: generate (or load cached) MSBG pairs
(:mod:`toolchain.train.msbg_data`), train with seed 003's loss
(:func:`toolchain.train.losses.simulator_loss`) on random aligned crops, then report fidelity on
the held-out pairs: waveform SNR and log-spectral distance to MSBG, the same for the identity
("no simulator") baseline, and HASPI v2 computed on simulator outputs vs on MSBG outputs with
their Spearman rank correlation (seed 003 reports SRCC of STOI/PESQ; the issue asks ≥ 0.9).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from runtime.atomic import atomic_write
from toolchain.audio.clarity import haspi
from toolchain.models.hearing.hlsim import HLSim, HLSimConfig, load_hlsim, save_hlsim
from toolchain.train.loop import DistEnv, crop_batch, init_distributed, run_loop, set_threads
from toolchain.train.losses import SimLossConfig, simulator_loss
from toolchain.train.msbg_data import PairsConfig, describe, msbg_pairs
from toolchain.train.recipe import ASSETS, RecipeError, TrainConfig, asset_path, build_sections, read_toml

DEFAULT_SIMULATOR = ASSETS / "hlsim_default.pt"


@dataclass(frozen=True)
class SimTrainExtras:
    """``[crop]``: training crop length (the pairs are longer clips)."""

    seconds: float = 1.0

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")


@dataclass(frozen=True)
class SimInit:
    """``[init]``: start from a trained simulator instead of random weights (a fine-tuning stage).

    Relative paths are looked up in toolchain/assets/; "" trains from scratch.
    """

    checkpoint: str = ""

    def path(self) -> Path | None:
        return asset_path(self.checkpoint) if self.checkpoint else None


@dataclass(frozen=True)
class HeldOut(PairsConfig):
    """``[eval]``: the held-out pairs (test split) and how many get HASPI scores."""

    split: str = "test"
    examples: int = 48
    audiogram_seed: int = 1
    haspi_examples: int = 48


SECTIONS = {"hlsim": HLSimConfig, "data": PairsConfig, "eval": HeldOut, "train": TrainConfig,
            "loss": SimLossConfig, "crop": SimTrainExtras, "init": SimInit}


@dataclass
class SimulatorRecipe:
    name: str
    description: str
    hlsim: HLSimConfig
    data: PairsConfig
    eval: HeldOut
    train: TrainConfig
    loss: SimLossConfig
    crop: SimTrainExtras
    init: SimInit

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "simulator", "description": self.description}
        for key in SECTIONS:
            out[key] = json.loads(json.dumps(asdict(getattr(self, key))))
        return out


def load_simulator_recipe(name_or_path: str | Path) -> SimulatorRecipe:
    path, data = read_toml(name_or_path)
    if data.get("kind") != "simulator":
        raise RecipeError(f"{path}: kind = {data.get('kind')!r}; a simulator recipe says kind = \"simulator\"")
    s = build_sections(path, data, SECTIONS)
    if s["data"].split != "train" or s["eval"].split != "test":
        raise RecipeError(f"{path}: [data] must use split 'train' and [eval] split 'test' (held-out)")
    init = s["init"].path()
    if init is not None and not init.is_file():
        raise RecipeError(f"{path}: [init] checkpoint {init} not found")
    return SimulatorRecipe(name=path.stem, description=s.get("description", ""),
                           **{k: s[k] for k in SECTIONS})


def _targets(sim: HLSim, msbg: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        mag, pha, cpx = sim.compressed(msbg)
    return mag, pha, cpx


def simulator_loss_fn(loss_cfg: SimLossConfig) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    def loss_fn(net: torch.nn.Module, batch: dict[str, torch.Tensor], rows: slice):
        sim = net.module if hasattr(net, "module") else net
        x, a, y = batch["x"][rows], batch["audiogram"][rows], batch["msbg"][rows]
        out = net(x, a)
        mag, pha, cpx = _targets(sim, y)
        return simulator_loss(out, mag, pha, cpx, y, loss_cfg)

    return loss_fn


# ----------------------------------------------------------------------------- fidelity
def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    num = float(np.sum(ref.astype(np.float64) ** 2))
    den = float(np.sum((ref.astype(np.float64) - est) ** 2))
    return 10 * math.log10(num / den) if den > 0 else math.inf


def _lsd_db(ref: np.ndarray, est: np.ndarray, n_fft: int = 512, hop: int = 128) -> float:
    """Log-spectral distance (dB, RMS over bins and frames) within 60 dB of the reference peak."""
    def spec(v: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(v, n_fft)[::hop] * np.hanning(n_fft)
        return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-12)
    r, e = spec(ref), spec(est)
    mask = r > r.max() - 60.0
    return float(np.sqrt(np.mean((r[mask] - e[mask]) ** 2))) if mask.any() else 0.0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    # lazy: scipy is needed only on this path
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def normal_hearing_haspi(clean: np.ndarray, heard: np.ndarray, sample_rate: int, calibration: Any) -> float:
    """HASPI v2 of ``heard`` against ``clean`` for a normal ear (0 dB HL), in our calibration."""

    logging.disable(logging.WARNING)  # pyclarity warns "Audiogram does not have all HASPI frequencies" per call
    try:
        return haspi(clean, heard, sample_rate, (0.0,) * 8, calibration)
    finally:
        logging.disable(logging.NOTSET)


@torch.no_grad()
def simulate_all(sim: HLSim, x: np.ndarray, audiograms: np.ndarray, batch: int = 8) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        out.append(sim.simulate(torch.as_tensor(x[i:i + batch]), torch.as_tensor(audiograms[i:i + batch])).numpy())
    return np.concatenate(out)


def fidelity(sim: HLSim, pairs: dict[str, np.ndarray], *, haspi_examples: int,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Held-out fidelity of the simulator to MSBG (see the module docstring)."""
    y_sim = simulate_all(sim.eval(), pairs["x"], pairs["audiogram"])
    ref = pairs["msbg"]
    snr = [_snr_db(r, s) for r, s in zip(ref, y_sim)]
    lsd = [_lsd_db(r, s) for r, s in zip(ref, y_sim)]
    lsd_identity = [_lsd_db(r, x) for r, x in zip(ref, pairs["x"])]
    n = min(haspi_examples, len(ref))
    h_ref, h_sim = [], []
    for i in range(n):
        # Intelligibility of what the impaired listener hears, scored by a normal-hearing HASPI
        # against the clean speech: the same question asked of MSBG's output and of ours.
        h_ref.append(normal_hearing_haspi(pairs["clean"][i], ref[i], sim.config.sample_rate, sim.calibration))
        h_sim.append(normal_hearing_haspi(pairs["clean"][i], y_sim[i], sim.config.sample_rate, sim.calibration))
        if progress is not None:
            progress(f"HASPI {i + 1}/{n}")
    h_ref_a, h_sim_a = np.asarray(h_ref), np.asarray(h_sim)
    return {
        "examples": int(len(ref)),
        "waveform_snr_db_median": float(np.median(snr)),
        "log_spectral_distance_db_mean": float(np.mean(lsd)),
        "identity_log_spectral_distance_db_mean": float(np.mean(lsd_identity)),
        "haspi_examples": n,
        "haspi_msbg_mean": float(h_ref_a.mean()) if n else None,
        "haspi_sim_mean": float(h_sim_a.mean()) if n else None,
        "haspi_mean_abs_diff": float(np.mean(np.abs(h_ref_a - h_sim_a))) if n else None,
        "haspi_spearman": spearman(h_ref_a, h_sim_a) if n > 2 else None,
        "haspi_pearson": float(np.corrcoef(h_ref_a, h_sim_a)[0, 1]) if n > 2 else None,
        "haspi_msbg": [round(v, 4) for v in h_ref],
        "haspi_sim": [round(v, 4) for v in h_sim],
    }


# ----------------------------------------------------------------------------- training
def train_simulator(recipe: SimulatorRecipe, out_path: Path, *, device: str | None = None,
                    max_steps: int | None = None, resume: bool = False, progress: bool = True,
                    evaluate: bool = True, env: DistEnv | None = None) -> dict[str, Any]:
    """Train, evaluate and save the simulator; returns the summary written beside it (JSON)."""
    t_start = time.perf_counter()
    env = env or init_distributed(device)
    threads = set_threads(recipe.train.threads)
    try:
        say = (lambda m: print(f"hlsim: {m}", flush=True)) if (progress and env.is_main) else (lambda m: None)
        # The warm start first: a wrong [init] is reported before the (long, first-run) MSBG pairs.
        sim = HLSim(recipe.hlsim)
        init = recipe.init.path()
        if init is not None:
            warm = load_hlsim(str(init))
            if warm.config != recipe.hlsim:
                raise RecipeError(f"[init] checkpoint {init} has a different [hlsim] config than the recipe")
            sim.load_state_dict(warm.state_dict())
        say(f"MSBG pairs: {recipe.data.examples} train + {recipe.eval.examples} held-out (cached after the first run)")
        t0 = time.perf_counter()
        if env.distributed and not env.is_main:
            torch.distributed.barrier()   # rank 0 generates (and caches) the pairs; the others then read them
        train = msbg_pairs(recipe.data, progress=(lambda a, b: say(f"MSBG train {a}/{b}")) if progress else None)
        test = msbg_pairs(recipe.eval, progress=(lambda a, b: say(f"MSBG held-out {a}/{b}")) if progress else None)
        if env.distributed and env.is_main:
            torch.distributed.barrier()
        data_time = time.perf_counter() - t0
        crop = int(round(recipe.crop.seconds * recipe.hlsim.sample_rate))

        def batch_fn(rng: np.random.Generator, step: int) -> dict[str, torch.Tensor]:
            idx = rng.integers(0, len(train["x"]), size=recipe.train.batch_size)
            x, y = crop_batch([train["x"], train["msbg"]], idx, crop, rng)
            return {"x": torch.as_tensor(x, device=env.device), "msbg": torch.as_tensor(y, device=env.device),
                    "audiogram": torch.as_tensor(train["audiogram"][idx], device=env.device)}

        ckpt = Path(str(out_path) + ".ckpt")
        res = run_loop(sim, batch_fn, simulator_loss_fn(recipe.loss), recipe.train, name="hlsim", env=env,
                       steps=max_steps if max_steps is not None else recipe.train.steps, checkpoint=ckpt,
                       resume=resume, progress=progress)
        sim = sim.cpu().eval()
        summary: dict[str, Any] = {
            "recipe": recipe.to_dict(), "recipe_name": recipe.name, "steps": res.steps,
            "resumed_from": res.resumed_from, "device": env.device, "world_size": env.world_size,
            "threads": recipe.train.threads, "torch": str(torch.__version__),
            "parameters": int(sum(p.numel() for p in sim.parameters())),
            "data_time_s": round(data_time, 1), "train_time_s": round(res.train_time_s, 1),
            "final_train_loss": res.final_loss, "skipped_steps": res.skipped_steps, "data": describe(recipe.data), "held_out": describe(recipe.eval),
        }
        if env.is_main:
            if evaluate:
                say("held-out fidelity (HASPI on MSBG and simulator outputs)")
                summary["fidelity"] = fidelity(sim, test, haspi_examples=recipe.eval.haspi_examples)
            summary["wall_time_s"] = round(time.perf_counter() - t_start, 1)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            save_hlsim(sim, str(out_path), extra=summary | {"loss_history": res.history})

            with atomic_write(out_path.with_suffix(".json"), "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2)
                fh.write("\n")
            ckpt.unlink(missing_ok=True)
        return summary
    finally:
        torch.set_num_threads(threads)
