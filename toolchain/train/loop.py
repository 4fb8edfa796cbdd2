"""The one training loop: seeded, resumable, CUDA when present, DDP under ``torchrun``.

Every trainer (simulator, teacher, student distillation, QAT) supplies a model, a batch
function and a loss function; this module owns the rest:

* **Device**: CUDA when present, else CPU (``device=`` overrides).
* **Distributed**: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the environment)
  the process group is initialised (NCCL on CUDA, gloo on CPU), the model is wrapped in
  ``DistributedDataParallel`` and each rank computes the loss on its own slice of every global
  batch (:func:`shard`), so N processes see the same examples as one process with the whole
  batch and, the loss being a mean, the averaged gradients are the same (tested with gloo).
* **Determinism**: one seed drives torch and the numpy batch generator; the generator's state
  is saved in checkpoints, so a resumed run continues the same batch sequence.
* **Checkpoints**: every ``checkpoint_every`` steps (and at the end) model + optimiser + RNG
  state are written atomically to ``<out>.ckpt``; ``resume=True`` continues from it.
* **Progress**: a rich progress bar with the loss (EMA) and ETA on rank 0.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from runtime.atomic import atomic_write
from toolchain.train.recipe import TrainConfig


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"`` when a GPU is present, else ``"cpu"``."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def init_distributed(device: str | None = None) -> DistEnv:
    """Join the ``torchrun`` process group when launched by it; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return DistEnv(0, 1, dev)
    rank = int(os.environ["RANK"])
    if dev.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        dev = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.startswith("cuda") else "gloo")
    return DistEnv(rank, world, dev)


def shard(batch_size: int, env: DistEnv) -> slice:
    """This rank's rows of a global batch (the global batch must split evenly)."""
    if batch_size % env.world_size:
        raise ValueError(f"batch size {batch_size} does not split over {env.world_size} processes")
    per = batch_size // env.world_size
    return slice(env.rank * per, (env.rank + 1) * per)


def wrap(model: nn.Module, env: DistEnv) -> nn.Module:
    """``model`` on its device, in DDP when distributed."""
    model = model.to(env.device)
    if env.distributed:
        ids = [torch.device(env.device).index] if env.device.startswith("cuda") else None
        model = DistributedDataParallel(model, device_ids=ids)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def progress_bar() -> Any:
    # lazy: rich is needed only for the progress display
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), transient=False)


BatchFn = Callable[[np.random.Generator, int], Any]        # (rng, step) -> global batch
LossFn = Callable[[nn.Module, Any, slice], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class LoopResult:
    steps: int
    history: list[float] = field(default_factory=list)
    train_time_s: float = 0.0
    resumed_from: int = 0
    skipped_steps: list[int] = field(default_factory=list)   # steps whose gradient was not finite

    @property
    def final_loss(self) -> float:
        tail = self.history[-20:]
        return float(np.mean(tail)) if tail else math.nan


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int,
                     rng: np.random.Generator, history: list[float], skipped: list[int]) -> None:

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"step": step, "model": unwrap(model).state_dict(), "optimizer": opt.state_dict(),
               "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "history": history,
               "skipped": skipped}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def run_loop(model: nn.Module, batch_fn: BatchFn, loss_fn: LossFn, cfg: TrainConfig, *, name: str,
             env: DistEnv | None = None, steps: int | None = None, checkpoint: Path | None = None,
             checkpoint_every: int = 200, resume: bool = False, progress: bool = True,
             params: list[nn.Parameter] | None = None, max_consecutive_skips: int = 10) -> LoopResult:
    """Train ``model`` in place for ``steps`` (default ``cfg.steps``) AdamW steps.

    ``batch_fn(rng, step)`` makes the *global* batch (the same on every rank: the rng is seeded
    identically); ``loss_fn(model, batch, rows)`` computes the mean loss on ``batch[rows]``.

    A step whose gradient is not finite (an inf/NaN from one unlucky batch, e.g. an ``atan2`` at
    a bin of exactly zero) is skipped rather than applied: one NaN update would poison every weight.
    Skipped steps are recorded in the result and logged; more than ``max_consecutive_skips`` in a
    row means the run itself diverged and raises :class:`FloatingPointError`. Under DDP the
    gradient is all-reduced first, so every rank takes the same decision.
    """
    env = env or DistEnv(device=pick_device(None))
    steps = cfg.steps if steps is None else int(steps)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = wrap(model, env)
    trainable = params if params is not None else [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr_at(0), weight_decay=cfg.weight_decay)
    history: list[float] = []
    skipped: list[int] = []
    consecutive = 0
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=env.device, weights_only=False)
        unwrap(net).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        skipped = list(state.get("skipped", []))
        start = int(state["step"])
    rows = shard(cfg.batch_size, env)
    log_every = max(1, steps // 20)
    bar = progress_bar() if (progress and env.is_main) else None
    t0 = time.perf_counter()
    try:
        task = None
        if bar is not None:
            bar.start()
            task = bar.add_task(name, total=steps, completed=start, info="loss -")
        ema = history[-1] if history else math.nan
        net.train()
        for step in range(start, steps):
            batch = batch_fn(rng, step)
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(step)
            loss, parts = loss_fn(net, batch, rows)
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"{name}: loss is {float(loss.detach())} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            if not math.isfinite(float(norm)):
                skipped.append(step)
                consecutive += 1
                msg = f"{name}: step {step + 1} skipped, gradient norm {float(norm)}"
                if consecutive > max_consecutive_skips:
                    raise FloatingPointError(f"{msg}; {consecutive} steps in a row, the run diverged")
                if bar is not None:
                    bar.console.print(msg)
                opt.zero_grad(set_to_none=True)
            else:
                consecutive = 0
                opt.step()
            value = parts.get("total", float(loss.detach()))
            history.append(value)
            ema = value if math.isnan(ema) else 0.95 * ema + 0.05 * value
            if task is not None:
                bar.update(task, advance=1, info=f"loss {ema:.4f}")
                if not bar.console.is_terminal and ((step + 1) % log_every == 0 or step + 1 == steps):
                    # A log file gets plain lines (a progress bar only redraws on a terminal).
                    done = step + 1 - start
                    eta = (time.perf_counter() - t0) / done * (steps - step - 1)
                    bar.console.print(f"{name}: step {step + 1}/{steps} loss {ema:.4f} ETA {eta:.0f} s")
            if checkpoint is not None and env.is_main and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                _save_checkpoint(Path(checkpoint), net, opt, step + 1, rng, history, skipped)
        if checkpoint is not None and env.is_main:
            _save_checkpoint(Path(checkpoint), net, opt, steps, rng, history, skipped)
    finally:
        if bar is not None:
            bar.stop()
    net.eval()
    return LoopResult(steps=steps, history=history, train_time_s=time.perf_counter() - t0, resumed_from=start,
                      skipped_steps=skipped)


def set_threads(n: int) -> int:
    """Set torch's CPU threads; returns the previous value (restore it after training)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    return before


def crop_batch(arrays: list[np.ndarray], idx: np.ndarray, length: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random ``length``-sample window of rows ``idx`` of every array (aligned pairs)."""
    n = arrays[0].shape[-1]
    starts = rng.integers(0, max(n - length, 0) + 1, size=len(idx))
    return [np.stack([a[i, s:s + length] for i, s in zip(idx, starts)]) for a in arrays]


__all__ = ["DistEnv", "LoopResult", "crop_batch", "init_distributed", "pick_device", "progress_bar", "run_loop",
           "set_threads", "shard", "unwrap", "wrap"]
