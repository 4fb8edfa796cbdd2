"""Speed of the neural simulator against pyclarity MSBG on the CPU (seed 003: 46×; target ≥ 40×).

    python benchmarks/bench_hlsim.py [--checkpoint toolchain/assets/hlsim_default.pt]
                                     [--seconds 1.0] [--repeats 5] [--out benchmarks/results]

Both simulate the same speech clip (synthetic corpus, held-out split, 65 dB SPL) for the same
audiograms, one clip at a time, on ONE CPU thread each (torch threads = 1; MSBG is numpy/scipy):

* ``msbg_s``: pyclarity's ``Ear.process`` at its native 44.1 kHz (the clip resampled beforehand,
  outside the timing; our wrapper's delay probe also outside), per audiogram;
* ``hlsim_s``: ``HLSim.simulate`` on the 16 kHz clip (inference mode), per audiogram, as the mean
  of ``--burst`` calls back to back: how a simulator runs when it is used, over a data set in
  training or evaluation (the speed-up the target is about);
* ``hlsim_cold_s``: the first call of each burst alone, straight after 0.15 s of MSBG has
  evicted the simulator's weights and activations from the caches: ~1.5 ms slower per call
  on the development VM, reported beside the steady-state figure;
* ``hlsim_batched_s``: the same clips as one batch of all audiograms, per clip (the parallel
  inference seed 003 highlights).

Timings are interleaved (MSBG, then the simulator, per audiogram and repeat) so both see the same
machine load, and the ratio is of medians. Writes ``hlsim_speed.json`` and ``hlsim_speed.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRESETS = ("normal", "mild-flat", "moderate-sloping", "severe-sloping", "presbycusis")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=REPO / "toolchain/assets/hlsim_default.pt")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--burst", type=int, default=10, help="simulator calls back to back per timing (default 10)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results")
    args = p.parse_args(argv)

    import torch

    from toolchain.audio.audiogram import Audiogram
    from toolchain.audio.data import CorpusConfig, SyntheticCorpus
    from toolchain.audio.io import resample
    from toolchain.audio.levels import DEFAULT_CALIBRATION, set_level
    from toolchain.audio.msbg_ref import MSBG_SAMPLE_RATE, _ear
    from toolchain.models.hearing.hlsim import load_hlsim

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    clip = SyntheticCorpus("test", CorpusConfig(seconds=args.seconds, noise_probability=0.0), seed=0, size=1)[0].clean
    x16 = set_level(clip, 65.0).astype(np.float32)
    x44 = resample(x16, 16000, MSBG_SAMPLE_RATE).astype(np.float64)
    sim = load_hlsim(str(args.checkpoint))
    audiograms = [Audiogram.preset(n) for n in PRESETS]
    ears = [_ear(a, DEFAULT_CALIBRATION) for a in audiograms]   # filter design outside the timing
    xt = torch.as_tensor(x16)[None]
    at = [torch.as_tensor(a.as_array(), dtype=torch.float32)[None] for a in audiograms]
    rows = {n: {"msbg_s": [], "hlsim_s": [], "hlsim_cold_s": []} for n in PRESETS}
    batched: list[float] = []
    with torch.inference_mode():
        sim.simulate(xt, at[0])  # warm-up
        for _ in range(args.repeats):
            for name, ear, a in zip(PRESETS, ears, at):
                t = time.perf_counter()
                ear.process(x44)
                rows[name]["msbg_s"].append(time.perf_counter() - t)
                t = time.perf_counter()
                sim.simulate(xt, a)
                t1 = time.perf_counter()
                rows[name]["hlsim_cold_s"].append(t1 - t)
                for _ in range(args.burst):
                    sim.simulate(xt, a)
                rows[name]["hlsim_s"].append((time.perf_counter() - t1) / args.burst)
            xb = xt.expand(len(at), -1).contiguous()
            ab = torch.cat(at)
            t = time.perf_counter()
            sim.simulate(xb, ab)
            batched.append((time.perf_counter() - t) / len(at))
    msbg = np.array([v for r in rows.values() for v in r["msbg_s"]])
    hl = np.array([v for r in rows.values() for v in r["hlsim_s"]])
    cold = np.array([v for r in rows.values() for v in r["hlsim_cold_s"]])
    result = {
        "what": "one clip of speech at 65 dB SPL through pyclarity MSBG (44.1 kHz) and the neural simulator (16 kHz), 1 CPU thread each",
        "seconds_of_audio": args.seconds, "repeats": args.repeats, "burst": args.burst, "presets": list(PRESETS),
        "checkpoint": str(args.checkpoint), "machine": platform.processor() or platform.machine(),
        "torch": str(torch.__version__),
        "msbg_median_s": float(np.median(msbg)), "hlsim_median_s": float(np.median(hl)),
        "hlsim_cold_median_s": float(np.median(cold)),
        "hlsim_batched_median_s_per_clip": float(np.median(batched)),
        "speedup_median": float(np.median(msbg) / np.median(hl)),
        "speedup_cold_median": float(np.median(msbg) / np.median(cold)),
        "speedup_batched_median": float(np.median(msbg) / np.median(batched)),
        "per_preset": {n: {"msbg_median_s": float(np.median(r["msbg_s"])), "hlsim_median_s": float(np.median(r["hlsim_s"])),
                           "speedup": float(np.median(r["msbg_s"]) / np.median(r["hlsim_s"]))} for n, r in rows.items()},
        "seed_003_speedup": 46.0, "target_speedup": 40.0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hlsim_speed.json").write_text(json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    idx = np.arange(len(PRESETS))
    ax.bar(idx - 0.2, [result["per_preset"][n]["msbg_median_s"] * 1e3 for n in PRESETS], 0.4, label="pyclarity MSBG")
    ax.bar(idx + 0.2, [result["per_preset"][n]["hlsim_median_s"] * 1e3 for n in PRESETS], 0.4, label="neural simulator")
    ax.set_yscale("log")
    ax.set_xticks(idx, PRESETS, rotation=15)
    ax.set_ylabel(f"ms per {args.seconds:g} s of audio (1 thread)")
    ax.set_title(f"Simulator speed-up: {result['speedup_median']:.0f}x (first call {result['speedup_cold_median']:.0f}x, "
                 f"batched {result['speedup_batched_median']:.0f}x); "
                 f"seed 46x, target 40x")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "hlsim_speed.png", dpi=120)
    print(json.dumps({k: v for k, v in result.items() if k != "per_preset"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
