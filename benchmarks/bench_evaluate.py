"""Hearing benefit of the shipped default (issue 16), through ``toolchain evaluate``.

    python benchmarks/bench_evaluate.py [--bundle DIR ...] [--student CKPT] [--grid default|full|tiny]
                                        [--presets A,B,..] [--jobs N] [--name evaluation_default]

HASPI v2 and HASQI v2 of unprocessed, NAL-R, NAL-R + WDRC and the device (each audiogram's
bundle: a ``--bundle`` fitted to it, e.g. ``toolchain export --target rpi`` for moderate-sloping,
or one exported from ``--student``, default the shipped checkpoint; ``--export-dir`` keeps them
for the next run) on the held-out split. Writes ``benchmarks/results/<name>.{json,md,png}`` and
exits 1 when an issue-16 target is missed (the outputs are written either way). The default grid
(6 standard audiograms, 55/65/75 dB SPL, quiet / babble 0 and 5 dB / speech-shaped 5 dB / reverb,
one 2 s example per cell) takes about 20 minutes of one core plus ~1 minute per exported bundle.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from toolchain import cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, action="append", default=[])
    ap.add_argument("--student", type=Path, default=None, help="checkpoint to export for audiograms without a bundle")
    ap.add_argument("--grid", default="default")
    ap.add_argument("--presets", default=None, help="override the grid's audiograms (comma separated)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--export-dir", type=Path, default=None)
    ap.add_argument("--name", default="evaluation_default")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results")
    args = ap.parse_args(argv)
    # Paths the user gave are relative to where they ran this; the defaults to the repository.
    command = ["evaluate", "--grid", args.grid, "--jobs", str(args.jobs), "--seed", "0", "--name", args.name,
               "--out", str(args.out.resolve() if args.out else Path("benchmarks") / "results"), "--fail-on-target"]
    for b in args.bundle:
        command += ["--bundle", str(b.resolve())]
    if args.student is not None:
        command += ["--student", str(args.student.resolve())]
    if args.presets:
        command += ["--presets", args.presets]
    if args.export_dir is not None:
        command += ["--export-dir", str(args.export_dir.resolve())]
    os.chdir(REPO)
    print("bench: toolchain " + " ".join(command), flush=True)
    return cli.main(command)


if __name__ == "__main__":
    sys.exit(main())
