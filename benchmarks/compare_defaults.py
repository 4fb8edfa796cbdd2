"""Old vs new default compensator on the same held-out clips: does the new one compensate less?

    python benchmarks/compare_defaults.py --old OLD.pt --new NEW.pt [--recipe default] [--examples 16]

Both checkpoints are scored by the training evaluation (toolchain/train/compensator.py
``evaluate``: the filterbank hearing-loss model's perceptual error of the impaired ear against
normal hearing, in dB, lower is better) on one held-out test set made from ``--recipe``'s data
settings, per audiogram preset. The prescription alone (the new model's NAL-R FIR with no learnt
correction) is scored beside them when the new model has one. Writes
``benchmarks/results/compare_defaults.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matplotlib  # noqa: E402
from common import REPO  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from runtime.atomic import atomic_write  # noqa: E402
from toolchain.audio.data import SyntheticCorpus  # noqa: E402
from toolchain.models.compensators.seanet import SEANet, load_seanet, seanet_from_checkpoint  # noqa: E402
from toolchain.models.hearing.hl_filterbank import FilterbankHearingLoss  # noqa: E402
from toolchain.train.compensator import corpus_config, evaluate, generate_pool  # noqa: E402
from toolchain.train.recipe import load_recipe  # noqa: E402


def prescription_only(model: SEANet) -> SEANet:
    """The same model with its learnt correction removed (output conv at zero): NAL-R alone."""
    clone = seanet_from_checkpoint({"config": model.config.to_dict(), "state_dict": model.state_dict()})
    with torch.no_grad():
        clone.out_conv.conv.weight.zero_()
        clone.out_conv.conv.bias.zero_()
    return clone.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="the default being replaced (.pt)")
    ap.add_argument("--new", type=Path, default=REPO / "toolchain" / "assets" / "seanet_default.pt")
    ap.add_argument("--recipe", default="default", help="whose [data], [hl], [loss] and [eval] settings score both")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    recipe = load_recipe(args.recipe)
    t0 = time.perf_counter()
    corpus = SyntheticCorpus("test", corpus_config(recipe, recipe.eval.clip_seconds), seed=recipe.eval.corpus_seed,
                             size=args.examples, workers=1)
    noisy, clean = generate_pool(corpus)
    hl = FilterbankHearingLoss(recipe.hl)
    systems = {"old default": load_seanet(str(args.old)), "new default": load_seanet(str(args.new))}
    if systems["new default"].config.prescription != "none":
        systems["NAL-R FIR alone"] = prescription_only(systems["new default"])
    rows = {name: evaluate(m, hl, recipe, noisy, clean, recipe.eval.presets) for name, m in systems.items()}
    presets = list(recipe.eval.presets)
    table = {name: {r["audiogram"]: {"perceptual_db": r["compensated_perceptual_db"], "output_peak": r["output_peak"]}
                    for r in rs} for name, rs in rows.items()}
    table["unprocessed"] = {r["audiogram"]: {"perceptual_db": r["unprocessed_perceptual_db"]} for r in rows["old default"]}
    report = {"old": str(args.old), "new": str(args.new), "recipe": args.recipe, "examples": args.examples,
              "seconds": round(time.perf_counter() - t0, 1), "perceptual_error_db": table}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "compare_defaults.json", "w") as fh:
        json.dump(report, fh, indent=1)
    fig, ax = plt.subplots(figsize=(7, 4))
    names = ["unprocessed", *systems]
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        ax.bar([i + k * w for i in range(len(presets))], [table[name][p]["perceptual_db"] for p in presets], w, label=name)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(presets))], presets)
    ax.set_ylabel("perceptual error vs normal hearing (dB, lower is better)")
    ax.set_title("old vs new default compensator, same held-out clips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(args.out / "compare_defaults.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    print("audiogram".ljust(18) + "".join(n.rjust(18) for n in names))
    for p in presets:
        print(p.ljust(18) + "".join(f"{table[n][p]['perceptual_db']:18.2f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
