"""Compensators trained through the frozen neural simulator, then teacher → student distillation.

Seed 003 Sec. III-F: a compensator ``C`` is trained so that the frozen simulator's output for
the impaired ear, ``HLSim(C(x), a)``, matches what a normal ear hears of the clean speech,
``HLSim(clean, 0 dB HL)`` (the normal-hearing path is the same simulator with a normal
audiogram). The loss is the seed's own (compressed magnitude MSE, complex MSE and the
anti-wrapped phase terms, :func:`toolchain.train.losses.simulator_loss`) between those two
simulator outputs, plus the output-limit penalty (the device must never exceed its limit).

Two stages (a ``kind = "distil"`` recipe):

1. **Teacher**: a larger fp32 SEANet (``[teacher]``), audiogram-conditioned, trained over a
   distribution of audiograms with that loss.
2. **Student**: the deployable causal model (``[student]``, the model family of the export)
   learns from the teacher — output L1 and a feature loss on the bottleneck (the student's
   bottleneck projected by a 1×1 convolution onto the teacher's; the projection is discarded)
   — and from the simulator loss itself (``[distil]`` weights).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from runtime.atomic import atomic_write
from toolchain.audio.data import SyntheticCorpus
from toolchain.models.compensators.seanet import SEANet, SEANetConfig, load_seanet, save_seanet
from toolchain.models.compensators.stftnet import STFTNet, STFTNetConfig, save_stftnet
from toolchain.models.hearing.hlsim import HLSim, load_hlsim
from toolchain.train.compensator import corpus_config, generate_pool, sample_audiograms
from toolchain.train.loop import DistEnv, init_distributed, run_loop, set_threads, unwrap
from toolchain.train.losses import SimLossConfig, limit_penalty, simulator_loss
from toolchain.train.recipe import (
    AudiogramSampling,
    DataConfig,
    Recipe,
    RecipeError,
    TrainConfig,
    asset_path,
    build_sections,
    read_toml,
)


@dataclass(frozen=True)
class SimulatorRef:
    """``[simulator]``: the frozen simulator checkpoint (relative paths: toolchain/assets/)."""

    checkpoint: str = "hlsim_default.pt"

    def path(self) -> Path:
        return asset_path(self.checkpoint)


@dataclass(frozen=True)
class CompLoss:
    """``[loss]``: the simulator-domain loss weights plus the output-limit penalty."""

    magnitude: float = 0.9
    phase: float = 0.0        # off by default: the ear is phase-deaf at high frequencies, and MSBG's phase is noisy
    complex: float = 0.1
    time: float = 0.0
    limit: float = 100.0
    output_limit: float = 0.85
    # Fraction of the input's noise kept in the target (0: the normal ear hears clean speech, the
    # compensator must also remove the noise; 1: pure loss compensation, no noise reduction).
    # Hearing aids limit their noise reduction because strong suppression distorts the speech.
    target_noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_noise <= 1.0:
            raise ValueError(f"target_noise must be in 0..1, got {self.target_noise}")

    def sim(self) -> SimLossConfig:
        return SimLossConfig(magnitude=self.magnitude, phase=self.phase, complex=self.complex, time=self.time)


@dataclass(frozen=True)
class DistilWeights:
    """``[distil]``: student loss = simulator·L_sim + output·L1(s, t) + feature·L_feat."""

    simulator: float = 1.0
    output: float = 1.0
    feature: float = 0.1
    # Optional warm start of the student from a compensator checkpoint of the same config
    # (relative paths: toolchain/assets/); "" trains it from the pass-through initialisation.
    student_init: str = ""


TEACHER_KINDS: dict[str, type] = {"seanet": SEANetConfig, "stftnet": STFTNetConfig}
SECTIONS = {"simulator": SimulatorRef, "teacher": SEANetConfig, "student": SEANetConfig, "data": DataConfig,
            "audiograms": AudiogramSampling, "teacher_train": TrainConfig, "student_train": TrainConfig,
            "loss": CompLoss, "distil": DistilWeights}


@dataclass
class DistilRecipe:
    name: str
    description: str
    simulator: SimulatorRef
    teacher: Any   # SEANetConfig or STFTNetConfig ([teacher] kind)
    student: SEANetConfig
    data: DataConfig
    audiograms: AudiogramSampling
    teacher_train: TrainConfig
    student_train: TrainConfig
    loss: CompLoss
    distil: DistilWeights

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "distil", "description": self.description}
        for key in SECTIONS:
            v = getattr(self, key)
            out[key] = v.to_dict() if hasattr(v, "to_dict") else json.loads(json.dumps(asdict(v)))
        out["teacher"] = {"kind": self.teacher_kind, **out["teacher"]}
        return out

    @property
    def teacher_kind(self) -> str:
        return next(k for k, cls in TEACHER_KINDS.items() if type(self.teacher) is cls)


def load_distil_recipe(name_or_path: str | Path) -> DistilRecipe:
    path, data = read_toml(name_or_path)
    if data.get("kind") != "distil":
        raise RecipeError(f"{path}: kind = {data.get('kind')!r}; a distillation recipe says kind = \"distil\"")
    kind = "seanet"
    if isinstance(data.get("teacher"), dict):   # the model kind is not a field of either config
        data = {**data, "teacher": dict(data["teacher"])}
        kind = data["teacher"].pop("kind", "seanet")
    if kind not in TEACHER_KINDS:
        raise RecipeError(f"{path}: [teacher] kind = {kind!r}; expected one of {', '.join(TEACHER_KINDS)}")
    s = build_sections(path, data, dict(SECTIONS, teacher=TEACHER_KINDS[kind]))
    if kind != "seanet":
        if s["distil"].feature > 0:
            raise RecipeError(f"{path}: [distil] feature = {s['distil'].feature}: the feature loss needs a SEANet "
                              f"teacher (a {kind} teacher has no bottleneck at the student's frame rate); set it to 0")
    elif s["teacher"].strides != s["student"].strides:
        raise RecipeError(f"{path}: [teacher] strides {list(s['teacher'].strides)} differ from [student] "
                          f"{list(s['student'].strides)}; the feature loss needs the same frame rate")
    return DistilRecipe(name=path.stem, description=s.get("description", ""), **{k: s[k] for k in SECTIONS})


def bottleneck_features(model: nn.Module) -> Callable[[], Tensor]:
    """Register a hook on the last bottleneck unit; the returned callable gives its last output."""
    store: dict[str, Tensor] = {}
    unwrap(model).bottleneck[-1].register_forward_hook(lambda m, i, o: store.__setitem__("h", o))
    return lambda: store["h"]


class CompensationObjective:
    """HLSim(C(x), a) ≈ HLSim(clean, normal) in the simulator's compressed spectral domain."""

    def __init__(self, sim: HLSim, loss: CompLoss) -> None:
        self.sim = sim.eval()
        for p in self.sim.parameters():
            p.requires_grad_(False)
        self.loss = loss

    @torch.no_grad()
    def targets(self, clean: Tensor, noisy: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The normal ear's view of the target: clean speech plus ``target_noise`` of the noise."""
        if noisy is not None and self.loss.target_noise > 0:
            clean = clean + self.loss.target_noise * (noisy - clean)
        normal = torch.zeros(clean.shape[0], 8, device=clean.device)
        out = self.sim(clean, normal)
        return out.mag, out.phase, out.complex, out.wave

    def __call__(self, y: Tensor, audiogram: Tensor, target: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, float]]:
        # The ear hears what the device delivers: the output clipped at its limit (the runtime's
        # limiter never lets a sample through above it). Gain the device cannot deliver therefore
        # earns nothing from the simulator loss, and the penalty pulls the overshoot back.
        limit = self.loss.output_limit
        out = self.sim(y.clamp(-limit, limit), audiogram)
        total, parts = simulator_loss(out, *target, self.loss.sim())
        lim = limit_penalty(y, limit, per_sample=True)
        parts = {f"sim_{k}": v for k, v in parts.items()} | {"limit": float(lim.detach())}
        total = total + self.loss.limit * lim
        parts["total"] = float(total.detach())
        return total, parts


def _pool(recipe: DistilRecipe, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    corpus = SyntheticCorpus("train", corpus_config(_as_comp_recipe(recipe), recipe.data.clip_seconds),
                             seed=recipe.data.corpus_seed, size=recipe.data.train_examples, workers=recipe.data.workers)
    return generate_pool(corpus)


def _as_comp_recipe(recipe: DistilRecipe) -> Any:
    return Recipe(model=recipe.student, data=recipe.data)


def make_batches(noisy: np.ndarray, clean: np.ndarray, recipe: DistilRecipe, batch: int, device: str):
    def batch_fn(rng: np.random.Generator, step: int) -> dict[str, Tensor]:
        idx = rng.integers(0, len(noisy), size=batch)
        a = sample_audiograms(rng, batch, recipe.audiograms)
        return {"noisy": torch.as_tensor(noisy[idx], device=device), "clean": torch.as_tensor(clean[idx], device=device),
                "audiogram": torch.as_tensor(a, device=device)}

    return batch_fn


def build_teacher(config: Any) -> nn.Module:
    """The teacher model of a ``[teacher]`` config (SEANet or the Neuro-MSBG-style stftnet)."""
    return STFTNet(config) if isinstance(config, STFTNetConfig) else SEANet(config)


def save_teacher(model: nn.Module, path: str, extra: dict[str, Any]) -> None:
    (save_stftnet if isinstance(model, STFTNet) else save_seanet)(model, path, extra=extra)


def train_teacher(recipe: DistilRecipe, objective: CompensationObjective, batch_fn: Any, env: DistEnv, *,
                  steps: int | None, progress: bool, checkpoint: Path | None, resume: bool) -> tuple[nn.Module, Any]:
    teacher = build_teacher(recipe.teacher)

    def loss_fn(net: nn.Module, b: dict[str, Tensor], rows: slice):
        x, c, a = b["noisy"][rows], b["clean"][rows], b["audiogram"][rows]
        y = net(x[:, None], a)[:, 0]
        return objective(y, a, objective.targets(c, x))

    res = run_loop(teacher, batch_fn, loss_fn, recipe.teacher_train, name="teacher", env=env, steps=steps,
                   checkpoint=checkpoint, resume=resume, progress=progress)
    return teacher.eval(), res


def train_student(recipe: DistilRecipe, teacher: SEANet, objective: CompensationObjective, batch_fn: Any,
                  env: DistEnv, *, steps: int | None, progress: bool, checkpoint: Path | None,
                  resume: bool) -> tuple[SEANet, Any]:
    student = SEANet(recipe.student)
    if recipe.distil.student_init:
        init = asset_path(recipe.distil.student_init)
        if not init.exists():
            raise RecipeError(f"[distil] student_init {init} not found")
        warm = load_seanet(str(init))
        if warm.config != recipe.student:
            raise RecipeError(f"[distil] student_init {init} has a different config than [student]")
        student.load_state_dict(warm.state_dict())
    teacher = teacher.to(env.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    w = recipe.distil
    use_feature = w.feature > 0
    modules: dict[str, nn.Module] = {"student": student}
    if use_feature:
        t_feat = bottleneck_features(teacher)
        s_feat = bottleneck_features(student)
        # 1x1 projection student bottleneck -> teacher bottleneck; trained with the student, then dropped.
        modules["proj"] = nn.Conv1d(recipe.student.level_channels()[-1], recipe.teacher.level_channels()[-1],
                                    1).to(env.device)
    holder = nn.ModuleDict(modules)

    def loss_fn(net: nn.Module, b: dict[str, Tensor], rows: slice):
        inner = unwrap(net)
        x, c, a = b["noisy"][rows], b["clean"][rows], b["audiogram"][rows]
        with torch.no_grad():
            yt = teacher(x[:, None], a)[:, 0]
            ft = t_feat() if use_feature else None
        ys = inner["student"](x[:, None], a)[:, 0]
        sim_loss, parts = objective(ys, a, objective.targets(c, x))
        out_l1 = torch.mean(torch.abs(ys - yt))
        if use_feature:
            fs = inner["proj"](s_feat())
            feat = torch.mean((fs - ft) ** 2) / (torch.mean(ft ** 2) + 1e-8)
        else:
            feat = ys.new_zeros(())
        total = w.simulator * sim_loss + w.output * out_l1 * 100.0 + w.feature * feat
        parts = parts | {"output_l1": float(out_l1.detach()), "feature": float(feat.detach()), "total": float(total.detach())}
        return total, parts

    res = run_loop(holder, batch_fn, loss_fn, recipe.student_train, name="student", env=env, steps=steps,
                   checkpoint=checkpoint, resume=resume, progress=progress)
    return student.eval(), res


def train_distilled(recipe: DistilRecipe, out_path: Path, *, teacher_out: Path | None = None,
                    device: str | None = None, max_steps: int | None = None, resume: bool = False,
                    progress: bool = True, env: DistEnv | None = None) -> dict[str, Any]:
    """Teacher, then student; saves both (student at ``out_path``) and a JSON summary beside it."""
    t0 = time.perf_counter()
    env = env or init_distributed(device)
    threads = set_threads(recipe.teacher_train.threads)
    try:
        sim_path = recipe.simulator.path()
        if not sim_path.exists():
            raise RecipeError(f"[simulator] checkpoint {sim_path} not found; train it with `toolchain train --recipe hlsim`")
        objective = CompensationObjective(load_hlsim(str(sim_path)).to(env.device), recipe.loss)
        noisy, clean = _pool(recipe, progress)
        teacher_out = teacher_out or out_path.with_name(out_path.stem + "_teacher.pt")
        tb = make_batches(noisy, clean, recipe, recipe.teacher_train.batch_size, env.device)
        teacher, tres = train_teacher(recipe, objective, tb, env, steps=max_steps, progress=progress,
                                      checkpoint=Path(str(teacher_out) + ".ckpt"), resume=resume)
        sb = make_batches(noisy, clean, recipe, recipe.student_train.batch_size, env.device)
        student, sres = train_student(recipe, teacher, objective, sb, env, steps=max_steps, progress=progress,
                                      checkpoint=Path(str(out_path) + ".ckpt"), resume=resume)
        summary = {
            "recipe": recipe.to_dict(), "recipe_name": recipe.name, "device": env.device,
            "world_size": env.world_size, "torch": str(torch.__version__), "simulator": str(sim_path),
            "teacher": {"kind": recipe.teacher_kind,
                        "parameters": sum(p.numel() for p in teacher.parameters()), "steps": tres.steps,
                        "train_time_s": round(tres.train_time_s, 1), "final_loss": tres.final_loss,
                        "skipped_steps": tres.skipped_steps},
            "student": {"parameters": sum(p.numel() for p in student.parameters()), "steps": sres.steps,
                        "train_time_s": round(sres.train_time_s, 1), "final_loss": sres.final_loss,
                        "skipped_steps": sres.skipped_steps},
            "wall_time_s": round(time.perf_counter() - t0, 1),
        }
        if env.is_main:
            save_teacher(teacher.cpu(), str(teacher_out), extra=summary | {"role": "teacher"})
            save_seanet(student.cpu(), str(out_path), extra=summary | {"role": "student", "teacher": str(teacher_out)})

            with atomic_write(out_path.with_suffix(".json"), "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2)
                fh.write("\n")
            for p in (Path(str(teacher_out) + ".ckpt"), Path(str(out_path) + ".ckpt")):
                p.unlink(missing_ok=True)
        return summary
    finally:
        torch.set_num_threads(threads)
