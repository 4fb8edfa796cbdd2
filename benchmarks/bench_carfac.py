"""Speed of the torch CARFAC against google/carfac's numpy reference on the CPU (issue 18).

    python benchmarks/bench_carfac.py --carfac-repo PATH [--seconds 0.5] [--fs 16000] [--repeats 3]
                                      [--out benchmarks/results]

``PATH`` is a checkout of github.com/google/carfac (its ``python/src/carfac/np/carfac.py`` is
imported from there at run time; none of its code is in this repository). Both run the same clip
of ``toolchain/assets/demo_speech.wav`` (from 0.5 s, at ``--fs``), one thread each, the design
outside the timing:

* ``numpy_s``: the reference's ``run_segment`` (one ear, its defaults, float64);
* ``torch_f64_s`` / ``torch_f32_s``: :class:`toolchain.models.hearing.carfac.Carfac` on one clip;
* ``torch_f32_batch8_s``: eight clips in one call, per clip (how training and verify run it);
* ``torch_f32_train_s``: forward + backward of one clip (the cost of one DAL training example).

The systems run interleaved, one of each per round, ``--repeats`` rounds; each figure is the
minimum over rounds (the least-disturbed run on a shared machine; the medians are in the JSON too),
in seconds per second of audio; the ratio is numpy over torch (above 1: torch is faster). The torch NAP is also compared with the reference's (the
CAR filters re-designed in float64, as the test fixtures were made), as a relative L2 error.
Writes ``carfac_speed.json`` and ``carfac_speed.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--carfac-repo", type=Path, required=True, help="a checkout of github.com/google/carfac")
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--fs", type=float, default=16000.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results")
    args = p.parse_args(argv)
    src = args.carfac_repo / "python" / "src"
    if not (src / "carfac" / "np" / "carfac.py").is_file():
        print(f"bench_carfac: error: {args.carfac_repo}: no python/src/carfac/np/carfac.py; expected a google/carfac "
              "checkout", file=sys.stderr)
        return 2
    if not 0.05 <= args.seconds <= 30 or args.repeats < 1:
        print(f"bench_carfac: error: --seconds {args.seconds} / --repeats {args.repeats}: expected 0.05..30 s and "
              ">= 1 repeat", file=sys.stderr)
        return 2
    sys.path.insert(0, str(src))
    import carfac.np.carfac as cf  # noqa: E402  (the user's checkout, on sys.path just above)
    import torch

    from toolchain.audio.io import read_wav, resample
    from toolchain.models.hearing.carfac import Carfac

    torch.set_num_threads(1)
    fs = float(args.fs)
    speech, rate = read_wav(REPO / "toolchain/assets/demo_speech.wav")
    speech = resample(np.asarray(speech, np.float64), int(rate), int(fs)) if int(rate) != int(fs) else speech
    x = np.asarray(speech, np.float64)[int(0.5 * fs):int(0.5 * fs) + int(args.seconds * fs)]
    audio_s = x.size / fs

    cfp = cf.design_carfac(fs=fs)
    cfp.ears[0].car_coeffs = cf.design_filters(cfp.car_params, fs, cfp.pole_freqs.astype(np.float64))
    state = cf.carfac_init(cfp)
    ref_nap = cf.run_segment(state, x)[0][:, :, 0]
    model = Carfac(fs)
    xt = torch.from_numpy(x)
    ours = model(xt).T.numpy()
    rel = float(np.linalg.norm(ours - ref_nap) / np.linalg.norm(ref_nap))
    x32 = xt.float()
    x8 = x32.repeat(8, 1)

    def train_once() -> None:
        xg = x32.clone().requires_grad_(True)
        model(xg).square().mean().backward()

    def nograd(fn):
        def run() -> None:
            with torch.no_grad():
                fn()
        return run

    runs = {"numpy_s": (lambda: cf.run_segment(cf.carfac_init(cfp), x), 1),
            "torch_f64_s": (nograd(lambda: model(xt)), 1), "torch_f32_s": (nograd(lambda: model(x32)), 1),
            "torch_f32_batch8_s": (nograd(lambda: model(x8)), 8), "torch_f32_train_s": (train_once, 1)}
    # Interleaved (every system once per round) so all see the same machine load; the minimum over
    # rounds is the figure (the least-disturbed run), the median is kept beside it.
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for key, (fn, clips) in runs.items():
            times[key].append(_seconds(fn) / audio_s / clips)
    best = {k: float(np.min(v)) for k, v in times.items()}
    numpy_s, f64, f32, b8, train = (best[k] for k in runs)
    result = {
        "what": "seconds of CPU compute per second of audio, one thread, minimum over interleaved rounds; "
                "ratio = numpy / torch",
        "fs": fs, "audio_seconds": round(audio_s, 3), "channels": model.n_ch, "repeats": args.repeats,
        "median_of_rounds": {k: float(np.median(v)) for k, v in times.items()},
        "numpy_s": numpy_s, "torch_f64_s": f64, "torch_f32_s": f32, "torch_f32_batch8_s": b8, "torch_f32_train_s": train,
        "ratio_f64": numpy_s / f64, "ratio_f32": numpy_s / f32, "ratio_f32_batch8": numpy_s / b8,
        "nap_rel_error_vs_numpy_f64": rel,
        "reference": {"repo": "github.com/google/carfac", "file": "python/src/carfac/np/carfac.py",
                      "call": "run_segment(carfac_init(design_carfac(fs)), x), CAR filters re-designed in float64"},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    # timings on a shared machine move with its load: record it beside them
                    "load_average_1min": round(os.getloadavg()[0], 2)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "carfac_speed.json").write_text(json.dumps(result, indent=2) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["numpy ref", "torch f64", "torch f32", "torch f32\nbatch 8 (per clip)", "torch f32\nfwd+bwd"]
    vals = [numpy_s, f64, f32, b8, train]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(names, vals, color=["#888888", "#4477aa", "#4477aa", "#228833", "#ee6677"])
    ax.axhline(1.0, color="k", ls="--", lw=1, label="real time")
    ax.set_ylabel("s per s of audio (1 thread)")
    ax.set_title(f"CARFAC at {fs:g} Hz, {model.n_ch} channels: torch f32 {numpy_s / f32:.1f}x numpy")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "carfac_speed.png", dpi=100)
    print(json.dumps({k: v for k, v in result.items() if k not in ("reference", "machine")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
