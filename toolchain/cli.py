"""``toolchain``: the command line of the hearing-aid compensator toolchain.

A user's mistake (unknown target, bad audiogram, missing file, tampered bundle, unwritable
output) ends in ONE line on stderr and exit code 2; nothing half-written is left behind
(bundles and wavs are written to a temporary name and renamed). A traceback means a bug.
"""

from __future__ import annotations

import argparse
import functools
import os
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import numpy as np
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from runtime.atomic import describe_mode, name_max
from runtime.backends import BACKENDS
from runtime.backends.base import BackendError
from runtime.boards import ALIASES, BoardError, list_boards, load_board
from runtime.bundle import BundleError, load_bundle
from runtime.cli import (
    add_bench_parser,
    add_run_parser,
    add_stream_parser,
    add_trust_arguments,
    add_verbose_argument,
    board_from_args,
    one_line,
    run_file,
    trust_from_args,
    user_errors,
)
from runtime.cli import cmd_bench as runtime_bench
from runtime.cli import cmd_stream as runtime_stream
from runtime.native_log import set_verbose
from runtime.wavio import read_wav, write_wav_atomic
from toolchain.audio.audiogram import Audiogram, AudiogramError
from toolchain.audio.io import AudioFileError, resample
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.export.signing import generate_keypair, load_signing_key, sign_bundle
from toolchain.fitting.baselines import LABELS, fit_process
from toolchain.train.cli import add_train_arguments, train_main

USER_ERROR = 2

EPILOG = """\
Typical use:
  toolchain targets                                  list the boards you can export for
  toolchain export --target rpi --preset moderate-sloping --out out/bundle-rpi4
  toolchain fleet patients.csv --target rpi --out out/fleet --workers 2   one bundle per patient, on Ray
  toolchain keygen --out keys/                       Ed25519 key pair for signed bundles
  toolchain export --target rpi --sign keys/hx-signing.key --out out/bundle-rpi4
  toolchain sign out/bundle-rpi4 --key keys/hx-signing.key   sign a bundle exported earlier
  toolchain inspect out/bundle-rpi4                  validate a bundle, show its manifest
  toolchain run out/bundle-rpi4 --input in.wav --output out.wav
  toolchain stream out/bundle-rpi4 --device jack     live duplex audio (Ctrl-C stops)
  toolchain bench out/bundle-rpi4 --loopback jack --json bench.json --plot bench.png
  toolchain evaluate --bundle out/bundle-rpi4 --out out/evaluation   HASPI/HASQI vs NAL-R (+ WDRC), quiet/noise/reverb
  toolchain fit --audiogram me.json --method wdrc --input in.wav --output out.wav   a classic fitting
"""


class UserError(Exception):
    """A mistake in what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse prints usage + message; we want one line
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _user_errors(command: str | None = None) -> tuple[type[BaseException], ...]:
    """Exception types that describe a user's mistake (imported lazily: torch/TF are slow).

    ``ExportError`` lives beside torch; it is only looked up for the commands that use torch, so
    ``run``/``stream``/``bench`` on a runtime backend start in a second, not in five.
    """

    errs: list[type[BaseException]] = [UserError, BoardError, BundleError, AudiogramError, AudioFileError, BackendError,
                                       *user_errors()]
    if command == "evaluate":
        # lazy: toolchain.verify.evaluate pulls onnx and torch (seconds to import); only this path needs it
        from toolchain.verify.evaluate import EvaluateError

        errs.append(EvaluateError)
    if command == "verify":
        # lazy: toolchain.verify.report pulls torch (seconds to import); only this path needs it
        from toolchain.verify.report import VerifyError

        errs.append(VerifyError)
    if command == "train":
        # lazy: toolchain.models.hearing.hlsim pulls torch (seconds to import); only this path needs it
        from toolchain.models.hearing.hlsim import HLSimConfigError
        from toolchain.train.recipe import RecipeError

        errs += [RecipeError, HLSimConfigError]
    if command in (None, "export") or "torch" in sys.modules:
        try:
            # lazy: toolchain.export.pipeline pulls onnx and torch (seconds to import); only this path needs it
            from toolchain.export.pipeline import ExportError

            errs.append(ExportError)
        except ImportError:  # torch missing on a runtime-only install: export cannot be the command anyway
            pass
    return tuple(errs)


def _console():
    return Console(stderr=False, highlight=False)


# --------------------------------------------------------------------------- targets
def _fit_widths(columns: Sequence[Sequence[str]], available: int) -> list[int]:
    """Column widths within ``available`` characters for ``columns`` (header first, then cells):
    each column at least its longest word (so text wraps between words, never inside one), the
    space left shared out towards each column's longest cell (headers may wrap). Rich's own
    fitting splits words when the table is wider than the console."""
    widths = [max(len(w) for t in col for w in t.split() or [""]) for col in columns]
    need = [max(w, *(len(t) for t in col[1:])) for w, col in zip(widths, columns)]
    spare = available - sum(widths)
    while spare > 0 and any(w < n for w, n in zip(widths, need)):
        for i in sorted(range(len(widths)), key=lambda k: need[k] - widths[k], reverse=True):
            if spare > 0 and widths[i] < need[i]:
                widths[i] += 1
                spare -= 1
    return widths


def cmd_targets(args: argparse.Namespace) -> int:
    """The boards as a table, then each board's compiler line.

    Nothing is cut: cells wrap (``overflow="fold"`` breaks a word only when it alone is wider
    than its column), and the compiler flags, the widest field, are listed under the table and
    wrapped at the console width, so ``toolchain targets | cat`` (80 columns) shows every value.
    """

    boards = list_boards()
    header = ("name", "cpu", "rate", "block", "latency budget", "compute budget", "output limit", "backend")
    rows = [(b.name, f"{b.cpu.cores}x {b.cpu.core}", f"{b.audio.sample_rate} Hz",
             f"{b.audio.block} ({b.block_period_ms:.2f} ms)", f"{b.budget.latency_ms:g} ms",
             f"{b.budget.compute_fraction:.0%} of a block", f"{b.audio.output_limit:g}", b.runtime.backend)
            for b in boards]
    con = _console()
    columns = [[col, *(r[i] for r in rows)] for i, col in enumerate(header)]
    # No edges and collapsed padding: two characters between columns, none outside.
    widths = _fit_widths(columns, max(len(header), con.width - 2 * (len(header) - 1)))
    table = Table(title="Targets (boards/*.toml)", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for col, w in zip(header, widths):
        table.add_column(col, overflow="fold", width=w)
    for r in rows:
        table.add_row(*r)
    con.print(table)
    width = max(40, con.width)
    con.print("compilers (triple and flags):")
    for b in boards:
        line = f"{b.name}: {b.compiler.triple} {' '.join(b.compiler.cflags)}".rstrip()
        con.print(textwrap.fill(line, width=width, initial_indent="  ", subsequent_indent="      ",
                                break_long_words=False, break_on_hyphens=False), markup=False, highlight=False)
    con.print(textwrap.fill("aliases: " + ", ".join(f"{k} → {v}" for k, v in sorted(ALIASES.items())), width=width),
              markup=False, highlight=False)
    return 0


# ---------------------------------------------------------------------------- export
def _audiogram(args: argparse.Namespace):
    if args.audiogram:
        return Audiogram.from_file(args.audiogram, notice=lambda line: print(line, file=sys.stderr))
    return Audiogram.preset(args.preset)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Fail before minutes of work if the bundle could not be written (or must not be replaced)."""

    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UserError(f"{out}: cannot write the bundle there ({e.strerror or e})") from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else describe_mode(st.st_mode)
        raise UserError(f"{out}: is {what}; a bundle is a directory and is never written over anything else")
    if st is not None and not overwrite:
        raise UserError(f"{out}: already exists (pass --overwrite to replace it)")
    if len(os.fsencode(out.name)) > 255:
        raise UserError(f"{out}: directory name is {len(os.fsencode(out.name))} bytes long; the file system allows "
                        f"at most {name_max(Path('.'))}")
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot write the bundle there ({probe} is not a writable directory)")


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def cmd_export(args: argparse.Namespace) -> int:
    board = load_board(args.target)  # a name, an alias or a board TOML path, as --board takes
    if args.out is not None and not args.out.strip():
        raise UserError("--out is empty; name the bundle directory (or leave --out out for out/bundle-<target>)")
    if args.block is not None and not 1 <= args.block <= 4096:
        raise UserError(f"--block must be 1..4096 samples, got {args.block}")
    audiogram = _audiogram(args)
    out = Path(args.out if args.out is not None else f"out/bundle-{board.name}")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint}: model checkpoint not found")
    _check_out_dir(out, args.overwrite)
    signing_key = None
    if args.sign:  # before minutes of work: a wrong key path must fail now

        signing_key = load_signing_key(args.sign)

    # lazy: toolchain.export.pipeline pulls onnx and torch (seconds to import); only this path needs it
    from toolchain.export.pipeline import DEFAULT_CHECKPOINT, ExportOptions, export_bundle

    opts = ExportOptions(board=board, audiogram=audiogram, out_dir=out, signing_key=signing_key,
                         checkpoint=Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT,
                         block=args.block, overwrite=args.overwrite, qat_steps=args.qat_steps, quant=args.quant)
    con = _console()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=con, transient=False, disable=args.quiet) as prog:
        task = prog.add_task("export", total=1.0)
        report = export_bundle(opts, progress=lambda stage, frac: prog.update(task, description=stage, completed=frac))
    _print_summary(con, report.bundle)
    if signing_key is not None:
        con.print(f"signed: manifest.sig by key id {signing_key.key_id} ({args.sign}); verify with "
                  f"--trusted-key <its .pub>")
    return 0


# ----------------------------------------------------------------------------- fleet
def cmd_fleet(args: argparse.Namespace) -> int:
    """Many patients on Ray, each through export's own function (toolchain/fleet.py)."""

    board = load_board(args.target)
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint}: model checkpoint not found")
    # lazy: toolchain.fleet pulls onnx and Ray and torch (seconds to import); only this path needs it
    from toolchain.fleet import FleetError, fleet_main  # imports Ray: only this command needs it

    try:
        return fleet_main(args, board)
    except FleetError as e:
        raise UserError(str(e)) from None


# ---------------------------------------------------------------------------- keygen
def cmd_keygen(args: argparse.Namespace) -> int:
    """Write an Ed25519 key pair for signing bundles."""

    kp = generate_keypair(args.out, name=args.name, overwrite=args.overwrite)
    print(f"wrote {kp.private_path} (private key, mode 0600: keep it off the devices) and {kp.public_path} "
          f"(public key: give it to the runtime with --trusted-key or a board's runtime.trusted_keys); key id {kp.key_id}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign an existing unsigned bundle in place (manifest.sig)."""

    kid = sign_bundle(args.bundle, load_signing_key(args.key))
    print(f"signed {args.bundle}: manifest.sig by key id {kid}")
    return 0


def _print_summary(con: Any, bundle: Any) -> None:
    m = bundle.manifest
    mt = m.metrics
    t = Table(title=f"Bundle {bundle.path}  ({m.model} → {m.target})", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    rows = [
        ("parameters", f"{mt.get('parameters', 0):,}"),
        ("int8 model", f"{mt.get('int8_bytes', 0):,} bytes"),
        ("compute", f"{mt.get('macs_per_second', 0) / 1e6:.1f} MMAC per second of audio"),
        ("algorithmic latency", f"{m.algorithmic_latency_samples} samples = {m.algorithmic_latency_ms:.2f} ms (impulse: {mt.get('algorithmic_latency_measured_samples')})"),
        ("int8 vs fp32 SNR", f"{mt.get('int8_vs_fp32_snr_db', float('nan')):.1f} dB (held-out speech)"),
        ("worst int8 layer", f"{mt['drift_worst_layer']}: {mt['drift_worst_layer_snr_db']} dB vs fp32; largest drop "
                             f"{mt['drift_largest_drop_layer']} ({mt['drift_largest_drop_db']} dB)"
         if "drift_worst_layer" in mt else "not measured"),
        ("audiogram", f"{m.audiogram['name']}: {', '.join(f'{v:g}' for v in m.audiogram['thresholds_db_hl'])} dB HL" if m.audiogram else "none"),
        ("block", f"{m.block} samples at {m.sample_rate} Hz"),
        ("output limit", f"{m.output_limit:g} full scale"),
    ]
    if "qat_steps" in mt:
        rows.append(("QAT", f"{mt['qat_steps']} steps in {mt['qat_seconds']:.0f} s: int8 SNR {mt['int8_vs_fp32_snr_db_ptq']:.1f} dB "
                            f"(PTQ) → {mt['int8_vs_fp32_snr_db_qat']:.1f} dB (QAT scales), "
                            f"{mt['int8_vs_fp32_snr_db_qat_recalibrated']:.1f} dB (recalibrated); shipped: {mt['int8_graph']}"))
    if "int16x8_vs_fp32_snr_db" in mt:
        rows.append(("16x8 vs fp32 SNR", f"{mt['int16x8_vs_fp32_snr_db']:.1f} dB (model_16x8.tflite)"))
    rows.insert(1, ("device graph", f"{m.default_graph} ({m.graphs[m.default_graph].file})"))
    levels = sorted((float(k.split("_at_")[1].removesuffix("db_spl")), v) for k, v in mt.items()
                    if k.startswith("device_vs_fp32_snr_db_at_"))
    if levels:
        rows.append(("device vs fp32 by level", ", ".join(f"{lv:g} dB SPL: {v:.1f} dB" for lv, v in levels)))
    if "device_equivalent_input_noise_db_spl" in mt:
        rows.append(("self-noise", f"silence in → {mt['device_silence_output_db_spl']:.1f} dB SPL out (DC "
                                   f"{mt['device_silence_dc']:+.5f}, block-rate tones +{mt['device_silence_block_tone_excess_db']:.1f} dB); "
                                   f"equivalent input noise {mt['device_equivalent_input_noise_db_spl']:.1f} dB SPL"))
        rows.append(("input clips at", f"{mt['device_input_clip_level_db_spl']:.1f} dB SPL (sine)"))
    if "kernel_arena_bytes" in mt:
        rows.append(("C kernel arena", f"{mt['kernel_arena_bytes']:,} bytes"))
    if "device_flash_bytes" in mt:
        rows.append(("firmware memory", f"flash {mt['device_flash_bytes']:,} of {mt.get('device_flash_budget_bytes', 0):,} "
                                        f"bytes, RAM {mt['device_ram_bytes']:,} of {mt.get('device_ram_budget_bytes', 0):,} "
                                        "bytes (kernel/model_blob.h links into csrc/firmware)"))
    if "export_seconds" in mt:
        rows.append(("export time", f"{mt['export_seconds']:.1f} s"))
    for k, v in rows:
        t.add_row(k, v)
    con.print(t)


# --------------------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace) -> int:
    b = load_bundle(args.bundle, trust=trust_from_args(args))
    m = b.manifest
    con = _console()
    top = Table(title=f"{b.path} (valid: every file present and matching its sha256)", show_header=False)
    top.add_column("field", style="bold")
    top.add_column("value")
    top.add_row("signature", f"verified: key id {b.signature.key_id} ({b.signature.key_source})" if b.signature
                else "none (unsigned bundle)")
    for k in ("format_version", "model", "target", "sample_rate", "block", "algorithmic_latency_samples",
              "output_limit", "toolchain_version", "created_utc"):
        top.add_row(k, str(getattr(m, k)))
    top.add_row("default graph", f"{m.default_graph} ({m.graphs[m.default_graph].file}): what the device runs")
    if m.audiogram:
        top.add_row("audiogram", f"{m.audiogram['name']}: " + ", ".join(
            f"{f:g} Hz {t:g}" for f, t in zip(m.audiogram["frequencies_hz"], m.audiogram["thresholds_db_hl"])))
    con.print(top)
    for flavour, g in m.graphs.items():
        t = Table(title=f"graph {flavour}: {g.file}" + ("  (default device graph)" if flavour == m.default_graph else ""))
        for col in ("tensor", "role", "shape", "dtype", "scale", "zero point"):
            t.add_column(col)
        state_in = {s.input for s in g.states}
        state_out = {s.output for s in g.states}
        for role, specs in (("input", g.inputs), ("output", g.outputs)):
            for s in specs:
                r = "state " + role if (s.name in state_in or s.name in state_out) else role
                t.add_row(s.name, r, "×".join(map(str, s.shape)), s.dtype,
                          "" if s.scale is None else f"{s.scale:.6g}", "" if s.zero_point is None else str(s.zero_point))
        con.print(t)
    mt = Table(title="metrics")
    mt.add_column("metric")
    mt.add_column("value")
    for k, v in m.metrics.items():
        mt.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    con.print(mt)
    ft = Table(title="files")
    ft.add_column("file")
    ft.add_column("bytes", justify="right")
    ft.add_column("sha256")
    for name, digest in sorted(m.files.items()):
        ft.add_row(name, f"{b.file(name).stat().st_size:,}", digest[:16] + "…")
    con.print(ft)
    return 0


# ----------------------------------------------------------------- run / stream / bench
def torch_backend(bundle: Any, threads: int, checkpoint: str | None = None) -> Any:
    """The torch reference backend; module level, so `stream`'s audio worker process can import it."""
    # lazy: toolchain.export.torch_backend pulls torch (seconds to import); only this path needs it
    from toolchain.export.torch_backend import TorchBackend

    return TorchBackend(bundle, checkpoint, num_threads=threads)


def _extra_backends(args: argparse.Namespace) -> dict[str, Callable[[Any, int], Any]]:
    """Backends only the toolchain can build: the torch reference (fp32, the exported model's source)."""

    return {"torch": functools.partial(torch_backend, checkpoint=getattr(args, "checkpoint", None))}


def cmd_run(args: argparse.Namespace) -> int:
    """The runtime's offline run (runtime.cli.run_file), with the dB SPL summary of the toolchain."""

    con = _console()

    rep = run_file(args.bundle, args.input, args.output, backend=args.backend, threads=args.threads,
                   host_block=args.host_block, extra_backends=_extra_backends(args), notice=con.print,
                   trust=trust_from_args(args), board=board_from_args(args), channel=args.channel)
    m = rep.manifest
    x, y, rate, st = rep.x, rep.y, rep.sample_rate, rep.stats
    level = DEFAULT_CALIBRATION.level_db_spl
    con.print(f"{args.input} → {args.output}: {len(x) / rate:.2f} s through {rep.backend} "
              f"({m.model}, {m.audiogram['name'] if m.audiogram else 'unfitted'})")
    con.print(f"  level {level(x):.1f} → {level(y):.1f} dB SPL, peak {np.max(np.abs(y)):.3f} (limit {rep.output_limit:g}), "
              f"real-time factor {rep.rtf:.3f}, latency {m.algorithmic_latency_ms:.2f} ms")
    con.print(f"  blocks {st['blocks']}, limiter active on {st['limiter_samples']} samples, "
              f"non-finite inputs {st['nonfinite_inputs']}, block compute p50 {st['recent_p50_us']:.0f} µs / "
              f"p99 {st['recent_p99_us']:.0f} µs, late blocks {st['late_blocks']}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """A classic fitting (NAL-R, or NAL-R + WDRC) of a wav file for an audiogram (toolchain.fitting.baselines)."""

    audiogram = _audiogram(args)
    x, rate = read_wav(args.input, channel=args.channel)
    # The compressor's bands reach 8 kHz: below 16 kHz the input is processed at 16 kHz and resampled back.
    work = max(int(rate), 16000)
    y = fit_process(args.method, resample(x, rate, work), audiogram.as_array(), work)
    y = resample(y, work, rate)[: len(x)]
    write_wav_atomic(args.output, y, int(rate), "FLOAT", inputs=[args.input])
    level = DEFAULT_CALIBRATION.level_db_spl
    _console().print(f"{args.input} → {args.output}: {LABELS[args.method]} for {audiogram.name}, {len(x) / rate:.2f} s, "
                     f"level {level(x):.1f} → {level(y):.1f} dB SPL, peak {float(np.max(np.abs(y))):.3f} (32-bit float wav)")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    return runtime_stream(args, _extra_backends(args))


def cmd_bench(args: argparse.Namespace) -> int:
    return runtime_bench(args, _extra_backends(args))


# ------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="toolchain", description="Neural hearing-aid compensators: export trained models to int8 "
                "TFLite / ONNX / C bundles for edge boards, and run them.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("targets", help="list the boards (boards/*.toml) and their budgets")
    t.set_defaults(func=cmd_targets)

    e = sub.add_parser("export", help="fit, quantise and export a compensator to a bundle for a board",
                       description="Fit the compensator to an audiogram (FiLM folded into the weights), build the "
                       "streaming step graph with explicit state, quantise it to full-integer int8 with a synthetic-speech "
                       "calibration set, and write the bundle: int8 + fp32 TFLite, ONNX, manifest.json with sha256 per file "
                       "and the measured int8-vs-fp32 SNR and algorithmic latency.")
    e.add_argument("--target", required=True, metavar="NAME|FILE",
                   help="board name or alias (see `toolchain targets`), e.g. rpi, or a board TOML path (as --board takes)")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--audiogram", metavar="FILE", help="audiogram JSON or CSV: 8 thresholds in dB HL at 250..8000 Hz, or any clinical set "
                   "spanning them (e.g. 250, 500, 1k, 2k, 4k, 8k; 125, 750, 1500 too): the missing standard "
                   "frequencies are interpolated, with a notice")
    g.add_argument("--preset", default="moderate-sloping",
                   help="named audiogram: normal, mild-flat, moderate-sloping (default), severe-sloping, ...")
    e.add_argument("--out", metavar="DIR", help="bundle directory (default out/bundle-<target>)")
    e.add_argument("--checkpoint", metavar="FILE", help="trained compensator (default: the shipped model)")
    e.add_argument("--block", type=int, help="samples per step, 1..4096 (default: the board's block)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    e.add_argument("--sign", metavar="KEY", help="sign the bundle with this Ed25519 private key (from toolchain keygen): "
                   "manifest.sig over manifest.json, written before the bundle is moved into place")
    e.add_argument("--qat-steps", type=_non_negative_int, default=0, metavar="N",
                   help="quantisation-aware fine-tuning steps before the int8 export (default 0: post-training "
                   "quantisation only; a few hundred steps take minutes on a CPU); the better int8 graph ships")
    e.add_argument("--quant", choices=("int8", "16x8"), default=None,
                   help="the device graph: 16x8 (int16 audio, state and activations, int8 weights: "
                   "model_16x8.tflite, what boards with an application CPU run) or int8 (full integer: "
                   "model_int8.tflite); default: the board's runtime.quant. The int8 graph is written either way; "
                   "16x8 needs a model without PReLU (activation = \"leaky_relu\")")
    e.add_argument("--quiet", action="store_true", help="no progress display")
    add_verbose_argument(e)
    e.set_defaults(func=cmd_export)

    fl = sub.add_parser("fleet", help="fit many patients on Ray: one bundle per audiogram, as export makes it",
                        description="Export one bundle per patient (DIR/<patient_id>/, made by the same function as "
                        "`toolchain export`) on a local Ray (default) or a Ray cluster, with DIR/fleet.json listing every "
                        "patient's status, error, seconds and manifest sha256. A rerun skips patients whose bundle "
                        "validates and whose audiogram is unchanged. Exit 0: all done; 1: some patients failed (one "
                        "line each on stderr); 2: bad usage.")
    fl.add_argument("audiograms", metavar="AUDIOGRAMS.csv", help="CSV with the header patient_id,250,500,1000,2000,"
                    "3000,4000,6000,8000 (dB HL), or JSON lines ({\"patient_id\": ..., \"thresholds_db_hl\": [8 values]})")
    fl.add_argument("--target", required=True, metavar="NAME|FILE", help="board name, alias or board TOML path")
    fl.add_argument("--out", required=True, metavar="DIR", help="folder of the patients' bundles and fleet.json")
    fl.add_argument("--address", metavar="auto|HOST:PORT", help="an existing Ray cluster (default: a local Ray "
                    "started here, on 127.0.0.1)")
    fl.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                    help="patients exported at once (local Ray: its CPUs; default: this machine's %(default)s)")
    fl.add_argument("--sign", metavar="KEY", help="sign every bundle with this Ed25519 private key")
    fl.add_argument("--checkpoint", metavar="FILE", help="trained compensator (default: the shipped model)")
    fl.add_argument("--quiet", action="store_true", help="no progress display")
    fl.set_defaults(func=cmd_fleet)

    kg = sub.add_parser("keygen", help="make an Ed25519 key pair for signed bundles",
                        description="Write DIR/NAME.key (PEM PKCS#8 private key, mode 0600) and DIR/NAME.pub (PEM public "
                        "key), each atomically. Sign with `toolchain export --sign DIR/NAME.key`; devices trust the .pub "
                        "(--trusted-key, or runtime.trusted_keys in the board file).")
    kg.add_argument("--out", required=True, metavar="DIR", help="directory for the key pair (created, mode 0700)")
    kg.add_argument("--name", default="hx-signing", help="file stem of the pair (default hx-signing)")
    kg.add_argument("--overwrite", action="store_true", help="replace an existing key pair of that name")
    kg.set_defaults(func=cmd_keygen)

    sg = sub.add_parser("sign", help="sign an existing bundle (manifest.sig) with a key from toolchain keygen",
                        description="Check the bundle (hashes, format, schema), then write manifest.sig, an Ed25519 "
                        "signature over the exact bytes of its manifest.json, atomically. A bundle that is already "
                        "signed is refused (remove manifest.sig to re-sign).")
    sg.add_argument("bundle", help="bundle directory")
    sg.add_argument("--key", required=True, metavar="KEY", help="Ed25519 private key (.key from toolchain keygen)")
    sg.set_defaults(func=cmd_sign)

    i = sub.add_parser("inspect", help="validate a bundle (hashes, format, shapes, signature) and print its manifest")
    i.add_argument("bundle", help="bundle directory")
    add_trust_arguments(i)
    i.set_defaults(func=cmd_inspect)

    names = [*BACKENDS, "torch"]
    ckpt_help = "checkpoint for --backend torch (default: the one the manifest names, beside the bundle or shipped)"
    r = add_run_parser(sub, names)
    r.add_argument("--checkpoint", metavar="FILE", help=ckpt_help)
    r.set_defaults(func=cmd_run)
    st = add_stream_parser(sub, names)
    st.add_argument("--checkpoint", metavar="FILE", help=ckpt_help)
    st.set_defaults(func=cmd_stream)
    bn = add_bench_parser(sub, names)
    bn.add_argument("--checkpoint", metavar="FILE", help=ckpt_help)
    bn.set_defaults(func=cmd_bench)

    tr = sub.add_parser("train", help="train a simulator, a compensator, or a teacher -> student pair from a recipe",
                        description="Run a TOML recipe (toolchain/train/recipes/): kind 'simulator' trains the Neuro-MSBG-"
                        "style hearing-loss simulator against pyclarity MSBG; kind 'distil' trains a teacher through the "
                        "frozen simulator and distils the deployable student; kind 'dal' trains SEANet through CARFAC (seed 004); the default recipe regenerates the shipped "
                        "compensator. CUDA when present; multi-GPU with `torchrun --nproc_per_node N -m toolchain train`.")
    add_train_arguments(tr)
    tr.set_defaults(func=train_main)

    # lazy: toolchain.verify.report pulls torch (seconds to import); only this path needs it
    from toolchain.verify.report import add_verify_arguments, verify_main

    v = sub.add_parser("verify", help="full-precision check of a bundle: int8 vs fp32, latency, HASPI, midbrain (ICNet)",
                       description="One JSON + HTML report with plots: int8-vs-fp32 SNR, latency, HASPI v2 (when pyclarity "
                       "is installed) and midbrain fidelity through ICNet / psi-ICNet (when you pass weights; without them "
                       "the report says the neural check did not run). Runs on CUDA when present, else the CPU.")
    add_verify_arguments(v)
    v.set_defaults(func=verify_main)

    fi = sub.add_parser("fit", help="run a classic fitting (NAL-R, or NAL-R + WDRC) for an audiogram on a wav file",
                        description="The classic baselines that `toolchain evaluate` compares the device with: nalr is "
                        "the NAL-R prescription as a causal minimum-phase FIR; wdrc is a CAMFIT-fitted multi-band "
                        "compressor followed by it (the Clarity challenges' NAL-R + compressor). The output is a "
                        "32-bit float wav at the input's rate, written atomically; it is not limited.")
    ga = fi.add_mutually_exclusive_group(required=True)
    ga.add_argument("--audiogram", metavar="FILE", help="audiogram JSON or CSV (as toolchain export takes)")
    ga.add_argument("--preset", help="named audiogram instead of a file: normal, mild-flat, moderate-sloping, ..., "
                    "or a standard audiogram N1..N7, S1..S3 (Bisgaard et al. 2010)")
    fi.add_argument("--method", choices=("nalr", "wdrc"), required=True, help="nalr: NAL-R; wdrc: NAL-R + WDRC")
    fi.add_argument("--input", required=True, help="wav file (mono, or stereo with --channel)")
    fi.add_argument("--output", required=True, help="output wav file")
    fi.add_argument("--channel", choices=("left", "right", "mix"), default="mix",  # runtime.wavio.CHANNELS
                    help="which channel of a stereo input to use (default mix)")
    fi.set_defaults(func=cmd_fit)

    # lazy: toolchain.verify.evaluate pulls onnx and torch (seconds to import); only this path needs it
    from toolchain.verify.evaluate import add_evaluate_arguments, evaluate_main

    ev = sub.add_parser("evaluate", help="HASPI v2 / HASQI v2 of unprocessed, NAL-R, NAL-R + WDRC and the device, "
                        "quiet, noise and reverberation",
                        description="Score held-out speech (languages, voices and sentences no training split uses) at "
                        "55/65/75 dB SPL in quiet, babble, speech-shaped noise and reverberation with pyclarity's HASPI v2 "
                        "and HASQI v2 for several audiograms: unprocessed, NAL-R, NAL-R + WDRC (toolchain fit) and the "
                        "device (each audiogram's bundle, its default graph through the runtime, limiter included). "
                        "Writes evaluation.json, evaluation.md (pooled and per-cell tables, target checks with value, "
                        "target and shortfall) and evaluation.png.")
    add_evaluate_arguments(ev)
    ev.set_defaults(func=evaluate_main)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        set_verbose(True)
    try:
        return int(args.func(args) or 0)
    except _user_errors(args.command) as e:
        print(f"toolchain {args.command}: error: {one_line(e)}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"toolchain {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
