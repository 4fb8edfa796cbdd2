"""Soak benchmark: at least an hour of audio through each backend, faster than real time.

    python benchmarks/soak.py [--bundle DIR] [--hours 1.0] [--backends litert ckernel onnx] [--out benchmarks/results]

Each backend runs in its own process (``python -m runtime.harness.soak``, see runtime/harness/soak.py), so the
resident-set figures are the soak's alone: the offline reference first (a fresh engine fed in
4096-sample pieces, as ``toolchain run`` does), then the live pass (``Engine.stream`` with host
buffers of 16..2048 samples), with VmRSS read after every 10 s segment. Targets (issue 8): RSS
growth <= 1 MB per hour after warm-up, live output identical to offline, counters consistent,
no sample above the limit. Writes ``soak.json`` and ``soak.png`` (RSS against audio time per
backend) under ``--out``; exit status 1 when a target is missed. The processes run one after
the other under ``nice`` so the timing of other work on the machine is disturbed as little as
possible (the speed figures are then conservative).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, ensure_bundle  # noqa: E402

from runtime.atomic import atomic_write  # noqa: E402
from runtime.bundle import load_bundle  # noqa: E402


def run_one(bundle: Path, backend: str, seconds: float, warmup: float, nice: int) -> dict:
    """One backend's soak in a child process; returns its JSON result."""
    with tempfile.TemporaryDirectory() as d:
        js = Path(d) / "r.json"
        cmd = [sys.executable, "-m", "runtime.harness.soak", str(bundle), "--backend", backend, "--seconds", str(seconds),
               "--warmup-seconds", str(warmup), "--json", str(js)]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=REPO, env=env, preexec_fn=(lambda: os.nice(nice)) if nice else None)
        if not js.is_file():
            sys.exit(f"soak: {backend} produced no result (exit {r.returncode})")
        res = json.loads(js.read_text())
        res["process_wall_s"] = time.monotonic() - t0
        res["exit_status"] = r.returncode
        return res


def plot(results: dict[str, dict], path: Path, title: str) -> None:
    """RSS (MB, relative to the post-warm-up baseline) against audio time, one line per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for name, r in results.items():
        pts = r["rss_kb"]
        t = [p[0] / 60.0 for p in pts]
        after = [p[1] for p in pts if p[0] >= r["warmup_s"]]
        base = max(after[:3]) if after else pts[0][1]
        ax.plot(t, [(p[1] - base) / 1024.0 for p in pts],
                label=f"{name}: growth {r['rss_growth_kb']} kB, {r['speed_x_realtime']:.1f}x real time, "
                      f"identical to offline: {r['identical_to_offline']}")
        ax.axvline(r["warmup_s"] / 60.0, color="0.8", lw=0.8)
    ax.axhline(1.0, color="r", ls="--", lw=1, label="target: +1 MB per hour")
    ax.axhline(0.0, color="0.5", lw=0.5)
    ax.set_xlabel("audio streamed (minutes)")
    ax.set_ylabel("VmRSS - baseline after warm-up (MB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=REPO / "out" / "bundle-rpi4")
    ap.add_argument("--hours", type=float, default=1.0, help="audio per backend (default 1 hour)")
    ap.add_argument("--warmup-minutes", type=float, default=5.0, help="RSS growth is measured after this much audio")
    ap.add_argument("--backends", nargs="+", default=["litert", "ckernel", "onnx"])
    ap.add_argument("--nice", type=int, default=10, help="niceness of the soak processes (default 10)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    bundle = ensure_bundle(args.bundle, "soak")
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = 3600.0 * args.hours
    results = {}
    for b in args.backends:
        print(f"soak: {b}: {args.hours:g} h of audio ...", flush=True)
        results[b] = run_one(bundle, b, seconds, 60.0 * args.warmup_minutes, args.nice)
    m = load_bundle(bundle).manifest
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.lower().startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    report = {
        "bundle": str(bundle), "model": m.model, "target": m.target, "block": m.block, "sample_rate": m.sample_rate,
        "host": {"machine": platform.machine(), "cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"rss_growth_kb_per_hour_max": 1024, "identical_to_offline": True, "counters_consistent": True,
                    "peak_at_or_below_limit": True},
        "backends": results,
        "met": all(r["ok"] for r in results.values()),
    }
    js, png = args.out / "soak.json", args.out / "soak.png"
    with atomic_write(js, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(report, indent=1) + "\n")
    plot(results, png, f"{m.model} ({m.target}), block {m.block} @ {m.sample_rate} Hz: {args.hours:g} h of audio per "
                       f"backend, {cpu}")
    for name, r in results.items():
        print(f"soak: {name}: {r['audio_hours']:.2f} h, RSS growth {r['rss_growth_kb']} kB (slope "
              f"{r['rss_slope_kb_per_hour']:.0f} kB/h), {r['speed_x_realtime']:.1f}x real time, identical to offline "
              f"{r['identical_to_offline']}, peak {r['peak_output']:.4f} <= {r['output_limit']:.4f}, counters "
              f"{'consistent' if not r['counter_problems'] else r['counter_problems']}")
    print(f"soak: wrote {js} and {png}")
    if not report["met"]:
        print("soak: TARGET MISSED: " + ", ".join(n for n, r in results.items() if not r["ok"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
