"""Long fuzzing run of the C kernel: both libFuzzer harnesses (csrc/fuzz/) under ASan + UBSan.

    python benchmarks/fuzz_ckernel.py [--minutes 5] [--bundle DIR] [--archs ref x86] [--out benchmarks/results]

Builds the harnesses with ``make -C csrc fuzz`` for each kernel set the host runs (ref, and x86 on
an AVX2 CPU), seeds them from the real blob of the exported default compensator
(``out/bundle-rpi4/kernel/model.hxb``, exported first when missing; see
toolchain/verify/fuzz.py for the seeds), and runs each harness for ``--minutes`` with a fixed
seed. Any crash or sanitizer report is a finding: its input is copied to
``csrc/fuzz/regressions/<harness>/`` (tests/csrc/test_fuzz.py replays that directory on every
run) and the exit status is 1. Writes ``fuzz_ckernel.json`` (executions, exec/s, coverage,
findings per run) and ``fuzz_ckernel.png`` (coverage features against executions).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, ensure_bundle  # noqa: E402

from runtime.atomic import atomic_write  # noqa: E402
from toolchain.verify import fuzz as F  # noqa: E402


def host_archs() -> list[str]:
    from runtime.backends.ckernel_build import _cpu_has_avx2

    return ["ref"] + (["x86"] if platform.machine() in ("x86_64", "AMD64") and _cpu_has_avx2() else [])


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for r in results:
        pts = r["progress"]
        if pts:
            ax.plot([p[0] for p in pts], [p[2] for p in pts], drawstyle="steps-post",
                    label=f"{r['harness']} ({r['arch']}): {r['executions']:,} runs, cov {r['coverage']}, "
                          f"{len(r['crashes'])} crashes, {len(r['sanitizer_reports'])} sanitizer reports")
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlabel("executions")
    ax.set_ylabel("coverage features (libFuzzer ft)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="per harness and kernel set (default 5)")
    ap.add_argument("--bundle", type=Path, default=REPO / "out" / "bundle-rpi4")
    ap.add_argument("--archs", nargs="+", default=None, help="kernel sets (default: those the host runs)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    bundle = ensure_bundle(args.bundle, "fuzz")
    blob_path = bundle / "kernel" / "model.hxb"
    blob = blob_path.read_bytes()
    args.out.mkdir(parents=True, exist_ok=True)
    archs = args.archs or host_archs()
    results = []
    with tempfile.TemporaryDirectory(prefix="hx-fuzz-") as tmp:
        root = Path(tmp)
        seeds = F.seed_corpus(blob, root / "seeds")
        for arch in archs:
            print(f"fuzz: building the {arch} harnesses ...", flush=True)
            exes = F.build(root / f"build-{arch}", arch)
            for h in F.HARNESSES:
                print(f"fuzz: {h} ({arch}) for {args.minutes:g} min ...", flush=True)
                r = F.run(exes[h], seeds[h], harness=h, arch=arch, blob=blob_path if h == "hx_fuzz_process" else None,
                          seed=args.seed, max_seconds=60.0 * args.minutes, artifact_dir=root / "artifacts")
                d = {k: v for k, v in r.__dict__.items() if k != "log_tail"}
                d["clean"] = r.clean
                saved = []
                for c in r.crashes:  # a finding becomes a regression input, named by content
                    data = Path(c).read_bytes()
                    dest = F.REGRESSIONS / h / f"{Path(c).name.split('-')[-2]}-{hashlib.sha256(data).hexdigest()[:16]}"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(c, dest)
                    saved.append(str(dest.relative_to(REPO)))
                d["regression_inputs_saved"] = saved
                if not r.clean:
                    d["log_tail"] = r.log_tail
                results.append(d)
                print(f"fuzz: {h} ({arch}): {r.executions:,} executions ({r.exec_per_sec}/s), coverage {r.coverage}, "
                      f"features {r.features}, corpus {r.corpus_units}; crashes {len(r.crashes)}, sanitizer reports "
                      f"{len(r.sanitizer_reports)}{' -> ' + ', '.join(saved) if saved else ''}", flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.lower().startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    clang = subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    report = {
        "blob": str(blob_path), "blob_bytes": len(blob), "blob_sha256": hashlib.sha256(blob).hexdigest(),
        "minutes_per_run": args.minutes, "seed": args.seed, "sanitizers": list(F.FUZZ_SANITIZE),
        "clang": clang[0] if clang else "", "host": {"cpu": cpu, "cpus": os.cpu_count()},
        "total_executions": sum(r["executions"] for r in results),
        "findings": sum(len(r["crashes"]) + len(r["sanitizer_reports"]) for r in results),
        "runs": results,
    }
    js, png = args.out / "fuzz_ckernel.json", args.out / "fuzz_ckernel.png"
    with atomic_write(js, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(report, indent=1) + "\n")
    plot(results, png, f"C kernel fuzzing (ASan + UBSan), {args.minutes:g} min per run, seeds from {blob_path.name} "
                       f"({len(blob):,} bytes); {cpu}")
    print(f"fuzz: {report['total_executions']:,} executions in all, {report['findings']} findings; wrote {js} and {png}")
    return 0 if report["findings"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
