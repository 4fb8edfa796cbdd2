"""HASPI v2 evaluation of the shipped default compensator (issue 6), through ``toolchain evaluate``.

    python benchmarks/bench_evaluate.py [--student NAME] [--examples 12] [--teacher CKPT] [--bundle DIR ...]

Student: ``toolchain/assets/<NAME>.pt`` (``--student``, default ``seanet_default``; the distilled
one is ``seanet_distil``). Teacher: ``--teacher``, else the student's own teacher
``toolchain/assets/<NAME>_teacher.pt`` when one is shipped, else the student itself (then the
"student within 0.03 of teacher" target is trivially met, and the report says so). Presets
moderate-sloping, mild-flat and severe-sloping; quiet and babble at 5 dB SNR; int8 bundles are
exported per preset unless given. Writes ``benchmarks/results/evaluation_<NAME minus seanet_>.{json,md,png}``;
exit status 1 when a target on moderate-sloping is missed (the outputs are written either way).
About 20 minutes on 2 busy CPU cores (HASPI v2 is ~1.7 s per second of audio there).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from toolchain import cli  # noqa: E402

ASSETS = Path("toolchain") / "assets"  # relative: the run happens in REPO, so the report names repo paths


def default_teacher(student: str) -> Path:
    """The student's own shipped teacher (``<student>_teacher.pt``) when there is one, else the student."""
    teacher = ASSETS / f"{student}_teacher.pt"
    return teacher if (REPO / teacher).is_file() else ASSETS / f"{student}.pt"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="seanet_default", help="checkpoint name in toolchain/assets (no .pt)")
    ap.add_argument("--examples", type=int, default=12)
    ap.add_argument("--teacher", type=Path, default=None)
    ap.add_argument("--bundle", type=Path, action="append", default=[])
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results")
    args = ap.parse_args(argv)
    # Paths the user gave are relative to where they ran this; the defaults to the repository.
    if not (REPO / ASSETS / f"{args.student}.pt").is_file():
        ap.error(f"--student {args.student!r}: no toolchain/assets/{args.student}.pt")
    teacher = args.teacher.resolve() if args.teacher else default_teacher(args.student)
    bundles = [b.resolve() for b in args.bundle]
    out = args.out.resolve() if args.out else Path("benchmarks") / "results"
    os.chdir(REPO)
    name = "evaluation_" + args.student.removeprefix("seanet_")
    command = ["evaluate", "--student", str(ASSETS / f"{args.student}.pt"), "--teacher", str(teacher),
               "--presets", "moderate-sloping,mild-flat,severe-sloping", "--snr", "quiet,5", "--noise", "babble",
               "--examples", str(args.examples), "--seconds", "2", "--level", "65", "--seed", "0",
               "--out", str(out), "--name", name, "--fail-on-target"]
    for b in bundles:
        command += ["--bundle", str(b)]
    print("bench: toolchain " + " ".join(command), flush=True)
    return cli.main(command)


if __name__ == "__main__":
    sys.exit(main())
