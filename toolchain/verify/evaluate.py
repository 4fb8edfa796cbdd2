"""``toolchain evaluate``: HASPI v2 and HASQI v2 of the device against the classic fittings (issue 16).

Unprocessed, NAL-R, NAL-R + WDRC and the exported bundle (``runtime.engine.Engine``, limiter
included) get the same held-out inputs per audiogram x speech level x listening condition, a
paired comparison; every output passes the device's output limiter, so no system gains from a
level the device could not deliver. The protocol, grids and targets: README.md, "Evaluation".
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from runtime.atomic import atomic_write
from runtime.boards import BoardError, resolve_target
from runtime.bundle import BundleError, load_bundle
from runtime.engine import Engine, Limiter
from toolchain.audio.audiogram import NAMED_AUDIOGRAMS, Audiogram
from toolchain.audio.clarity import align, clarity_tools, haspi_level1, score_pair
from toolchain.audio.data import (
    HELDOUT_SPLIT,
    SPLIT_VOICES,
    CorpusConfig,
    SpeechCache,
    SyntheticCorpus,
    language_consistent,
    make_noise,
    mix_at_snr,
    split_sentences,
)
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.fitting.baselines import nalr, nalr_wdrc
from toolchain.models.compensators.registry import CompensatorError, load_compensator

EVALUATION_FORMAT = "hx-evaluate/2"
SYSTEMS: tuple[str, ...] = ("unprocessed", "nal-r", "nal-r+wdrc", "device")
CLASSIC: tuple[str, ...] = ("nal-r", "nal-r+wdrc")
LABELS = {"unprocessed": "unprocessed", "nal-r": "NAL-R", "nal-r+wdrc": "NAL-R + WDRC", "device": "device"}
METRICS: tuple[str, ...] = ("haspi", "hasqi")
METRIC_LABELS = {"haspi": "HASPI v2", "hasqi": "HASQI v2"}
OUTPUT_SUFFIXES = ("json", "md", "png")
ALIGN_MAX_LAG_S = 0.01
REVERB_T60_S = (0.3, 0.6)
REVERB_DRR_DB = 0.0
MAX_LATENCY_MS = 1.5
MAX_IN_FLIGHT = 256  # score tasks queued for the worker processes (see _Scorer)
NOISE_KINDS = ("babble", "speech-shaped", "pink", "white")
DEFAULT_CONDITIONS: tuple[str, ...] = ("quiet", "babble:0", "babble:5", "speech-shaped:5", "reverb")
# Issue 16's bounds.
QUIET_MARGIN = -0.01
NOISE_MARGIN = 0.05
CELL_MARGIN = -0.02

GRIDS: dict[str, dict[str, Any]] = {
    # For tests and a first look: one audiogram, one level, quiet and babble, one short example.
    "tiny": {"presets": ("N3",), "levels": (65.0,), "conditions": ("quiet", "babble:5"), "examples": 1,
             "seconds": 1.0},
    # Mild to severe and two steep high-frequency losses (Bisgaard et al. 2010), every level and condition.
    "default": {"presets": ("N2", "N3", "N4", "N5", "S2", "S3"), "levels": (55.0, 65.0, 75.0),
                "conditions": DEFAULT_CONDITIONS, "examples": 1, "seconds": 2.0},
    "full": {"presets": ("N1", "N2", "N3", "N4", "N5", "N6", "S1", "S2", "S3"), "levels": (55.0, 65.0, 75.0),
             "conditions": DEFAULT_CONDITIONS, "examples": 6, "seconds": 3.0},
}

Progress = Callable[[str, int, int], None]  # (stage, scores done, scores in all)


class EvaluateError(ValueError):
    """A user's mistake in ``toolchain evaluate``; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _default_student() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "seanet_default.pt"


# ------------------------------------------------------------------------------ options
def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class Condition:
    """A listening condition: ``quiet``, ``reverb``, or a noise kind at an SNR."""

    kind: str
    snr_db: float | None = None

    @property
    def label(self) -> str:
        if self.kind == "quiet":
            return "quiet"
        if self.kind == "reverb":
            return f"reverb T60 {REVERB_T60_S[0]:g}-{REVERB_T60_S[1]:g} s"
        return f"{self.kind} {self.snr_db:g} dB SNR"

    @property
    def noisy(self) -> bool:
        return self.kind != "quiet"


def parse_condition(text: str) -> Condition:
    """``quiet``, ``reverb``, or ``KIND:SNR`` (KIND one of :data:`NOISE_KINDS`, SNR in dB, -20..40)."""
    t = text.strip().lower()
    if t in ("quiet", "reverb"):
        return Condition(t)
    kind, sep, snr = t.partition(":")
    if not sep or kind not in NOISE_KINDS:
        raise EvaluateError(f"condition {text!r}: expected quiet, reverb or KIND:SNR with KIND one of "
                            f"{', '.join(NOISE_KINDS)} (e.g. babble:5)")
    try:
        v = float(snr)
    except ValueError:
        raise EvaluateError(f"condition {text!r}: the SNR {snr!r} is not a number of dB") from None
    if not math.isfinite(v) or not -20 <= v <= 40:
        raise EvaluateError(f"condition {text!r}: the SNR must be in -20..40 dB, got {snr}")
    return Condition(kind, v)


@dataclass(frozen=True)
class EvaluateOptions:
    """Everything ``toolchain evaluate`` needs; ``None`` fields take the grid's value. Files are
    checked by :func:`run_evaluation`."""

    student: Path = field(default_factory=_default_student)
    bundles: tuple[Path, ...] = ()
    grid: str = "default"
    presets: tuple[str, ...] | None = None
    levels: tuple[float, ...] | None = None
    conditions: tuple[str, ...] | None = None
    examples: int | None = None
    seconds: float | None = None
    target: str = "rpi"
    seed: int = 0
    jobs: int = 1
    out: Path = Path("out/evaluation")
    name: str = "evaluation"                       # the outputs are <out>/<name>.{json,md,png}
    export_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise EvaluateError(f"unknown --grid {self.grid!r}; expected one of {', '.join(GRIDS)}")
        g = GRIDS[self.grid]
        for name in ("presets", "levels", "conditions", "examples", "seconds"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, g[name])
        if not self.presets:
            raise EvaluateError("--presets needs at least one audiogram preset")
        unknown = [p for p in self.presets if p not in NAMED_AUDIOGRAMS]
        if unknown:
            raise EvaluateError(f"unknown audiogram preset {unknown[0]!r}; valid presets: "
                                f"{', '.join(sorted(NAMED_AUDIOGRAMS))}")
        if len(set(self.presets)) != len(self.presets):
            raise EvaluateError(f"--presets lists a preset twice: {','.join(self.presets)}")
        if not self.levels or not all(_is_finite(v) and 30 <= float(v) <= 100 for v in self.levels):
            raise EvaluateError(f"--levels must be speech levels in 30..100 dB SPL, got {list(self.levels or ())!r}")
        if len(set(self.levels)) != len(self.levels):
            raise EvaluateError("--levels lists a level twice")
        if not self.conditions:
            raise EvaluateError("--conditions needs at least one condition")
        labels = [parse_condition(c).label for c in self.conditions]
        if len(set(labels)) != len(labels):
            raise EvaluateError("--conditions lists a condition twice")
        if not _is_int(self.examples) or not 1 <= self.examples <= 500:
            raise EvaluateError(f"--examples must be a whole number in 1..500, got {self.examples!r}")
        if not _is_finite(self.seconds) or not 0.5 <= self.seconds <= 30:
            raise EvaluateError(f"--seconds must be in 0.5..30, got {self.seconds!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise EvaluateError(f"--seed must be a whole number >= 0, got {self.seed!r}")
        if not _is_int(self.jobs) or not 1 <= self.jobs <= 64:
            raise EvaluateError(f"--jobs must be a whole number in 1..64, got {self.jobs!r}")
        if not isinstance(self.name, str) or not self.name or self.name.startswith(".") or "/" in self.name \
                or os.sep in self.name:
            raise EvaluateError(f"--name must be a plain file name stem, got {self.name!r}")

    def output_paths(self) -> dict[str, Path]:
        """``{"json": ..., "md": ..., "png": ...}`` under ``out``."""
        return {suffix: Path(self.out) / f"{self.name}.{suffix}" for suffix in OUTPUT_SUFFIXES}

    def parsed_conditions(self) -> list[Condition]:
        return [parse_condition(c) for c in self.conditions or ()]


# ------------------------------------------------------------------------------ audio
def reverb_rir(t60_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path, then Gaussian noise decaying by 60 dB in
    ``t60_s`` (from 1 ms on), scaled to a direct-to-reverberant ratio of :data:`REVERB_DRR_DB`."""
    n = int(round(1.2 * t60_s * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-3.0 * math.log(10.0) * t / t60_s)  # 10^(-3 t / T60): -60 dB at T60
    tail[: int(round(0.001 * sample_rate))] = 0.0
    tail *= math.sqrt(10 ** (-REVERB_DRR_DB / 10) / np.sum(tail**2))
    tail[0] = 1.0
    return tail


def make_audio(opts: EvaluateOptions, sample_rate: int) -> tuple[list[np.ndarray], list[list[np.ndarray]], list[dict]]:
    """``(clean, inputs, meta)``: held-out clean clips at 65 dB SPL, per condition the inputs (speech
    at 65 dB SPL; callers scale both to each level), and each example's talker, sentences and T60.

    An input depends only on ``(seed, condition, example)``, not on the other options.
    """

    cfg = CorpusConfig(sample_rate=int(sample_rate), seconds=float(opts.seconds), speech_level_db_spl=(65.0, 65.0),
                       noise_probability=0.0)
    corpus = SyntheticCorpus(HELDOUT_SPLIT, cfg, seed=int(opts.seed), size=int(opts.examples))
    examples = [corpus[i] for i in range(len(corpus))]
    clean = [np.asarray(e.clean, np.float32) for e in examples]
    meta = [{k: e.meta[k] for k in ("voice", "variant", "sentences")} for e in examples]
    cache = SpeechCache()

    def speak(text: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
        return cache.speech(text, voice, variant, rate, pitch, int(sample_rate))

    speak = language_consistent(HELDOUT_SPLIT, speak)
    sentences, pool = split_sentences(HELDOUT_SPLIT), SPLIT_VOICES[HELDOUT_SPLIT]
    inputs: list[list[np.ndarray]] = []
    for ci, cond in enumerate(opts.parsed_conditions()):
        row = []
        for i, c in enumerate(clean):
            # Streams of their own: (seed, 3, condition key, example) for noise, (seed, 4, example) for the room.
            if cond.kind == "quiet":
                row.append(c.copy())
            elif cond.kind == "reverb":
                rng = np.random.default_rng([int(opts.seed), 4, i])
                t60 = float(rng.uniform(*REVERB_T60_S))
                meta[i]["t60_s"] = t60
                wet = np.convolve(c.astype(np.float64), reverb_rir(t60, int(sample_rate), rng))[: len(c)]
                row.append(np.asarray(DEFAULT_CALIBRATION.set_level(wet, 65.0), np.float32))
            else:
                key = int.from_bytes(hashlib.sha256(cond.label.encode()).digest()[:4], "little")
                rng = np.random.default_rng([int(opts.seed), 3, key, i])
                noise = make_noise(cond.kind, len(c), rng, int(sample_rate), sentences=sentences, pool=pool,
                                   speak=speak)
                row.append(np.asarray(mix_at_snr(c, noise, float(cond.snr_db)), np.float32))
        inputs.append(row)
    return clean, inputs, meta


# ------------------------------------------------------------------------------ devices
def _load_student(path: Path) -> Any:
    try:
        return load_compensator(path)
    except CompensatorError as e:
        raise EvaluateError(f"--student: {e}") from None


def _match_bundles(paths: Sequence[Path], audiograms: Mapping[str, Any]) -> dict[str, Any]:
    """``{preset: Bundle}`` for the given bundles, each matched to the preset with its audiogram."""

    found: dict[str, Any] = {}
    for path in paths:
        try:
            b = load_bundle(path)
        except BundleError as e:
            raise EvaluateError(f"--bundle: {e}") from None
        m = b.manifest
        if not m.audiogram:
            raise EvaluateError(f"{path}: the bundle has no audiogram, so it matches no preset")
        thr = np.asarray(m.audiogram["thresholds_db_hl"], np.float64)
        names = [p for p, a in audiograms.items() if np.allclose(thr, a.as_array(), atol=1e-6)]
        if not names:
            raise EvaluateError(f"{path}: its audiogram {m.audiogram.get('name')!r} ({', '.join(f'{v:g}' for v in thr)} "
                                f"dB HL) is none of --presets ({', '.join(audiograms)})")
        if names[0] in found:
            raise EvaluateError(f"{path}: a second --bundle for the {names[0]} audiogram")
        found[names[0]] = b
    if len({int(b.manifest.sample_rate) for b in found.values()}) > 1:
        raise EvaluateError("--bundle: the bundles run at different sample rates")
    return found


def _export(student_path: Path, audiogram: Any, target: str, out_dir: Path) -> Any:
    # lazy: the export pulls TensorFlow (seconds to import); `toolchain --help` builds this command's parser
    from toolchain.export.pipeline import ExportError, ExportOptions, export_bundle

    try:
        board = resolve_target(target)
        return export_bundle(ExportOptions(board=board, audiogram=audiogram, out_dir=out_dir,
                                           checkpoint=Path(student_path), overwrite=True)).bundle
    except (BoardError, ExportError) as e:
        raise EvaluateError(f"exporting the device bundle for {audiogram.name}: {e}") from None


# ------------------------------------------------------------------------------ scoring
def _stats(values: Sequence[float]) -> dict[str, Any]:
    v = np.asarray(values, np.float64)
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(np.mean(v)), "std": sd, "sem": sd / math.sqrt(len(v)), "n": int(len(v)),
            "per_example": [float(x) for x in v]}


class _Scorer:
    """Runs :func:`toolchain.audio.clarity.score_pair` in this process or in ``jobs`` worker processes.

    Up to :data:`MAX_IN_FLIGHT` tasks wait (each holds two signals, ~0.3 MB for 2 s), so the main
    process runs ahead: it exports the next audiogram's bundle while the workers score this one.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = int(jobs)
        self.results: dict[Any, tuple[float, float]] = {}
        self._pending: set[Future] = set()
        self._pool = None
        if self.jobs > 1:
            # spawn: the parent holds TensorFlow/torch from the export, which must not be forked.
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, task: tuple) -> None:
        if self._pool is None:
            key, hp, hq = score_pair(task)
            self.results[key] = (hp, hq)
            return
        self._pending.add(self._pool.submit(score_pair, task))
        while len(self._pending) >= max(3 * self.jobs, MAX_IN_FLIGHT):
            self._collect(FIRST_COMPLETED)

    def _collect(self, how: str) -> None:
        done, self._pending = wait(self._pending, return_when=how)
        for f in done:
            key, hp, hq = f.result()
            self.results[key] = (hp, hq)

    def finish(self) -> None:
        if self._pending:
            self._collect("ALL_COMPLETED")
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _check(key: str, text: str, value: float | None, bound: float, op: str, detail: Any = None,
           reason: str | None = None) -> dict[str, Any]:
    """A target check with the value, the bound and the shortfall (how far the value is from passing)."""
    if value is None:
        return {"key": key, "target": text, "value": None, "bound": bound, "op": op, "pass": None,
                "shortfall": None, "reason": reason or "not measured", "detail": detail}
    ok = value >= bound if op == "ge" else value <= bound
    shortfall = 0.0 if ok else abs(value - bound)
    return {"key": key, "target": text, "value": float(value), "bound": bound, "op": op, "pass": bool(ok),
            "shortfall": float(shortfall), "detail": detail}


def _pooled(rows: Iterable[Mapping[str, Any]], metric: str, system: str) -> list[float]:
    return [v for r in rows for v in r[metric][system]["per_example"]]


def target_checks(rows: Sequence[Mapping[str, Any]], devices: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Issue 16's targets on the evaluated cells, HASPI unless stated: quiet, per audiogram, device >=
    best classic - 0.01; noise and reverberation pooled, device >= best classic + 0.05; no cell
    below unprocessed by more than 0.02; HASQI pooled >= NAL-R's; no device sample above the
    bundle's output limit; algorithmic latency <= 1.5 ms."""
    checks = []
    presets = list(dict.fromkeys(r["audiogram"] for r in rows))
    quiet = [r for r in rows if r["condition"] == "quiet"]
    for p in presets:
        mine = [r for r in quiet if r["audiogram"] == p]
        if not mine:
            continue
        classic = {s: float(np.mean(_pooled(mine, "haspi", s))) for s in CLASSIC}
        best = max(classic, key=classic.get)
        value = float(np.mean(_pooled(mine, "haspi", "device"))) - classic[best]
        checks.append(_check(f"quiet_{p}", f"quiet, {p}: HASPI device >= best classic ({LABELS[best]}) - 0.01",
                             value, QUIET_MARGIN, "ge", {"best_classic": best, **classic}))
    noisy = [r for r in rows if r["condition"] != "quiet"]
    if noisy:
        classic = {s: float(np.mean(_pooled(noisy, "haspi", s))) for s in CLASSIC}
        best = max(classic, key=classic.get)
        value = float(np.mean(_pooled(noisy, "haspi", "device"))) - classic[best]
        checks.append(_check("noise_reverb", f"noise and reverberation pooled: HASPI device >= best classic "
                             f"({LABELS[best]}) + 0.05", value, NOISE_MARGIN, "ge", {"best_classic": best, **classic}))
    else:
        checks.append(_check("noise_reverb", "noise and reverberation pooled: HASPI device >= best classic + 0.05",
                             None, NOISE_MARGIN, "ge", reason="no noisy or reverberant condition evaluated"))
    diffs = {f"{r['audiogram']} | {r['level_db_spl']:g} dB | {r['condition']}":
             r["haspi"]["device"]["mean"] - r["haspi"]["unprocessed"]["mean"] for r in rows}
    worst = min(diffs, key=diffs.get)
    checks.append(_check("no_harm", f"every cell: HASPI device >= unprocessed - 0.02 (worst: {worst})",
                         diffs[worst], CELL_MARGIN, "ge",
                         {"worst_cell": worst, "cells_below": sorted(k for k, v in diffs.items() if v < CELL_MARGIN)}))
    value = float(np.mean(_pooled(rows, "hasqi", "device")) - np.mean(_pooled(rows, "hasqi", "nal-r")))
    checks.append(_check("hasqi", "HASQI pooled: device >= NAL-R", value, 0.0, "ge"))
    peaks = {p: d["peak"] for p, d in devices.items()}
    over = {p: d["peak"] - d["output_limit"] for p, d in devices.items()}
    worst_p = max(over, key=over.get)
    checks.append(_check("output_limit", f"device output <= the bundle's limit (peak - limit, worst: {worst_p})",
                         over[worst_p], 0.0, "le", {"peak": peaks, "limit": {p: d["output_limit"] for p, d in devices.items()}}))
    lat = {p: d["algorithmic_latency_ms"] for p, d in devices.items()}
    worst_l = max(lat, key=lat.get)
    checks.append(_check("latency", f"algorithmic latency <= 1.5 ms (ms, worst: {worst_l})", lat[worst_l],
                         MAX_LATENCY_MS, "le", lat))
    return checks


def format_check(c: Mapping[str, Any]) -> str:
    """``PASS|FAIL|n/a  <target>: value V, target >= B, shortfall S`` (issue 17: never a bare difference)."""
    verdict = "n/a" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
    if c["value"] is None:
        return f"{verdict}  {c['target']}: {c.get('reason') or 'not measured'}"
    sign = ">=" if c["op"] == "ge" else "<="
    return f"{verdict}  {c['target']}: value {c['value']:+.3f}, target {sign} {c['bound']:+.3f}, shortfall {c['shortfall']:.3f}"


# ------------------------------------------------------------------------------ the run
def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise EvaluateError(f"{out}: exists and is not a directory")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise EvaluateError(f"{out}: cannot write the evaluation there ({probe} is not a writable directory)")


def _noop(stage: str, done: int, total: int) -> None:
    pass


def _summaries(rows: Sequence[Mapping[str, Any]], presets: Sequence[str], conditions: Sequence[str]
               ) -> list[dict[str, Any]]:
    """Pooled means: per audiogram (all cells, quiet, noise + reverb), per condition, and overall."""
    groups: list[tuple[str, str, list]] = []
    for p in presets:
        mine = [r for r in rows if r["audiogram"] == p]
        groups += [(p, "all conditions", mine), (p, "quiet", [r for r in mine if r["condition"] == "quiet"]),
                   (p, "noise + reverb", [r for r in mine if r["condition"] != "quiet"])]
    for c in conditions:
        groups.append(("all audiograms", c, [r for r in rows if r["condition"] == c]))
    groups += [("all audiograms", "noise + reverb", [r for r in rows if r["condition"] != "quiet"]),
               ("all audiograms", "all conditions", list(rows))]
    return [{"audiogram": a, "condition": c, **{m: {s: _stats(_pooled(g, m, s)) for s in SYSTEMS} for m in METRICS}}
            for a, c, g in groups if g]


def run_evaluation(opts: EvaluateOptions, *, progress: Progress = _noop) -> dict[str, Any]:
    """Score every system, write ``<out>/<name>.{json,md,png}``, return the JSON dict."""

    t0 = time.perf_counter()
    timings: dict[str, float] = {"export_s": 0.0, "audio_s": 0.0, "processing_s": 0.0, "scoring_s": 0.0}
    out = Path(opts.out)
    _check_out_dir(out)
    haspi_v2, _, why = clarity_tools()
    if haspi_v2 is None:
        raise EvaluateError(f"HASPI v2 and HASQI v2 need pyclarity ({why})")
    # Every input is checked before the first progress report, so a mistake is the only line on stderr.
    audiograms = {p: Audiogram.preset(p) for p in opts.presets or ()}
    bundles = _match_bundles(opts.bundles, audiograms)
    student = None
    if len(bundles) < len(audiograms):
        student = _load_student(Path(opts.student))
    sr = int(next(iter(bundles.values())).manifest.sample_rate) if bundles else int(student.sample_rate)
    if student is not None and int(student.sample_rate) != sr:
        raise EvaluateError(f"--student runs at {student.sample_rate} Hz, the bundles at {sr} Hz")

    conditions = opts.parsed_conditions()
    levels = [float(v) for v in opts.levels or ()]
    progress("synthesising held-out speech and noise", 0, 0)
    ta = time.perf_counter()
    clean, inputs, meta = make_audio(opts, sr)
    timings["audio_s"] += time.perf_counter() - ta
    total = len(audiograms) * len(levels) * len(conditions) * len(clean) * len(SYSTEMS)
    level1 = haspi_level1(DEFAULT_CALIBRATION)
    max_lag = int(round(ALIGN_MAX_LAG_S * sr))
    scorer = _Scorer(opts.jobs)
    cells: list[dict[str, Any]] = []
    devices: dict[str, Any] = {}
    processors = {"nal-r": nalr, "nal-r+wdrc": nalr_wdrc}
    done = 0
    with tempfile.TemporaryDirectory(prefix="hx-evaluate-") as tmp:
        try:
            for preset, audiogram in audiograms.items():
                thr = audiogram.as_array()
                bundle = bundles.get(preset)
                exported = bundle is None
                if exported:
                    progress(f"exporting the device bundle for {preset}", done, total)
                    te = time.perf_counter()
                    where = Path(opts.export_dir) / preset if opts.export_dir is not None else Path(tmp) / preset
                    bundle = _export(Path(student.path), audiogram, opts.target, where)
                    timings["export_s"] += time.perf_counter() - te
                engine = Engine(bundle, backend="litert")
                limit = float(engine.output_limit)
                m = bundle.manifest
                dev = {"bundle": str(bundle.path) if not exported or opts.export_dir is not None else None,
                       "exported_for_this_run": exported, "default_graph": m.default_graph, "backend": "litert",
                       "output_limit": limit, "block": int(m.block), "model": m.model,
                       "algorithmic_latency_ms": float(m.algorithmic_latency_ms), "peak": 0.0, "limiter_samples": 0}
                for level in levels:
                    gain = float(10 ** ((level - 65.0) / 20))
                    for ci, cond in enumerate(conditions):
                        progress(f"{preset}, {level:g} dB SPL, {cond.label}", done, total)
                        cell = {"audiogram": preset, "thresholds_db_hl": list(audiogram.thresholds_db_hl),
                                "level_db_spl": level, "condition": cond.label, "peak": {}, "output_level_db_spl": {},
                                "limited_samples": {s: 0 for s in SYSTEMS}}
                        peaks: dict[str, list[float]] = {s: [] for s in SYSTEMS}
                        out_levels: dict[str, list[float]] = {s: [] for s in SYSTEMS}
                        for i, x0 in enumerate(inputs[ci]):
                            x = (x0 * gain).astype(np.float32)
                            ref = (clean[i] * gain).astype(np.float32)
                            tp = time.perf_counter()
                            for s in SYSTEMS:
                                if s == "device":
                                    y = engine.run(x)
                                    cell["limited_samples"][s] += int(engine.stats()["limiter_samples"])
                                else:
                                    y = x if s == "unprocessed" else processors[s](x, thr, sr)
                                    y, n_limited, _ = Limiter(limit, sr).process(np.asarray(y, np.float32))
                                    cell["limited_samples"][s] += int(n_limited)
                                y = np.asarray(y, np.float32)
                                peaks[s].append(float(np.max(np.abs(y))))
                                out_levels[s].append(float(DEFAULT_CALIBRATION.level_db_spl(y)))
                                y_aligned, _ = align(ref, y, max_lag)
                                key = (preset, level, cond.label, i, s)
                                timings["processing_s"] += time.perf_counter() - tp
                                ts = time.perf_counter()
                                scorer.submit((key, ref, y_aligned, sr, tuple(thr), level1,
                                               opts.seed * 1_000_003 + i))
                                timings["scoring_s"] += time.perf_counter() - ts
                                tp = time.perf_counter()
                                done += 1
                                progress(f"{preset}, {level:g} dB SPL, {cond.label}", done, total)
                        cell["peak"] = {s: max(v) for s, v in peaks.items()}
                        cell["output_level_db_spl"] = {s: float(np.mean(v)) for s, v in out_levels.items()}
                        dev["peak"] = max(dev["peak"], cell["peak"]["device"])
                        dev["limiter_samples"] += cell["limited_samples"]["device"]
                        cells.append(cell)
                devices[preset] = dev
            progress("waiting for the last scores", done, total)
            ts = time.perf_counter()
            scorer.finish()
            timings["scoring_s"] += time.perf_counter() - ts
        finally:
            scorer.finish()

    rows = []
    for cell in cells:
        n = len(clean)
        for mi, metric in enumerate(METRICS):
            cell[metric] = {s: _stats([scorer.results[(cell["audiogram"], cell["level_db_spl"], cell["condition"], i, s)][mi]
                                       for i in range(n)]) for s in SYSTEMS}
        rows.append(cell)
    labels = [c.label for c in conditions]
    result: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "options": _jsonable(asdict(opts)),
        "calibration": {"full_scale_sine_db_spl": DEFAULT_CALIBRATION.full_scale_sine_db_spl,
                        "level1_db_spl": level1},
        "data": {"split": "heldout", "examples": len(clean), "seconds": float(opts.seconds or 0), "sample_rate": sr,
                 "levels_db_spl": levels, "conditions": labels, "audiograms": {p: list(a.thresholds_db_hl)
                                                                              for p, a in audiograms.items()},
                 "talkers": meta},
        "systems": {s: LABELS[s] for s in SYSTEMS},
        "devices": devices,
        "student": None if student is None else str(student.path),
        "rows": rows,
        "pooled": _summaries(rows, list(audiograms), labels),
        "targets": target_checks(rows, devices),
        "scores_computed": 2 * len(scorer.results),
        "jobs": opts.jobs,
        "notes": [
            "HASPI v2 and HASQI v2 (pyclarity 0.9): reference = the dry clean speech at the speech level into a normal "
            "ear; processed = each system's output through the audiogram; level1 = dB SPL of RMS 1.0 from "
            "toolchain.audio.levels; the ear models' noise is seeded per example (the same draw for every system).",
            "HASPI's envelope filter runs by FFT (toolchain.audio.clarity.fast_envelope_filter): the same scores, half "
            "the CPU time.",
            "Every output passes the device output limiter: inside the Engine for the device, runtime.engine.Limiter at "
            "the bundle's output_limit for the others.",
            "NAL-R: minimum-phase 220-tap FIR of the NAL-R gains (toolchain.fitting.prescription), causal. NAL-R + WDRC: "
            "CAMFIT-fitted 8-band compressor (toolchain.fitting.wdrc: ratios of gainrule_camfit_compr, threshold at the "
            "speech minima, 0 dB at 65 dB SPL speech, attack 5 ms, release 50 ms), then the NAL-R FIR.",
            f"Outputs are aligned to the reference by the lag (0..{ALIGN_MAX_LAG_S * 1000:g} ms) of maximum correlation "
            "before scoring.",
            f"Reverberation: direct path + Gaussian noise decaying 60 dB in T60 (drawn in {REVERB_T60_S[0]:g}-"
            f"{REVERB_T60_S[1]:g} s per example, seeded), direct-to-reverberant ratio {REVERB_DRR_DB:g} dB; the HASPI "
            "reference is the dry speech.",
            "Held-out speech: toolchain.audio.data split 'heldout' (de, fr, es, it, nl espeak-ng voices, variants and "
            "sentences that no training, calibration or validation split uses); babble talkers from the same split.",
            "Cells: mean ± standard error over examples; pooled rows and targets: means over every example of the "
            "cells they pool.",
        ],
    }
    timings = {k: round(v, 1) for k, v in timings.items()}
    result["timings"] = timings
    result["elapsed_seconds"] = round(time.perf_counter() - t0, 1)
    progress("writing the evaluation", done, total)
    paths = opts.output_paths()
    write_outputs(result, paths)
    result["outputs"] = {k: str(v) for k, v in paths.items()}
    return result


# ------------------------------------------------------------------------------ outputs
def _mean(stat: Mapping[str, Any] | None) -> str:
    return "—" if stat is None else f"{stat['mean']:.3f}"


def _cell(stat: Mapping[str, Any] | None) -> str:
    return "—" if stat is None else f"{stat['mean']:.3f} ± {stat['sem']:.3f}"


def pooled_table(result: Mapping[str, Any]) -> list[str]:
    """Markdown rows: pooled HASPI and HASQI per audiogram / condition group, one column per system and metric."""
    head = ["audiogram", "conditions", *[f"{METRIC_LABELS[m]} {LABELS[s]}" for m in METRICS for s in SYSTEMS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for r in result["pooled"]:
        lines.append("| " + " | ".join([r["audiogram"], r["condition"], *[_mean(r[m][s]) for m in METRICS
                                                                           for s in SYSTEMS]]) + " |")
    return lines


def cell_table(result: Mapping[str, Any]) -> list[str]:
    """Markdown rows: one per audiogram x level x condition (mean ± s.e. over examples)."""
    head = ["audiogram", "level", "condition", *[f"{METRIC_LABELS[m]} {LABELS[s]}" for m in METRICS for s in SYSTEMS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for r in result["rows"]:
        lines.append("| " + " | ".join([r["audiogram"], f"{r['level_db_spl']:g} dB SPL", r["condition"],
                                        *[_cell(r[m][s]) for m in METRICS for s in SYSTEMS]]) + " |")
    return lines


def render_markdown(result: Mapping[str, Any]) -> str:
    """Pooled table, targets, per-cell table, devices, notes and the wall time."""
    d = result["data"]
    t = result.get("timings", {})
    lines = [
        "# Hearing benefit: HASPI v2 and HASQI v2",
        "",
        f"{d['examples']} held-out example(s) ({d['split']} split) of {d['seconds']:g} s at {d['sample_rate']} Hz per "
        f"cell; speech at {', '.join(f'{v:g}' for v in d['levels_db_spl'])} dB SPL; conditions: "
        f"{', '.join(d['conditions'])}; audiograms: {', '.join(d['audiograms'])}.",
        "",
        f"Wall time {result['elapsed_seconds']:.0f} s ({result['scores_computed']} scores, {result['jobs']} job(s); "
        f"export {t.get('export_s', 0):.0f} s, audio {t.get('audio_s', 0):.0f} s, processing "
        f"{t.get('processing_s', 0):.0f} s, scoring {t.get('scoring_s', 0):.0f} s).",
        "",
        "## Pooled",
        "",
        *pooled_table(result),
        "",
        "## Targets (issue 16)",
        "",
        *[f"- {format_check(c)}" for c in result["targets"]],
        "",
        "## Per cell (mean ± s.e. over examples)",
        "",
        *cell_table(result),
        "",
        "## Devices",
        "",
    ]
    for p, dv in result["devices"].items():
        lines.append(f"- {p}: {dv['model']}, graph {dv['default_graph']} on {dv['backend']}, "
                     f"{'exported for this run' if dv['exported_for_this_run'] else dv['bundle']}; latency "
                     f"{dv['algorithmic_latency_ms']:.2f} ms; output limit {dv['output_limit']:g}, peak {dv['peak']:.3f}, "
                     f"limiter active on {dv['limiter_samples']} samples")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


def render_plot(result: Mapping[str, Any]) -> bytes:
    """Two panels of grouped bars (HASPI v2, mean ± s.e.): per condition and per audiogram, pooled."""
    # lazy: matplotlib is needed only when a plot is drawn
    from matplotlib.figure import Figure

    colours = {"unprocessed": "#bbbbbb", "nal-r": "#4477aa", "nal-r+wdrc": "#228833", "device": "#ee6677"}
    pooled = result["pooled"]
    by_cond = [r for r in pooled if r["audiogram"] == "all audiograms"]
    by_aud = [r for r in pooled if r["audiogram"] != "all audiograms" and r["condition"] == "all conditions"]
    fig = Figure(figsize=(max(9.0, 0.9 * (len(by_cond) + len(by_aud)) + 3), 4.0))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(1, len(by_cond)), max(1, len(by_aud))]})
    width = 0.8 / len(SYSTEMS)
    for ax, group, names, title in ((axes[0], by_cond, [r["condition"] for r in by_cond], "per condition"),
                                    (axes[1], by_aud, [r["audiogram"] for r in by_aud], "per audiogram")):
        x = np.arange(len(group))
        for k, s in enumerate(SYSTEMS):
            ax.bar(x + (k - (len(SYSTEMS) - 1) / 2) * width, [r["haspi"][s]["mean"] for r in group], width,
                   yerr=[r["haspi"][s]["sem"] for r in group], capsize=2, label=LABELS[s], color=colours[s])
        ax.set_xticks(x, [n.replace(" dB SNR", "\ndB SNR").replace(" T60", "\nT60") for n in names], fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"HASPI v2 {title}, pooled", fontsize=9)
    axes[0].set_ylabel("HASPI v2")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, ncol=len(SYSTEMS), loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def _jsonable(v: Any) -> Any:
    """JSON-safe copy: paths → str, tuples → lists, numpy → Python, NaN/inf → None."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def write_outputs(result: Mapping[str, Any], paths: Mapping[str, Path]) -> None:
    """The ``json``, ``md`` and ``png`` outputs at ``paths``, each written atomically."""
    out = Path(paths["json"]).parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(_jsonable(result), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
        with atomic_write(paths["json"], "w", encoding="utf-8") as fh:
            fh.write(payload)
        with atomic_write(paths["md"], "w", encoding="utf-8") as fh:
            fh.write(render_markdown(result))
        with atomic_write(paths["png"]) as fh:
            fh.write(render_plot(result))
    except OSError as e:
        raise EvaluateError(f"{out}: cannot write the evaluation ({e.strerror or e})") from None


# ------------------------------------------------------------------------------ CLI
def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _levels(text: str) -> tuple[float, ...]:
    out = []
    for item in _names(text):
        try:
            out.append(float(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected speech levels in dB SPL, got {item!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected speech levels in dB SPL, got {text!r}")
    return tuple(out)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``toolchain evaluate`` (for the CLI's sub-parser)."""
    parser.add_argument("--bundle", metavar="DIR", type=Path, action="append", default=[],
                        help="exported device bundle (repeatable; each is used for the preset with its audiogram; "
                             "presets without one get a bundle exported from --student for this run)")
    parser.add_argument("--student", metavar="CKPT", type=Path, default=None,
                        help="compensator to export for presets without a --bundle (default: the shipped "
                             "toolchain/assets/seanet_default.pt)")
    parser.add_argument("--grid", choices=tuple(GRIDS), default="default",
                        help="grid size: tiny (1 audiogram, 65 dB, quiet + babble, 1 s), default (6 audiograms, "
                             "55/65/75 dB, 5 conditions, 1 example of 2 s: ~20 min on 2 cores), full (9 audiograms, "
                             "6 examples of 3 s: hours); the options below override its values")
    parser.add_argument("--presets", metavar="A,B,..", type=_names, default=None,
                        help="audiograms: presets or standard audiograms N1..N7, S1..S3")
    parser.add_argument("--levels", metavar="L,L,..", type=_levels, default=None, help="speech levels in dB SPL")
    parser.add_argument("--conditions", metavar="C,C,..", type=_names, default=None,
                        help="quiet, reverb, or KIND:SNR with KIND babble, speech-shaped, pink or white "
                             f"(default grid: {','.join(DEFAULT_CONDITIONS)})")
    parser.add_argument("--examples", type=int, default=None, help="held-out examples per cell")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per example")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes for the scores (default 1; each takes a core)")
    parser.add_argument("--target", default="rpi", help="board for bundles exported here (default rpi)")
    parser.add_argument("--export-dir", metavar="DIR", type=Path,
                        help="keep the bundles exported for this run here (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0, help="speech, noise and room seed (default 0)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("out/evaluation"),
                        help="where evaluation.json, evaluation.md and evaluation.png go (default out/evaluation)")
    parser.add_argument("--name", metavar="STEM", default="evaluation",
                        help="file name stem of the three outputs (default evaluation)")
    parser.add_argument("--fail-on-target", action="store_true", help="exit with status 1 when a target fails")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def options_from_args(args: argparse.Namespace) -> EvaluateOptions:
    return EvaluateOptions(student=args.student if args.student is not None else _default_student(),
                           bundles=tuple(args.bundle), grid=args.grid,
                           presets=tuple(args.presets) if args.presets is not None else None,
                           levels=tuple(args.levels) if args.levels is not None else None,
                           conditions=tuple(args.conditions) if args.conditions is not None else None,
                           examples=args.examples, seconds=args.seconds, target=args.target, seed=args.seed,
                           jobs=args.jobs, out=args.out, name=args.name, export_dir=args.export_dir)


def evaluate_main(args: argparse.Namespace) -> int:
    """``toolchain evaluate``: progress on stderr; the pooled table and targets on stdout. Raises :class:`EvaluateError`."""
    opts = options_from_args(args)
    # lazy: rich is needed only for the progress display
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    stages: list[str] = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=bool(args.quiet) or not console.is_terminal) as prog:
        task = prog.add_task("evaluate", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            prog.update(task, description=stage, completed=done, total=total or None)
            # A log file or pipe gets no live bar: one line per stage instead.
            if not args.quiet and not console.is_terminal and (not stages or stages[-1] != stage):
                stages.append(stage)
                print(f"evaluate: {stage} ({done}/{total} outputs)" if total else f"evaluate: {stage}",
                      file=sys.stderr, flush=True)

        result = run_evaluation(opts, progress=progress)
    print("\n".join(pooled_table(result)))
    for c in result["targets"]:
        print(format_check(c))
    print(f"wrote {', '.join(result['outputs'].values())} in {result['elapsed_seconds']:.0f} s")
    failed = any(c["pass"] is False for c in result["targets"])
    return 1 if (failed and args.fail_on_target) else 0


__all__ = ["CLASSIC", "Condition", "EVALUATION_FORMAT", "EvaluateError", "EvaluateOptions", "GRIDS", "LABELS",
           "METRICS", "SYSTEMS", "add_evaluate_arguments", "cell_table", "evaluate_main", "format_check", "make_audio",
           "parse_condition", "pooled_table", "render_markdown", "render_plot", "reverb_rir", "run_evaluation",
           "target_checks", "write_outputs"]
