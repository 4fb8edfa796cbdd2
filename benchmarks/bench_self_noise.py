"""Self-noise and dynamic range of the device graphs, int8 beside 16x8 (round 2 · 1 of 6).

    python benchmarks/bench_self_noise.py [--bundle DIR] [--clips 4]

Uses ``out/bundle-rpi4`` (exporting the shipped default there first if missing) and measures both
integer graphs of the bundle the way the export does (toolchain/export/self_noise.py): device vs
fp32 SNR on held-out speech at 45..85 dB SPL separately, the output for digital silence and the
equivalent input noise (ANSI S3.22's way), and the input clip level. Writes
``benchmarks/results/self_noise.{json,png}``; exit 1 when the 16x8 graph misses a target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib  # noqa: E402
from common import REPO, ensure_bundle  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from runtime.atomic import atomic_write  # noqa: E402
from runtime.backends.litert import LiteRTBackend  # noqa: E402
from runtime.bundle import load_bundle  # noqa: E402
from toolchain.export.pipeline import measure_self_noise  # noqa: E402

TARGETS = {"snr_db_45": 35.0, "snr_db_55_85": 45.0, "ein_db_spl": 20.0, "silence_db_spl": 25.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=REPO / "out" / "bundle-rpi4")
    ap.add_argument("--clips", type=int, default=4, help="held-out speech clips per level (2 s each)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    b = load_bundle(ensure_bundle(args.bundle, "self-noise"))
    m = b.manifest
    fp32 = LiteRTBackend(b.graph_file("fp32"))
    results = {}
    t0 = time.perf_counter()
    for flavour in ("int8", "int16x8"):
        if flavour not in m.graphs:
            continue
        dev = LiteRTBackend(b.graph_file(flavour))
        results[flavour] = measure_self_noise(dev, fp32, m.sample_rate, m.block, m.output_limit, clips=args.clips)
    seconds = time.perf_counter() - t0
    d16 = results.get("int16x8", {})
    levels = sorted(float(k.split("_at_")[1].removesuffix("db_spl")) for k in d16 if k.startswith("device_vs_fp32_snr_db_at_"))
    verdicts = {}
    if d16:
        snr = {lv: d16[f"device_vs_fp32_snr_db_at_{lv:g}db_spl"] for lv in levels}
        verdicts = {
            "snr_45_db_spl": {"value": snr.get(45.0), "target": TARGETS["snr_db_45"], "ok": snr.get(45.0, 0) >= TARGETS["snr_db_45"]},
            "snr_55_85_db_spl_min": {"value": min(v for lv, v in snr.items() if lv >= 55), "target": TARGETS["snr_db_55_85"],
                                     "ok": min(v for lv, v in snr.items() if lv >= 55) >= TARGETS["snr_db_55_85"]},
            "equivalent_input_noise_db_spl": {"value": d16["device_equivalent_input_noise_db_spl"], "target": TARGETS["ein_db_spl"],
                                              "ok": d16["device_equivalent_input_noise_db_spl"] <= TARGETS["ein_db_spl"]},
            "silence_output_db_spl": {"value": d16["device_silence_output_db_spl"], "target": TARGETS["silence_db_spl"],
                                      "ok": d16["device_silence_output_db_spl"] <= TARGETS["silence_db_spl"]},
        }
    report = {"bundle": str(b.path), "model": m.model, "audiogram": (m.audiogram or {}).get("name"),
              "default_graph": m.default_graph, "clips_per_level": args.clips, "seconds": round(seconds, 1),
              "graphs": results, "targets_16x8": verdicts}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "self_noise.json", "w") as fh:
        json.dump(report, fh, indent=1)

    fig, ax = plt.subplots(figsize=(7, 4))
    for flavour, d in results.items():
        ys = [d[f"device_vs_fp32_snr_db_at_{lv:g}db_spl"] for lv in levels]
        ax.plot(levels, ys, "o-", label=f"{flavour}: silence {d['device_silence_output_db_spl']:.1f} dB SPL, "
                                        f"EIN {d['device_equivalent_input_noise_db_spl']:.1f} dB SPL")
    ax.plot([45, 55, 85], [35, 45, 45], "k--", drawstyle="steps-post", label="16x8 target")
    ax.set_xlabel("speech level (dB SPL)")
    ax.set_ylabel("device vs fp32 SNR (dB)")
    ax.set_title(f"{m.model}, {(m.audiogram or {}).get('name')}: precision by level")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(args.out / "self_noise.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    for flavour, d in results.items():
        print(flavour, json.dumps({k.removeprefix("device_"): v for k, v in d.items()}))
    missed = [k for k, v in verdicts.items() if not v["ok"]]
    if missed:
        print("self-noise: 16x8 misses " + ", ".join(f"{k}: {verdicts[k]['value']} vs {verdicts[k]['target']}" for k in missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())



