"""Fleet fitting speed: per-patient export seconds before and after the per-process cache, and
patients per minute for 1 and 2 Ray workers (benchmarks/results/fleet.{json,png}).

  python benchmarks/bench_fleet.py [--patients 6] [--singles 2] [--baseline-rev acda8f3]

* before: ``toolchain export`` as it was at ``--baseline-rev`` (the last commit before the
  speed-up; checked out with ``git archive`` into a temporary folder), one process per patient,
  as a clinic would run it one patient at a time;
* after, single: ``toolchain export`` of this tree, one process per patient (cold caches);
* fleet: ``toolchain fleet`` of this tree over ``--patients`` random audiograms with 1 and with 2
  workers; per-patient seconds are each task's wall time in its worker, patients per minute the
  whole command's (Ray start-up and the workers' first-patient costs included).

Wall and CPU seconds are both recorded: on a shared machine the wall time moves with the load
(the load average is recorded beside each phase), the CPU seconds much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO

from runtime.atomic import atomic_write
from toolchain.audio.audiogram import Audiogram

RESULTS = REPO / "benchmarks" / "results"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _toolchain(root: Path, *args: str, timeout: float = 3600) -> tuple[float, float]:
    """Run ``python -m toolchain ARGS`` from the tree at ``root``; (wall s, CPU s of the process tree)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    c0, t0 = _children_cpu(), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "toolchain", *args], cwd=root, env=env, capture_output=True, text=True,
                       timeout=timeout)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if r.returncode not in (0,):
        sys.exit(f"bench_fleet: toolchain {' '.join(args[:2])} failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
    return wall, cpu


def _singles(root: Path, audiograms: list[Audiogram], work: Path, tag: str) -> dict:
    runs = []
    for k, ag in enumerate(audiograms):
        f = work / f"{tag}-{k}.json"
        f.write_text(json.dumps({"name": ag.name, "thresholds_db_hl": list(ag.thresholds_db_hl)}))
        out = work / f"{tag}-bundle-{k}"
        load = _load()
        wall, cpu = _toolchain(root, "export", "--target", "rpi", "--audiogram", str(f), "--out", str(out), "--quiet")
        m = json.loads((out / "manifest.json").read_text())
        runs.append({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "export_seconds": m["metrics"]["export_seconds"],
                     "load_avg_1min": load})
        print(f"bench_fleet: {tag} export {k + 1}/{len(audiograms)}: {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"(in-process {m['metrics']['export_seconds']} s), load {load}", flush=True)
    return {"runs": runs, "wall_s_mean": round(statistics.mean(r["wall_s"] for r in runs), 2),
            "cpu_s_mean": round(statistics.mean(r["cpu_s"] for r in runs), 2),
            "export_seconds_mean": round(statistics.mean(r["export_seconds"] for r in runs), 2)}


def _fleet(csv: Path, workers: int, work: Path) -> dict:
    out = work / f"fleet-{workers}w"
    load = _load()
    wall, _ = _toolchain(REPO, "fleet", str(csv), "--target", "rpi", "--out", str(out), "--workers", str(workers),
                           "--quiet")
    doc = json.loads((out / "fleet.json").read_text())
    recs = [r for r in doc["patients"] if r["status"] == "ok"]
    by_pid: dict[int, list[dict]] = {}
    for r in sorted(recs, key=lambda r: r["started"]):
        by_pid.setdefault(r["pid"], []).append(r)
    first = [rs[0]["seconds"] for rs in by_pid.values()]
    warm = [r["seconds"] for rs in by_pid.values() for r in rs[1:]]
    res = {"workers": workers, "patients": len(recs), "wall_s": round(wall, 2),
           "patients_per_minute": round(60.0 * len(recs) / wall, 3),
           "worker_processes": len(by_pid), "first_patient_seconds": [round(s, 2) for s in first],
           "warm_patient_seconds": [round(s, 2) for s in warm],
           "warm_patient_seconds_median": round(statistics.median(warm), 2) if warm else None,
           "cpu_s_per_patient": round(statistics.mean(r["cpu_seconds"] for r in recs), 2),
           "warm_cpu_s_per_patient": round(statistics.mean(r["cpu_seconds"] for rs in by_pid.values() for r in rs[1:]), 2)
           if warm else None, "load_avg_1min": load}
    print(f"bench_fleet: fleet {workers} worker(s): {len(recs)} patients in {wall:.1f} s = "
          f"{res['patients_per_minute']} patients/min; warm per-patient median {res['warm_patient_seconds_median']} s",
          flush=True)
    return res


def _plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels, walls, cpus = [], [], []
    if doc.get("before"):
        labels.append(f"before\n(export @{doc['baseline_rev']})")
        walls.append(doc["before"]["wall_s_mean"])
        cpus.append(doc["before"]["cpu_s_mean"])
    labels.append("after\n(single export)")
    walls.append(doc["after_single"]["wall_s_mean"])
    cpus.append(doc["after_single"]["cpu_s_mean"])
    f1 = doc["fleet"]["1"]
    labels.append("after\n(fleet worker, warm)")
    walls.append(f1["warm_patient_seconds_median"])
    cpus.append(f1["warm_cpu_s_per_patient"])
    x = range(len(labels))
    a.bar([i - 0.2 for i in x], walls, 0.4, label="wall s")
    a.bar([i + 0.2 for i in x], cpus, 0.4, label="CPU s")
    a.set_xticks(list(x), labels)
    a.set_ylabel("seconds per patient")
    a.set_title("per-patient export")
    a.legend()
    ws = sorted(doc["fleet"], key=int)
    ppm = [doc["fleet"][w]["patients_per_minute"] for w in ws]
    b.bar(ws, ppm, color="tab:green")
    for w, v in zip(ws, ppm):
        b.text(w, v, f"{v:.2f}", ha="center", va="bottom")
    b.set_xlabel("Ray workers")
    b.set_ylabel("patients per minute")
    b.set_title(f"fleet of {doc['patients']} patients (ratio {doc['speedup_2_vs_1_workers']:.2f}x)")
    fig.suptitle(f"toolchain fleet on this host ({os.cpu_count()} CPUs, shared)")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=6, help="patients in each fleet run (default 6)")
    ap.add_argument("--singles", type=int, default=2, help="single exports timed before and after (default 2)")
    ap.add_argument("--baseline-rev", default="acda8f3", help="git revision of 'before' (default: the commit the "
                    "speed-up started from)")
    ap.add_argument("--skip-baseline", action="store_true", help="do not time the baseline revision again: keep the "
                    "'before' figures of the previous results file (same --baseline-rev)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for fleet.json / fleet.png")
    args = ap.parse_args()
    if args.patients < 2 or args.singles < 1:
        ap.error("--patients must be >= 2 and --singles >= 1")
    audiograms = [Audiogram.random(np.random.default_rng(seed)) for seed in range(args.patients)]
    with tempfile.TemporaryDirectory(prefix="hx-bench-fleet-") as tmp:
        work = Path(tmp)
        csv = work / "patients.csv"
        csv.write_text("patient_id,250,500,1000,2000,3000,4000,6000,8000\n" + "".join(
            f"p{k:03d}," + ",".join(f"{v:g}" for v in ag.thresholds_db_hl) + "\n" for k, ag in enumerate(audiograms)))
        doc: dict = {"host_cpus": os.cpu_count(), "patients": args.patients, "baseline_rev": args.baseline_rev,
                     "target": "rpi"}
        previous = args.out / "fleet.json"
        if args.skip_baseline and previous.is_file():
            old = json.loads(previous.read_text())
            if old.get("baseline_rev") == args.baseline_rev and old.get("before"):
                doc["before"] = dict(old["before"], from_previous_run=True)
        if not args.skip_baseline:
            base = work / "baseline"
            base.mkdir()
            arch = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline_rev], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(base)], input=arch.stdout, check=True)
            doc["before"] = _singles(base, audiograms[: args.singles], work, "before")
        doc["after_single"] = _singles(REPO, audiograms[: args.singles], work, "after")
        doc["fleet"] = {str(w): _fleet(csv, w, work) for w in (1, 2)}
    f1, f2 = doc["fleet"]["1"], doc["fleet"]["2"]
    doc["speedup_2_vs_1_workers"] = round(f2["patients_per_minute"] / f1["patients_per_minute"], 3)
    if doc.get("before"):
        doc["per_patient_speedup_wall"] = round(doc["before"]["wall_s_mean"] / f1["warm_patient_seconds_median"], 2)
        doc["per_patient_speedup_cpu"] = round(doc["before"]["cpu_s_mean"] / f1["warm_cpu_s_per_patient"], 2)
        doc["single_export_speedup_wall"] = round(doc["before"]["wall_s_mean"] / doc["after_single"]["wall_s_mean"], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "fleet.json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    _plot(doc, args.out / "fleet.png")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("before", "after_single", "fleet")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
