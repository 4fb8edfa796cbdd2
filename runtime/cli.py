"""``python -m runtime``: run a bundle on a board without the toolchain.

    python -m runtime run BUNDLE --input in.wav --output out.wav [--backend B]
    python -m runtime stream BUNDLE [--device DEV] [--backend B]
    python -m runtime bench BUNDLE [--backend B ...] [--loopback jack] [--json F] [--plot P]
    python -m runtime devices

run, stream and bench take ``--trusted-key FILE|DIR`` (repeatable), ``--require-signature`` and
``--board NAME|FILE`` (the board this runs on: its ``runtime.require_signature`` and
``runtime.trusted_keys`` apply); see runtime/signing.py for what is refused.

The ``toolchain`` command's ``run``, ``stream`` and ``bench`` are these same functions (it adds
the torch reference backend and the dB SPL summary). A user's mistake (bad wav, tampered or
foreign bundle, unknown backend, unwritable output) ends in ONE line on stderr and exit code 2,
and no partial output is left. numpy, sounddevice (stream), matplotlib (--plot) only.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import numpy as np

from runtime.atomic import OutputPathError, check_output_path
from runtime.audio_io import AudioIOError, list_devices, print_status, status_line
from runtime.backends import BACKENDS, open_backend
from runtime.backends.base import BackendError
from runtime.boards import BoardError, load_board
from runtime.bundle import BundleError, load_bundle
from runtime.engine import Engine
from runtime.harness.bench import plot_timings, run_bench, write_json
from runtime.harness.loopback import xruns_by_source
from runtime.harness.measure import BenchError, LatencyProbeError
from runtime.live import LiveSupervisor, WorkerConfig
from runtime.native_log import set_verbose
from runtime.resample import resample
from runtime.signing import SignatureError, policy_from_sources
from runtime.wavio import CHANNELS, DEFAULT_CHANNEL, WavError, check_input_file, check_rate, read_wav, write_wav_atomic

USER_ERROR = 2

#: name -> factory(bundle, threads) for backends the runtime cannot name itself (the toolchain's torch).
BackendFactory = Callable[[Any, int], Any]


class UserError(Exception):
    """A mistake in what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that describe a user's mistake (or an environment the user must fix)."""
    return (UserError, BundleError, BackendError, WavError, BoardError, AudioIOError, BenchError, LatencyProbeError,
            SignatureError, OutputPathError)


def trust_from_args(args: argparse.Namespace) -> Any:
    """The device's signature policy from ``--trusted-key``, ``--require-signature``, ``--board`` and the environment."""
    keys: list[str] = list(getattr(args, "trusted_key", None) or [])
    reasons = ["--require-signature"] if getattr(args, "require_signature", False) else []
    b = board_from_args(args)
    if b is not None:
        keys += [str(k) for k in b.runtime.trusted_keys]
        if b.runtime.require_signature:
            reasons.append(f"board {b.name}: runtime.require_signature = true")
    return policy_from_sources(keys, require=bool(reasons), require_reason=", ".join(reasons))


def board_from_args(args: argparse.Namespace) -> Any:
    """The ``--board NAME|FILE`` board (loaded once per command), or None."""
    name = getattr(args, "board", None)
    if not name:
        return None
    cached = getattr(args, "_board", None)
    if cached is None:
        cached = load_board(name)
        args._board = cached
    return cached


@dataclass(frozen=True)
class BoardSettings:
    """What a command runs with once ``--board`` is applied: backend, threads, output limit."""

    backend: str
    threads: int
    output_limit: float | None  # None: the bundle's own
    board: Any = None

    def describe(self) -> str:
        return "" if self.board is None else (f"board {self.board.name}: backend {self.backend}, {self.threads} "
                                              f"thread(s), output limit {self.output_limit:g}")


#: Most backend threads a command accepts (no board in boards/ has more cores).
MAX_THREADS = 64


def check_threads(threads: int | None) -> None:
    """``--threads`` must be 1..MAX_THREADS (``-1``, "all cores" elsewhere, is refused, not guessed)."""
    if threads is not None and not 1 <= int(threads) <= MAX_THREADS:
        raise UserError(f"--threads must be 1..{MAX_THREADS}, got {threads}")


def apply_board(bundle: Any, board: Any, backend: str | None, threads: int | None) -> BoardSettings:
    """The board's settings over the defaults, the user's flags over the board's.

    The output limit is the stricter of the bundle's and the board's (a board's maximum power
    output is a safety bound; it can only lower the bundle's). A bundle made for another
    sample rate or block than the board runs is refused: its timing and its fitting assume them.
    """
    check_threads(threads)
    m = bundle.manifest
    if board is None:
        return BoardSettings(backend=backend or "litert", threads=threads or 1, output_limit=None)
    a = board.audio
    if (m.sample_rate, m.block) != (a.sample_rate, a.block):
        raise UserError(f"{bundle.path}: made for {m.sample_rate} Hz, block {m.block}; board {board.name} runs "
                        f"{a.sample_rate} Hz, block {a.block} (export it with --target {board.path or board.name})")
    return BoardSettings(backend=backend or board.runtime.backend, threads=threads or board.runtime.threads,
                         output_limit=min(float(m.output_limit), float(a.output_limit)), board=board)


def positive_seconds(flag: str, value: float | None, *, allow_none: bool = True) -> None:
    """A duration flag must be a finite number > 0 (nan, inf and negatives are one-line errors)."""
    if value is None and allow_none:
        return
    if value is None or not np.isfinite(value) or value <= 0:
        raise UserError(f"{flag} must be a finite number of seconds > 0, got {value}")


def backend_names(extra: dict[str, BackendFactory] | None = None) -> list[str]:
    return list(BACKENDS) + [n for n in (extra or {}) if n not in BACKENDS]


def make_backend(bundle: Any, name: str, threads: int, extra: dict[str, BackendFactory] | None = None) -> Any:
    """A backend name → the name itself (runtime backends) or a ready backend (extra factories)."""
    if extra and name in extra:
        return extra[name](bundle, threads)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of: {', '.join(backend_names(extra))}")
    return name


# ------------------------------------------------------------------------------------ run
@dataclass
class RunReport:
    input: str
    output: str
    backend: str
    sample_rate: int
    input_rate: int
    x: np.ndarray
    y: np.ndarray
    seconds: float
    output_limit: float
    stats: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    manifest: Any = None  # the bundle's Manifest (as verified)

    @property
    def rtf(self) -> float:
        return self.seconds / max(1e-9, len(self.x) / self.sample_rate)


def run_file(bundle_path: str, input_path: str, output_path: str, *, backend: str | None = None,
             threads: int | None = None, host_block: int | None = None,
             extra_backends: dict[str, BackendFactory] | None = None, notice: Callable[[str], None] | None = None,
             trust: Any = None, board: Any = None, channel: str = "mix") -> RunReport:
    """Offline streaming of a wav through the engine; writes ``output_path`` atomically.

    Everything that can fail on the user's input (bundle and its signature under ``trust``, wav,
    backend, output location, the board's rate and block) is checked before any work, and the
    write itself is atomic. ``board`` (a :class:`runtime.boards.Board`) gives the backend and
    threads the user did not name and lowers the output limit to its own (:func:`apply_board`).
    """
    check_input_file(input_path, "wav file")
    check_output_path(output_path, inputs=[input_path])
    out = Path(output_path)
    bundle = load_bundle(bundle_path, trust=trust)
    settings = apply_board(bundle, board, backend, threads)
    backend, threads = settings.backend, settings.threads
    if host_block is not None and not 1 <= host_block <= 4096:
        raise UserError(f"--host-block must be 1..4096 samples, got {host_block}")
    if backend not in BACKENDS and backend not in (extra_backends or {}):
        raise BackendError(f"unknown backend {backend!r}; expected one of: {', '.join(backend_names(extra_backends))}")
    # The input before the backend: a backend may log on creation (LiteRT's INFO line), and a
    # bad file must still give exactly one line.
    x, sr = read_wav(input_path, channel=channel)
    check_rate(input_path, sr)
    rate = bundle.manifest.sample_rate
    notices = []
    if settings.board is not None:
        notices.append(settings.describe())
        if notice:
            notice(settings.describe())
    if sr != rate:
        msg = f"note: {input_path} is {sr} Hz; resampling to the model's {rate} Hz"
        notices.append(msg)
        if notice:
            notice(msg)
        x = resample(x, sr, rate)
    be = make_backend(bundle, backend, threads, extra_backends)
    engine = Engine(bundle, be, num_threads=threads, output_limit=settings.output_limit)
    t0 = time.perf_counter()
    y = engine.run(x, host_block=host_block)
    dt = time.perf_counter() - t0
    write_wav_atomic(out, y, rate, inputs=[input_path])
    return RunReport(input=str(input_path), output=str(out), backend=backend, sample_rate=rate, input_rate=sr,
                     x=x, y=y, seconds=dt, output_limit=engine.output_limit, stats=engine.stats(), notices=notices,
                     manifest=bundle.manifest)


def cmd_run(args: argparse.Namespace, extra: dict[str, BackendFactory] | None = None) -> int:
    rep = run_file(args.bundle, args.input, args.output, backend=args.backend, threads=args.threads,
                   host_block=args.host_block, extra_backends=extra, notice=print, trust=trust_from_args(args),
                   board=board_from_args(args), channel=args.channel)
    st = rep.stats
    print(f"{rep.input} → {rep.output}: {len(rep.x) / rep.sample_rate:.2f} s through {rep.backend}")
    print(f"  peak {np.max(np.abs(rep.y)):.3f} (limit {rep.output_limit:g}), "
          f"real-time factor {rep.rtf:.3f}, block compute p50 {st['recent_p50_us']:.0f} µs / p99 {st['recent_p99_us']:.0f} µs")
    print(f"  blocks {st['blocks']}, limiter active on {st['limiter_samples']} samples, "
          f"non-finite inputs {st['nonfinite_inputs']}, late blocks {st['late_blocks']}")
    return 0


# --------------------------------------------------------------------------------- stream
def cmd_stream(args: argparse.Namespace, extra: dict[str, BackendFactory] | None = None) -> int:
    """Live duplex audio through a supervised worker process (runtime/live.py): a lost device or a
    killed audio server is reported on one line, the stream is reopened when the device is back
    (within --reopen-timeout), and the counters cover the whole session."""
    trust = trust_from_args(args)
    bundle = load_bundle(args.bundle, trust=trust)
    m = bundle.manifest
    settings = apply_board(bundle, board_from_args(args), args.backend, args.threads)
    args.backend, args.threads = settings.backend, settings.threads
    positive_seconds("--seconds", args.seconds)
    if settings.board is not None:
        print(settings.describe(), flush=True)
    be = make_backend(bundle, args.backend, args.threads, extra)
    factory, kwargs = None, {}
    if not isinstance(be, str):
        # The worker builds the backend itself: only an importable factory can cross the process line.
        f = extra[args.backend] if extra else None
        fn = f.func if isinstance(f, functools.partial) else f
        if fn is None or "<locals>" in getattr(fn, "__qualname__", "<locals>"):
            raise UserError(f"backend {args.backend!r} cannot run in the live audio worker (its factory is not importable)")
        factory = f"{fn.__module__}:{fn.__qualname__}"
        kwargs = dict(f.keywords) if isinstance(f, functools.partial) else {}
    if args.host_block is not None and not 0 <= args.host_block <= 4096:
        raise UserError(f"--host-block must be 0 (any) or 1..4096 samples, got {args.host_block}")
    if args.reopen_timeout < 0:
        raise UserError(f"--reopen-timeout must be >= 0 seconds, got {args.reopen_timeout:g}")
    cfg = WorkerConfig(bundle=str(bundle.path), backend=args.backend if factory is None else "",
                       threads=args.threads, device=args.device, input_device=args.input_device,
                       output_device=args.output_device, host_block=args.host_block, channels=args.channels,
                       channel=args.channel, output_limit=settings.output_limit, low_latency=args.low_latency, trusted_keys=trust.key_paths(), require_signature=trust.require,
                       require_reason=trust.require_reason, backend_factory=factory, factory_kwargs=kwargs)
    live = sys.stderr.isatty() and not args.quiet

    def opened(ev: dict[str, Any]) -> None:
        hb = ev.get("host_block")
        io = ev.get("io_latency_ms", [0.0, 0.0])
        print(f"streaming {m.model} ({m.audiogram['name'] if m.audiogram else 'unfitted'}) through {args.backend}: "
              f"{m.sample_rate} Hz, host block {hb or 'any'}, model block {m.block}; "
              f"latency {ev.get('latency_ms', 0.0):.2f} ms (I/O {io[0]:.2f} + {io[1]:.2f}, engine "
              f"{1000 * ev.get('stream_delay', 0) / m.sample_rate:.2f}; algorithmic {m.algorithmic_latency_ms:.2f}). "
              "Ctrl-C stops.", flush=True)

    def report(line: str) -> None:
        if live:
            sys.stderr.write("\n")
        print(line, file=sys.stderr, flush=True)

    sup = LiveSupervisor(cfg, reopen_timeout=args.reopen_timeout, report=report, on_open=opened,
                         on_status=(lambda s: print_status(status_line(s.engine, s))) if live else None)
    summary = sup.run(args.seconds)
    if live:
        sys.stderr.write("\n")
    st = summary.engine
    print(f"stopped after {summary.seconds:.1f} s: {summary.callbacks} callbacks, xruns {summary.xruns}, "
          f"late callbacks {summary.late_callbacks}, max callback {summary.max_callback_us:.0f} µs; "
          f"block compute p50 {st.get('recent_p50_us', 0):.0f} µs / p99 {st.get('recent_p99_us', 0):.0f} µs "
          f"(load {100 * st.get('load_p99', 0):.1f} % p99), limiter {st.get('limiter_samples', 0)} samples, "
          f"non-finite inputs {st.get('nonfinite_inputs', 0)}; device losses {summary.device_losses}, reopened "
          f"{summary.reopens} (down {summary.downtime_s:.1f} s); peak output {summary.peak_output:.3f} "
          f"(limit {settings.output_limit or m.output_limit:g})")
    return 0


# ---------------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace, extra: dict[str, BackendFactory] | None = None) -> int:
    positive_seconds("--seconds", args.seconds, allow_none=False)
    positive_seconds("--loopback-seconds", args.loopback_seconds, allow_none=False)
    # Before minutes of timing: an output that cannot be written (or must not be) fails now.
    outs = [p for p in (args.json, args.plot) if p is not None]
    for p in outs:
        check_output_path(p, inputs=[args.input] if args.input else [], what="report")
    if len(outs) == 2 and os.path.abspath(outs[0]) == os.path.abspath(outs[1]):
        raise UserError(f"{outs[0]}: --json and --plot name the same file")
    trust = trust_from_args(args)
    bundle = load_bundle(args.bundle, trust=trust)
    board = board_from_args(args)
    settings = apply_board(bundle, board, None, args.threads)
    args.threads = settings.threads
    names = args.backend or ([board.runtime.backend] if board is not None else ["ckernel", "litert"])
    specs = []
    for n in names:
        be = make_backend(bundle, n, args.threads, extra)
        if not args.backend and board is None and n == "ckernel":
            try:  # a default, not a request: a board without a C compiler benches litert alone
                open_backend(bundle, "ckernel")
            except BackendError as e:
                print(f"note: skipping ckernel ({one_line(e)})", file=sys.stderr)
                continue
        specs.append(n if isinstance(be, str) else (n, be))
    x = None
    if args.input:
        x, sr = read_wav(args.input, channel=args.channel)
        check_rate(args.input, sr)
        if sr != bundle.manifest.sample_rate:
            x = resample(x, sr, bundle.manifest.sample_rate)
    report = run_bench(bundle, specs, seconds=args.seconds, threads=args.threads, x=x, trust=trust, board=board,
                       output_limit=settings.output_limit,
                       loopback=args.loopback, loopback_seconds=args.loopback_seconds,
                       loopback_backend=args.loopback_backend, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot_timings({n: {**r, "samples_us": report["_samples"][n]} for n, r in report["backends"].items()},
                     report["block_period_us"], args.plot, budget_fraction=report["board"].get("compute_fraction"),
                     loopback=report.get("loopback"), measured_on=report["measured_on"].split(";")[0],
                     title=f"{report['model']} on {report['host'].get('cpu', report['host']['machine'])}: "
                           f"block {report['block']} @ {report['sample_rate']} Hz, {report['threads']} thread(s)")
        print(f"wrote {args.plot}")
    return 0


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['model']} ({r['target']}): block {r['block']} samples @ {r['sample_rate']} Hz = "
             f"{r['block_period_us']:.0f} µs period, {r['threads']} thread(s)"]
    lines.append(f"  {'backend':<12} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8} {'RTF':>7} {'load p99':>9} {'engine p99':>11} {'latency':>8}")
    for n, b in r["backends"].items():
        lines.append(f"  {n:<12} {b['p50_us']:8.1f} {b['p99_us']:8.1f} {b['max_us']:8.0f} {b['rtf']:7.3f} "
                     f"{100 * b['load_p99']:8.1f}% {b['engine_p99_us']:9.1f}µs {b['algorithmic_latency_samples']:>4} smp")
    lines.append(f"  algorithmic latency (impulse): {r['algorithmic_latency_samples']} samples = {r['algorithmic_latency_ms']:.2f} ms")
    lines.append(f"  measured on {r['measured_on'].split(';')[0].removeprefix('this host: ')}")
    for n, b in r["backends"].items():
        est = b.get("board_budget_estimate")
        if est:
            lines.append(f"  {n}: board {r['board']['board']} budget {100 * est['board_compute_fraction']:.0f} % of a block; "
                         f"{100 * est['load_p99_on_this_host']:.1f} % here. Estimate only ({est['note']})")
    lb = r.get("loopback")
    if lb:
        comp = lb.get("compute_p99_ms")
        lines.append(f"  loopback (JACK dummy, {lb['backend']}, {lb['seconds']:.1f} s): round trip {lb['round_trip_samples']} samples = "
                     f"{lb['round_trip_ms']:.2f} ms = algorithmic {lb['algorithmic_ms']:.2f} + buffering {lb['buffering_ms']:.2f} ms"
                     + (f" (compute p99 {comp:.3f} ms runs inside the period)" if comp is not None else ""))
        xs = lb.get("xruns_by_source") or xruns_by_source(lb)
        lines.append(f"    xruns by source: runtime (after our callback overran) {xs['runtime']}, other PortAudio flags "
                     f"{xs['portaudio_other']}, JACK server driver {xs['server_driver']}, JACK server clients "
                     f"{xs['server_client']}, host stalls > 1 period {xs['host_stalls']}; late callbacks "
                     f"{lb['late_callbacks']}, lost/altered samples {lb['glitch_samples']}, live == offline: "
                     f"{lb['engine_matches_offline']}")
    return "\n".join(lines)


def cmd_devices(args: argparse.Namespace, extra: dict[str, BackendFactory] | None = None) -> int:
    print(list_devices())
    return 0


# ----------------------------------------------------------------------------------- main
def add_run_parser(sub: Any, backends: Sequence[str]) -> argparse.ArgumentParser:
    r = sub.add_parser("run", help="stream a wav file through a bundle offline, block by block",
                       description="Stream a wav through the engine (re-blocking, limiter, counters) and write the "
                       "result atomically (PCM 16). Resamples with a notice when the file's rate differs from the model's.")
    r.add_argument("bundle", help="bundle directory")
    r.add_argument("--input", required=True, help="wav file (PCM 8/16/24/32 or float within ±2); see --channel")
    r.add_argument("--output", required=True,
                   help="wav file to write (PCM 16), atomically. Refused: the input itself (also through a link), a "
                        "directory, a device, FIFO or socket. A symlink to a regular file is written through (the "
                        "link stays, its target gets the result)")
    add_engine_arguments(r, backends)
    r.add_argument("--host-block", type=int, default=None, metavar="N",
                   help="feed the engine N samples at a time, as an audio API would (the output is the same for any N)")
    add_verbose_argument(r)
    add_trust_arguments(r)
    return r


def add_stream_parser(sub: Any, backends: Sequence[str]) -> argparse.ArgumentParser:
    s = sub.add_parser("stream", help="live duplex audio through a bundle (sounddevice)",
                       description="Open a full-duplex stream (PortAudio via sounddevice) and run every input "
                       "buffer through the engine. Shows one status line (load, latency, xruns); Ctrl-C stops "
                       "cleanly and prints a summary.")
    s.add_argument("bundle", help="bundle directory")
    s.add_argument("--device", help="input and output device: index, name, or a host API (e.g. jack)")
    s.add_argument("--input-device", help="input device (overrides --device)")
    s.add_argument("--output-device", help="output device (overrides --device)")
    add_engine_arguments(s, backends)
    s.add_argument("--host-block", type=int, default=None, metavar="N",
                   help="audio buffer size in samples (default: the model block; 0 lets PortAudio choose)")
    s.add_argument("--channels", type=int, default=1,
                   help="channels to open (the input becomes mono by --channel, the output is duplicated)")
    s.add_argument("--seconds", type=float, default=None, help="stop after this long (default: run until Ctrl-C)")
    s.add_argument("--low-latency", action="store_true",
                   help="smallest engine delay the host block allows (0 when it is a multiple of the model block) "
                        "instead of one model block")
    s.add_argument("--quiet", action="store_true", help="no live status line")
    s.add_argument("--reopen-timeout", type=float, default=30.0, metavar="S",
                   help="when the audio device or server goes away, keep trying to reopen it for S seconds "
                        "(default 30; 0: stop with an error at once)")
    add_verbose_argument(s)
    add_trust_arguments(s)
    return s


def add_bench_parser(sub: Any, backends: Sequence[str]) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="per-block timing, algorithmic and round-trip latency",
                       description="Time every model block through the engine (p50/p99/max µs, real-time factor, "
                       "load as a fraction of the block period), measure the algorithmic latency by impulse and, "
                       "with --loopback jack, the round trip through a private JACK dummy-driver server at the "
                       "board's rate and period (it is started and stopped by the bench).")
    b.add_argument("bundle", help="bundle directory")
    b.add_argument("--backend", action="append", help=f"backend to time (repeatable; default ckernel and litert): {', '.join(backends)}")
    b.add_argument("--seconds", type=float, default=10.0, help="audio to time per backend (default 10)")
    b.add_argument("--threads", type=int, default=None, help="backend threads (default: the board's, else 1)")
    b.add_argument("--input", help="time on this wav instead of the synthetic signal (see --channel)")
    add_channel_argument(b)
    b.add_argument("--loopback", choices=["jack"], help="also measure the round trip through an audio server")
    b.add_argument("--loopback-seconds", type=float, default=10.0, help="length of the loopback run (default 10)")
    b.add_argument("--loopback-backend", help="backend for the loopback (default: the first runtime backend timed)")
    b.add_argument("--json", metavar="F", help="write the report as JSON (checked before the bench starts; a symlink "
                   "is written through, a device or FIFO refused)")
    b.add_argument("--plot", metavar="P", help="write a histogram of per-block times against the deadline, with the "
                   "loopback figures (PNG; checked like --json)")
    add_verbose_argument(b)
    add_trust_arguments(b)
    return b


def add_channel_argument(p: argparse.ArgumentParser) -> None:
    """``--channel left|right|mix``: how a stereo (multi-channel) input becomes mono; same default everywhere."""
    p.add_argument("--channel", choices=CHANNELS, default=DEFAULT_CHANNEL,
                   help=f"which channel of a multi-channel input to use: the first, the second, or their mean "
                        f"(default {DEFAULT_CHANNEL}); a mono input is used as it is")


def add_engine_arguments(p: argparse.ArgumentParser, backends: Sequence[str]) -> None:
    """``--backend``, ``--threads`` and ``--channel`` for run and stream."""
    p.add_argument("--backend", default=None, help=f"one of {', '.join(backends)} (default: the board's with --board, "
                   "else litert)")
    p.add_argument("--threads", type=int, default=None, help="backend threads, 1..64 (default: the board's, else 1)")
    add_channel_argument(p)


def add_verbose_argument(p: argparse.ArgumentParser) -> None:
    """``--verbose``: show what LiteRT/TensorFlow print from native code (kept quiet otherwise)."""
    p.add_argument("--verbose", action="store_true",
                   help="also show the native libraries' own messages (LiteRT's delegate notice, TensorFlow's "
                        "converter log), which are otherwise kept off the terminal")


def add_trust_arguments(p: argparse.ArgumentParser) -> None:
    """``--trusted-key``, ``--require-signature`` and ``--board``: the device's policy for signed bundles."""
    g = p.add_argument_group("signed bundles (see README, 'Signed bundles')")
    g.add_argument("--trusted-key", action="append", metavar="FILE|DIR",
                   help="Ed25519 public key (.pub) a bundle may be signed with, or a directory of them (repeatable; "
                        "also HX_TRUSTED_KEYS). A signed bundle is always verified and refused if no trusted key verifies it")
    g.add_argument("--require-signature", action="store_true",
                   help="refuse unsigned bundles (also HX_REQUIRE_SIGNATURE=1, or the board's runtime.require_signature)")
    g.add_argument("--board", metavar="NAME|FILE",
                   help="the board this runs on (boards/*.toml name or a TOML path): its runtime.require_signature, "
                        "runtime.trusted_keys, runtime.backend and runtime.threads (unless --backend/--threads say "
                        "otherwise) apply, the output limit is the lower of the board's and the bundle's, and a bundle "
                        "of another sample rate or block than the board's is refused")


def build_parser() -> argparse.ArgumentParser:
    names = backend_names()
    p = _Parser(prog="python -m runtime", description="Run hearing-aid compensator bundles on a board (no toolchain needed).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add_run_parser(sub, names).set_defaults(func=cmd_run)
    add_stream_parser(sub, names).set_defaults(func=cmd_stream)
    add_bench_parser(sub, names).set_defaults(func=cmd_bench)
    d = sub.add_parser("devices", help="list the audio devices PortAudio sees")
    d.set_defaults(func=cmd_devices)
    return p


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        set_verbose(True)
    try:
        return int(args.func(args) or 0)
    except user_errors() as e:
        print(f"{parser.prog} {args.command}: error: {one_line(e)}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
