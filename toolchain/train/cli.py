"""``toolchain train --recipe NAME``: one command for every trainer, chosen by the recipe's ``kind``.

* ``kind = "simulator"`` (``hlsim``): the Neuro-MSBG-style simulator against pyclarity MSBG.
* ``kind = "distil"`` (``distil``): teacher through the frozen simulator, then the student.
* ``kind = "dal"`` (``dal``): the SEANet compensator through CARFAC's NAP and SAI (seed 004).
* no ``kind`` / ``"compensator"`` (``default``): the SEANet compensator through the filterbank
  hearing-loss model (the shipped default's recipe).

The one training entry point: :mod:`toolchain.cli` registers these arguments and
:func:`train_main` as its ``train`` command; multi-GPU / multi-process runs launch that same
command, ``torchrun --nproc_per_node N -m toolchain train --recipe ...``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_OUT = {"simulator": ASSETS / "hlsim_default.pt", "distil": ASSETS / "seanet_distil.pt",
               "compensator": ASSETS / "seanet_default.pt", "dal": ASSETS / "seanet_dal.pt"}


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    # lazy: toolchain.train.recipe pulls torch (seconds to import); only this path needs it
    from toolchain.train.recipe import available_recipes

    p.add_argument("--recipe", default="default",
                   help=f"recipe name ({', '.join(available_recipes())}) or a TOML path (default: default)")
    p.add_argument("--out", type=Path, help="checkpoint to write (default: the recipe's `out`, else its kind's file in toolchain/assets/)")
    p.add_argument("--steps", type=int, help="stop after this many steps (the schedule still follows the recipe)")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (default: CUDA when present)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt if a previous run left one")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def train_main(args: argparse.Namespace) -> int:
    # lazy: toolchain.train.recipe pulls torch (seconds to import); only this path needs it
    from toolchain.train.recipe import RecipeError, recipe_kind, recipe_output

    if args.steps is not None and args.steps < 1:
        raise RecipeError(f"--steps {args.steps}: expected a positive number of steps")
    kind = recipe_kind(args.recipe)
    out = Path(args.out) if args.out else recipe_output(args.recipe, DEFAULT_OUT[kind])
    if out.exists() and out.is_dir():
        raise RecipeError(f"--out {out} is a directory; expected a checkpoint file path")
    summary: dict[str, Any]
    if kind == "simulator":
        # lazy: toolchain.train.simulator pulls torch (seconds to import); only this path needs it
        from toolchain.train.simulator import load_simulator_recipe, train_simulator

        summary = train_simulator(load_simulator_recipe(args.recipe), out, device=args.device, max_steps=args.steps,
                                  resume=args.resume, progress=not args.quiet)
    elif kind == "distil":
        # lazy: toolchain.train.distil pulls torch (seconds to import); only this path needs it
        from toolchain.train.distil import load_distil_recipe, train_distilled

        summary = train_distilled(load_distil_recipe(args.recipe), out, device=args.device, max_steps=args.steps,
                                  resume=args.resume, progress=not args.quiet)
    elif kind == "dal":
        # lazy: toolchain.train.dal pulls torch (seconds to import); only this path needs it
        from toolchain.train.dal import load_dal_recipe, train_dal

        summary = train_dal(load_dal_recipe(args.recipe), out, device=args.device, max_steps=args.steps,
                            resume=args.resume, progress=not args.quiet)
    else:
        # lazy: toolchain.train.compensator pulls torch (seconds to import); only this path needs it
        from toolchain.train.compensator import train_compensator
        from toolchain.train.recipe import load_recipe

        summary = train_compensator(load_recipe(args.recipe), out, progress=not args.quiet, device=args.device,
                                    max_steps=args.steps).summary()
    brief = {k: v for k, v in summary.items() if k not in ("recipe", "loss_history", "haspi_msbg", "haspi_sim")}
    if "fidelity" in brief:
        brief["fidelity"] = {k: v for k, v in brief["fidelity"].items() if k not in ("haspi_msbg", "haspi_sim")}
    print(json.dumps(brief, indent=2, default=str))
    print(f"wrote {out}")
    return 0
