"""The shared training loop: DDP (gloo, 2 CPU processes) equals one process on the full batch,
resumable checkpoints continue the same run, a short run lowers the loss."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from toolchain.models.hearing.hlsim import HLSim, HLSimConfig
from toolchain.train.loop import DistEnv, init_distributed, run_loop, shard, wrap
from toolchain.train.losses import SimLossConfig
from toolchain.train.recipe import TrainConfig
from toolchain.train.simulator import simulator_loss_fn

CFG = HLSimConfig(channels=8, blocks=1)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(4, 3200, generator=g) * 0.05, "msbg": torch.randn(4, 3200, generator=g) * 0.02,
            "audiogram": torch.rand(4, 8, generator=g) * 80}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    env = init_distributed("cpu")
    torch.manual_seed(0)
    net = wrap(HLSim(CFG), env)
    loss, _ = simulator_loss_fn(SimLossConfig())(net, _batch(), shard(4, env))
    loss.backward()
    if rank == 0:
        torch.save({n.removeprefix("module."): p.grad for n, p in net.named_parameters()}, out)
    # Both ranks leave together: a rank tearing gloo down while the other is still saving
    # aborted it ("terminate called without an active exception") on a loaded machine.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_ddp_two_processes_give_the_full_batch_gradients(tmp_path):
    torch.manual_seed(0)
    single = HLSim(CFG)
    loss, _ = simulator_loss_fn(SimLossConfig())(single, _batch(), shard(4, DistEnv()))
    loss.backward()
    ref = _grads(single)
    out = tmp_path / "ddp_grads.pt"
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="spawn")
    ddp = torch.load(out, weights_only=True)
    assert set(ddp) == set(ref)
    for name, g in ref.items():
        assert torch.allclose(ddp[name], g, rtol=1e-4, atol=1e-7), name


def test_shard_splits_evenly_or_refuses():
    assert shard(8, DistEnv(rank=1, world_size=2)) == slice(4, 8)
    with pytest.raises(ValueError, match="does not split"):
        shard(5, DistEnv(rank=0, world_size=2))


def _tiny_run(tmp_path: Path, steps: int, *, resume: bool = False, total: int = 6):
    torch.manual_seed(0)
    model = HLSim(CFG)
    cfg = TrainConfig(seed=3, steps=total, batch_size=4, lr=3e-3, warmup_steps=0, threads=1)

    def batch_fn(rng: np.random.Generator, step: int):
        return _batch(int(rng.integers(0, 4)))

    res = run_loop(model, batch_fn, simulator_loss_fn(SimLossConfig()), cfg, name="t", steps=steps,
                   checkpoint=tmp_path / "run.ckpt", checkpoint_every=2, resume=resume, progress=False)
    return model, res


def test_resume_continues_the_same_run(tmp_path):
    full, res_full = _tiny_run(tmp_path / "a", 6)
    (tmp_path / "b").mkdir()
    _tiny_run(tmp_path / "b", 3, total=6)          # interrupted after 3 of 6 steps (its final checkpoint: step 3)
    resumed, res = _tiny_run(tmp_path / "b", 6, resume=True)
    assert res.resumed_from == 3
    assert res.history == pytest.approx(res_full.history, rel=1e-5)
    for (n, p), q in zip(full.named_parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_a_short_run_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    model = HLSim(CFG)
    batch = _batch(0)
    batch["msbg"] = 0.3 * batch["x"]  # a learnable target: a flat attenuation, same phase
    cfg = TrainConfig(seed=0, steps=30, batch_size=4, lr=5e-3, warmup_steps=0, threads=1)
    res = run_loop(model, lambda rng, step: batch, simulator_loss_fn(SimLossConfig()), cfg, name="t", progress=False)
    assert np.mean(res.history[-5:]) < 0.7 * np.mean(res.history[:3]), res.history


def test_device_is_cuda_when_present():
    from toolchain.train.loop import pick_device

    assert pick_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == "cpu"


@pytest.mark.timeout(600)
def test_torchrun_two_processes_train_a_simulator_end_to_end(tmp_path):
    """``torchrun --nproc_per_node 2 -m toolchain train`` (gloo on CPU) trains and saves once."""
    import subprocess
    import sys

    from tests.conftest import REPO

    recipe = tmp_path / "tiny.toml"
    recipe.write_text('''kind = "simulator"
[hlsim]
channels = 8
blocks = 1
[data]
examples = 4
clip_seconds = 0.5
workers = 1
[eval]
examples = 3
clip_seconds = 0.5
workers = 1
haspi_examples = 3
[crop]
seconds = 0.25
[train]
steps = 2
batch_size = 4
warmup_steps = 0
threads = 1
''')
    out = tmp_path / "sim.pt"
    env = dict(os.environ, HX_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).with_name("torchrun")
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "toolchain", "train",
                        "--recipe", str(recipe), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=540, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["extra"]["world_size"] == 2 and ckpt["extra"]["steps"] == 2
    assert ckpt["extra"]["fidelity"]["examples"] == 3
    assert not out.with_name(out.name + ".ckpt").exists()


class _NanGradOnStep(torch.autograd.Function):
    """Identity forward; the backward returns NaN on the steps listed in ``bad``."""

    @staticmethod
    def forward(ctx, x, poison):
        ctx.poison = bool(poison)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return (torch.full_like(g, float("nan")) if ctx.poison else g), None


def _regression(bad_steps: set[int], steps: int):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    x = torch.randn(16, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def batch_fn(rng, step):
        return {"step": step}

    def loss_fn(model, batch, rows):
        out = _NanGradOnStep.apply(model(x), batch["step"] in bad_steps)
        loss = torch.mean((out - y) ** 2)
        return loss, {"total": float(loss.detach())}

    cfg = TrainConfig(steps=steps, batch_size=1, lr=0.2, warmup_steps=0, grad_clip=1.0, threads=1)
    return net, run_loop(net, batch_fn, loss_fn, cfg, name="t", progress=False, max_consecutive_skips=3)


def test_a_non_finite_gradient_skips_the_step_instead_of_poisoning_the_weights():
    net, res = _regression({5, 9}, 80)
    assert res.skipped_steps == [5, 9]
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert res.history[-1] < res.history[0] * 0.2  # training went on and converged
    # A run that keeps producing NaN gradients is a diverged run: it stops with a clear error.
    with pytest.raises(FloatingPointError, match="in a row"):
        _regression(set(range(3, 40)), 40)
