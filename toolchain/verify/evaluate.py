"""``toolchain evaluate``: HASPI v2 of the compensators against the classic fitting, in quiet and noise.

For each audiogram preset and listening condition (quiet, or speech in noise at an SNR), the
held-out synthetic speech (the corpus' ``test`` split: sentences and voices that neither training
nor int8 calibration saw) goes through five systems, and pyclarity's HASPI v2 scores each output:

==============  =================================================================================
unprocessed     the input as it reaches the ear
NAL-R           pyclarity's NAL-R prescription for the audiogram (linear-phase FIR, delay removed)
teacher fp32    ``--teacher`` checkpoint fitted to the audiogram, torch fp32 (optional)
student fp32    ``--student`` checkpoint fitted to the audiogram, torch fp32
student int8    the exported bundle for that audiogram through ``runtime.engine.Engine`` (litert)
==============  =================================================================================

Levels: speech is set to ``--level`` dB SPL (65, conversational) through
:mod:`toolchain.audio.levels`; noise is added at the condition's SNR on top of it. HASPI's
reference is the clean speech at that level, heard by a normal ear; the processed signal is
heard through the impaired audiogram (HASPI's own ear model); ``level1`` comes from the same
calibration (:func:`toolchain.verify.hearing.haspi_level1`).

Output limit: the int8 bundle's engine limits every sample to the bundle's ``output_limit``
(the device's maximum power output). The other systems' outputs go through the same limiter
(``runtime.engine.Limiter``, same limit and release), so no system gains from a level the device
could not deliver.

Audiograms: the compensators are audiogram-conditioned, so each preset is a separate fitting;
the int8 bundle is per audiogram, so every preset gets its own bundle: a ``--bundle`` whose
manifest audiogram equals the preset's thresholds, or else one exported from the student for it
(``toolchain.export.pipeline``, about 30 s each, kept under ``--export-dir`` when given).

Targets (issue 6), on the ``moderate-sloping`` preset, means over every example and condition:
student int8 ≥ NAL-R + 0.05 and ≥ unprocessed + 0.15; student fp32 − int8 ≤ 0.01; teacher −
student fp32 ≤ 0.03.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from runtime.atomic import atomic_write

EVALUATION_FORMAT = "hx-evaluate/1"
SYSTEMS: tuple[str, ...] = ("unprocessed", "nal-r", "teacher-fp32", "student-fp32", "student-int8")
LABELS = {"unprocessed": "unprocessed", "nal-r": "NAL-R", "teacher-fp32": "teacher fp32",
          "student-fp32": "student fp32", "student-int8": "student int8"}
DEFAULT_PRESETS: tuple[str, ...] = ("moderate-sloping", "mild-flat", "severe-sloping")
TARGET_PRESET = "moderate-sloping"
OUTPUT_SUFFIXES = ("json", "md", "png")
ALIGN_MAX_LAG_S = 0.01  # the compensators add at most a block (1 ms); NAL-R's delay is removed

# (key, description, minuend, subtrahend, "ge"/"le", bound): the target holds when
# mean(minuend) − mean(subtrahend) compares to bound as stated.
TARGETS: tuple[tuple[str, str, str, str, str, float], ...] = (
    ("int8_vs_nalr", "student int8 ≥ NAL-R + 0.05", "student-int8", "nal-r", "ge", 0.05),
    ("int8_vs_unprocessed", "student int8 ≥ unprocessed + 0.15", "student-int8", "unprocessed", "ge", 0.15),
    ("int8_drop", "student fp32 − student int8 ≤ 0.01", "student-fp32", "student-int8", "le", 0.01),
    ("student_vs_teacher", "teacher fp32 − student fp32 ≤ 0.03", "teacher-fp32", "student-fp32", "le", 0.03),
)

Progress = Callable[[str, int, int], None]  # (stage, HASPI scores done, HASPI scores in all)
Runner = Callable[[np.ndarray], np.ndarray]


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
class EvaluateOptions:
    """Everything ``toolchain evaluate`` needs; files are checked by :func:`run_evaluation`."""

    student: Path = field(default_factory=_default_student)
    teacher: Path | None = None
    bundles: tuple[Path, ...] = ()
    presets: tuple[str, ...] = DEFAULT_PRESETS
    examples: int = 8
    seconds: float = 2.0
    snrs: tuple[float | None, ...] = (None, 5.0)   # None: quiet
    noise: str = "babble"
    level_db_spl: float = 65.0
    target: str = "rpi"
    seed: int = 0
    out: Path = Path("out/evaluation")
    name: str = "evaluation"                       # the outputs are <out>/<name>.{json,md,png}
    export_dir: Path | None = None

    def __post_init__(self) -> None:
        from toolchain.audio.audiogram import PRESETS
        from toolchain.audio.data import NOISE_TYPES

        if not self.presets:
            raise EvaluateError("--presets needs at least one audiogram preset")
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise EvaluateError(f"unknown audiogram preset {unknown[0]!r}; valid presets: {', '.join(sorted(PRESETS))}")
        if len(set(self.presets)) != len(self.presets):
            raise EvaluateError(f"--presets lists a preset twice: {','.join(self.presets)}")
        if not _is_int(self.examples) or not 1 <= self.examples <= 500:
            raise EvaluateError(f"--examples must be a whole number in 1..500, got {self.examples!r}")
        if not _is_finite(self.seconds) or not 0.5 <= self.seconds <= 30:
            raise EvaluateError(f"--seconds must be in 0.5..30, got {self.seconds!r}")
        if not self.snrs:
            raise EvaluateError("--snr needs at least one condition (quiet or an SNR in dB)")
        for s in self.snrs:
            if s is not None and (not _is_finite(s) or not -20 <= s <= 40):
                raise EvaluateError(f"--snr values must be 'quiet' or a number of dB in -20..40, got {s!r}")
        if len(set(self.snrs)) != len(self.snrs):
            raise EvaluateError("--snr lists a condition twice")
        if self.noise not in NOISE_TYPES:
            raise EvaluateError(f"unknown noise {self.noise!r}; expected one of {', '.join(NOISE_TYPES)}")
        if not _is_finite(self.level_db_spl) or not 30 <= self.level_db_spl <= 100:
            raise EvaluateError(f"--level must be in 30..100 dB SPL, got {self.level_db_spl!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise EvaluateError(f"--seed must be a whole number >= 0, got {self.seed!r}")
        if not isinstance(self.name, str) or not self.name or self.name.startswith(".") or "/" in self.name \
                or os.sep in self.name:
            raise EvaluateError(f"--name must be a plain file name stem, got {self.name!r}")

    def output_paths(self) -> dict[str, Path]:
        """``{"json": ..., "md": ..., "png": ...}`` under ``out``."""
        return {suffix: Path(self.out) / f"{self.name}.{suffix}" for suffix in OUTPUT_SUFFIXES}

    def conditions(self) -> list[dict[str, Any]]:
        """``[{"label", "snr_db", "noise"}]`` in the order given."""
        return [{"label": "quiet", "snr_db": None, "noise": None} if s is None else
                {"label": f"{self.noise} {float(s):g} dB SNR", "snr_db": float(s), "noise": self.noise}
                for s in self.snrs]


# ------------------------------------------------------------------------------ audio
def make_audio(opts: EvaluateOptions, sample_rate: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """``(clean, inputs)``: the held-out clean clips at ``opts.level_db_spl`` and, per condition, the inputs.

    The same noise is used for every audiogram and system (paired comparison); it depends only on
    ``(seed, condition index, example index)``.
    """
    from toolchain.audio.data import (SPLIT_VOICES, CorpusConfig, SpeechCache, SyntheticCorpus, make_noise,
                                      mix_at_snr, split_sentences)

    level = float(opts.level_db_spl)
    cfg = CorpusConfig(sample_rate=int(sample_rate), seconds=float(opts.seconds), speech_level_db_spl=(level, level),
                       noise_probability=0.0)
    corpus = SyntheticCorpus("test", cfg, seed=int(opts.seed), size=int(opts.examples))
    clean = [np.asarray(corpus[i].clean, np.float32) for i in range(len(corpus))]
    cache = SpeechCache()

    def speak(text: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
        return cache.speech(text, voice, variant, rate, pitch, int(sample_rate))

    sentences, pool = split_sentences("test"), SPLIT_VOICES["test"]
    inputs: list[list[np.ndarray]] = []
    for ci, snr in enumerate(opts.snrs):
        if snr is None:
            inputs.append([c.copy() for c in clean])
            continue
        row = []
        for i, c in enumerate(clean):
            # A stream of its own (the 3rd key separates it from the corpus' own generators).
            rng = np.random.default_rng([int(opts.seed), 3, ci, i])
            noise = make_noise(opts.noise, len(c), rng, int(sample_rate), sentences=sentences, pool=pool, speak=speak)
            row.append(np.asarray(mix_at_snr(c, noise, float(snr)), np.float32))
        inputs.append(row)
    return clean, inputs


# ------------------------------------------------------------------------------ models and bundles
def _load(path: Path, what: str) -> Any:
    from toolchain.models.registry import CompensatorError, load_compensator

    try:
        return load_compensator(path)
    except CompensatorError as e:
        raise EvaluateError(f"--{what}: {e}") from None


def _same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _match_bundles(paths: Sequence[Path], audiograms: Mapping[str, Any], student: Any) -> dict[str, Any]:
    """``{preset: Bundle}`` for the given bundles, each matched to the preset with its audiogram."""
    from runtime.bundle import BundleError, load_bundle

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
        if int(m.sample_rate) != int(student.sample_rate):
            raise EvaluateError(f"{path}: the bundle runs at {m.sample_rate} Hz, the student at {student.sample_rate} Hz")
        cfg = m.extra.get("model_config") if isinstance(m.extra, Mapping) else None
        if isinstance(cfg, Mapping) and student.config and not _same_config(cfg, student.config):
            raise EvaluateError(f"{path}: the bundle was exported from a different architecture than --student "
                                f"{student.path} (model_config differs)")
        found[names[0]] = b
    return found


def _export(student: Any, audiogram: Any, target: str, out_dir: Path) -> Any:
    from runtime.boards import BoardError, resolve_target
    from toolchain.export.pipeline import ExportError, ExportOptions, export_bundle

    try:
        board = resolve_target(target)
        return export_bundle(ExportOptions(board=board, audiogram=audiogram, out_dir=out_dir,
                                           checkpoint=Path(student.path), overwrite=True)).bundle
    except (BoardError, ExportError) as e:
        raise EvaluateError(f"exporting the int8 bundle for {audiogram.name}: {e}") from None


# ------------------------------------------------------------------------------ scoring
def _stats(values: Sequence[float]) -> dict[str, Any]:
    v = np.asarray(values, np.float64)
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(np.mean(v)), "std": sd, "sem": sd / math.sqrt(len(v)), "n": int(len(v)),
            "per_example": [float(x) for x in v]}


class _Scorer:
    """HASPI v2 with a memo: identical outputs (e.g. a teacher that is the student) are scored once.

    HASPI's internal threshold noise is seeded per example (the same for every system and audiogram
    on it: common random numbers, so differences between systems are not noise draws).
    """

    def __init__(self, haspi_v2: Any, sample_rate: int, level1: float, seed: int) -> None:
        self.haspi_v2, self.sample_rate, self.level1 = haspi_v2, int(sample_rate), float(level1)
        self.seed = int(seed)
        self._memo: dict[tuple[Any, ...], float] = {}
        self.computed = 0

    def __call__(self, ref_id: int, reference: np.ndarray, processed: np.ndarray, thresholds: Sequence[float]) -> float:
        from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ
        from toolchain.verify.hearing import haspi_score

        key = (ref_id, tuple(float(t) for t in thresholds),
               hashlib.sha256(np.ascontiguousarray(processed, np.float32).tobytes()).hexdigest())
        if key not in self._memo:
            self._memo[key] = haspi_score(self.haspi_v2, reference, processed, self.sample_rate, thresholds,
                                          AUDIOGRAM_FREQS_HZ, self.level1, seed=self.seed * 1_000_003 + ref_id)
            self.computed += 1
        return self._memo[key]


def _target_checks(rows: Sequence[Mapping[str, Any]], preset: str) -> dict[str, Any]:
    """The issue's targets on ``preset``, pooled over every example of every condition."""
    mine = [r for r in rows if r["audiogram"] == preset]
    if not mine:
        return {"audiogram": preset, "status": "not evaluated", "reason": f"{preset} is not in --presets", "checks": []}
    pooled: dict[str, list[float]] = {}
    for r in mine:
        for s, v in r["haspi"].items():
            if v is not None:
                pooled.setdefault(s, []).extend(v["per_example"])
    checks = []
    for key, text, a, b, op, bound in TARGETS:
        if a not in pooled or b not in pooled:
            missing = LABELS[a] if a not in pooled else LABELS[b]
            checks.append({"key": key, "target": text, "value": None, "bound": bound, "op": op, "pass": None,
                           "reason": f"no {missing} scores"})
            continue
        value = float(np.mean(pooled[a]) - np.mean(pooled[b]))
        ok = value >= bound if op == "ge" else value <= bound
        per_condition = {r["condition"]: float(r["haspi"][a]["mean"] - r["haspi"][b]["mean"]) for r in mine}
        checks.append({"key": key, "target": text, "value": value, "bound": bound, "op": op, "pass": bool(ok),
                       "per_condition": per_condition})
    decided = [c["pass"] for c in checks if c["pass"] is not None]
    return {"audiogram": preset, "status": "evaluated", "examples_pooled": len(pooled.get("student-int8", [])),
            "checks": checks, "all_pass": bool(decided) and all(decided) and len(decided) == len(checks)}


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


def _score_all(opts: EvaluateOptions, student: Any, teacher: Any, bundles: Mapping[str, Any],
               audiograms: Mapping[str, Any], conditions: Sequence[Mapping[str, Any]], clean: Sequence[np.ndarray],
               inputs: Sequence[Sequence[np.ndarray]], systems: Sequence[str], scorer: _Scorer, NALR: Any,
               progress: Progress, total: int) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Every system's HASPI per audiogram × condition × example: ``(rows, int8 info, scores done)``."""
    from runtime.engine import Engine, Limiter
    from toolchain.audio.levels import DEFAULT_CALIBRATION
    from toolchain.verify.hearing import align, nalr_process
    from toolchain.verify.metrics import snr_db

    sr = int(student.sample_rate)
    max_lag = int(round(ALIGN_MAX_LAG_S * sr))
    rows: list[dict[str, Any]] = []
    int8_info: dict[str, Any] = {}
    done = 0
    with tempfile.TemporaryDirectory(prefix="hx-evaluate-") as tmp:
        for preset, audiogram in audiograms.items():
            thr = audiogram.as_array()
            bundle = bundles.get(preset)
            exported = bundle is None
            if exported:
                progress(f"exporting the int8 bundle for {preset}", done, total)
                where = Path(opts.export_dir) / preset if opts.export_dir is not None else Path(tmp) / preset
                bundle = _export(student, audiogram, opts.target, where)
            engine = Engine(bundle, backend="litert")
            limit = float(engine.output_limit)
            runners: dict[str, Runner] = {
                "unprocessed": lambda x: np.asarray(x, np.float32),
                "nal-r": lambda x, t=thr: nalr_process(NALR, x, sr, t),
                "student-fp32": student.fitted(thr),
                "student-int8": engine.run,  # the engine limits on its own
            }
            if teacher is not None:
                runners["teacher-fp32"] = teacher.fitted(thr)
            int8_pairs: list[tuple[np.ndarray, np.ndarray]] = []
            for ci, cond in enumerate(conditions):
                progress(f"{preset}, {cond['label']}", done, total)
                scores: dict[str, list[float]] = {s: [] for s in systems}
                levels: dict[str, list[float]] = {s: [] for s in systems}
                limited: dict[str, int] = {s: 0 for s in systems}
                for i, x in enumerate(inputs[ci]):
                    outs: dict[str, np.ndarray] = {}
                    for s in systems:
                        y = np.asarray(runners[s](x), np.float32)
                        if s != "student-int8":
                            y, n_limited, _ = Limiter(limit, sr).process(y)
                            limited[s] += int(n_limited)
                        else:
                            limited[s] += int(engine.stats()["limiter_samples"])
                        outs[s] = y
                        levels[s].append(float(DEFAULT_CALIBRATION.level_db_spl(y)))
                        y_aligned, _ = align(clean[i], y, max_lag)
                        scores[s].append(scorer(i, clean[i], y_aligned, thr))
                        done += 1
                        progress(f"{preset}, {cond['label']}", done, total)
                    int8_pairs.append((outs["student-fp32"], outs["student-int8"]))
                rows.append({
                    "audiogram": preset, "thresholds_db_hl": list(audiogram.thresholds_db_hl),
                    "condition": cond["label"], "snr_db": cond["snr_db"], "noise": cond["noise"],
                    "haspi": {s: (_stats(scores[s]) if s in scores else None) for s in SYSTEMS},
                    "output_level_db_spl": {s: float(np.mean(levels[s])) for s in systems},
                    "limited_samples": limited,
                })
            int8_info[preset] = {
                "bundle": str(bundle.path) if not exported or opts.export_dir is not None else None,
                "exported_for_this_run": exported, "output_limit": limit, "block": int(bundle.manifest.block),
                "manifest_int8_vs_fp32_snr_db": bundle.manifest.metrics.get("int8_vs_fp32_snr_db"),
                "int8_vs_student_fp32_snr_db": snr_db(np.concatenate([a for a, _ in int8_pairs]),
                                                      np.concatenate([b for _, b in int8_pairs])),
            }

    return rows, int8_info, done


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread while the compensators run: a 2 s clip through a small conv net is too little
    work to share, and on a busy machine the idle threads' spinning made it 40x slower (measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_evaluation(opts: EvaluateOptions, *, progress: Progress = _noop) -> dict[str, Any]:
    """Score every system, write ``<out>/<name>.{json,md,png}``, return the JSON dict."""
    from toolchain.audio.audiogram import Audiogram
    from toolchain.audio.levels import DEFAULT_CALIBRATION
    from toolchain.verify.hearing import NALR_TAPS, clarity_tools, haspi_level1

    t0 = time.perf_counter()
    out = Path(opts.out)
    _check_out_dir(out)
    haspi_v2, NALR, why = clarity_tools()
    if haspi_v2 is None or NALR is None:
        raise EvaluateError(f"HASPI v2 and NAL-R need pyclarity ({why})")
    # Every input is checked before the first progress report, so a mistake is the only line on stderr.
    student = _load(Path(opts.student), "student")
    teacher = _load(Path(opts.teacher), "teacher") if opts.teacher is not None else None
    if teacher is not None and teacher.sample_rate != student.sample_rate:
        raise EvaluateError(f"--teacher runs at {teacher.sample_rate} Hz, --student at {student.sample_rate} Hz")
    sr = int(student.sample_rate)
    audiograms = {p: Audiogram.preset(p) for p in opts.presets}
    bundles = _match_bundles(opts.bundles, audiograms, student)

    conditions = opts.conditions()
    progress("synthesising held-out speech and noise", 0, 0)
    clean, inputs = make_audio(opts, sr)
    systems = [s for s in SYSTEMS if s != "teacher-fp32" or teacher is not None]
    total = len(opts.presets) * len(conditions) * len(clean) * len(systems)
    scorer = _Scorer(haspi_v2, sr, haspi_level1(DEFAULT_CALIBRATION), opts.seed)
    with _one_torch_thread():
        rows, int8_info, done = _score_all(opts, student, teacher, bundles, audiograms, conditions, clean, inputs,
                                           systems, scorer, NALR, progress, total)

    means = []
    for preset in opts.presets:
        mine = [r for r in rows if r["audiogram"] == preset]
        means.append({"audiogram": preset, "condition": "all", "haspi": {
            s: (_stats([v for r in mine for v in r["haspi"][s]["per_example"]]) if s in systems else None)
            for s in SYSTEMS}})

    def describe(c: Any) -> dict[str, Any] | None:
        if c is None:
            return None
        return {"path": str(c.path), "kind": c.kind, "parameters": c.parameters(), "sample_rate": c.sample_rate,
                "sha256": hashlib.sha256(Path(c.path).read_bytes()).hexdigest()}

    models = {"student": describe(student), "teacher": describe(teacher)}
    models["teacher_is_student"] = bool(models["teacher"] and models["teacher"]["sha256"] == models["student"]["sha256"])
    result: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "options": _jsonable(asdict(opts)),
        "calibration": {"full_scale_sine_db_spl": DEFAULT_CALIBRATION.full_scale_sine_db_spl,
                        "haspi_level1_db_spl": scorer.level1, "speech_level_db_spl": float(opts.level_db_spl)},
        "data": {"split": "test", "examples": len(clean), "seconds": float(opts.seconds), "sample_rate": sr,
                 "conditions": conditions},
        "models": models,
        "int8": int8_info,
        "systems": {s: LABELS[s] for s in SYSTEMS},
        "evaluated_systems": systems,
        "rows": rows,
        "means": means,
        "targets": _target_checks(rows, TARGET_PRESET),
        "haspi_scores_computed": scorer.computed,
        "haspi_scores_reused": done - scorer.computed,
        "notes": [
            "HASPI v2 (pyclarity): reference = clean speech at the speech level into a normal ear; processed = each "
            "system's output through the audiogram; level1 = dB SPL of RMS 1.0 from toolchain.audio.levels. "
            "HASPI's internal threshold noise is seeded per example (the same draw for every system on it).",
            "Every output passes the device output limiter (runtime.engine.Limiter at the bundle's output_limit): "
            "inside the Engine for student int8, applied after the fact to the other systems.",
            f"NAL-R: pyclarity NALR, {NALR_TAPS + 1}-tap linear-phase FIR, its {NALR_TAPS // 2}-sample delay removed.",
            f"Outputs are aligned to the reference by the lag (0..{ALIGN_MAX_LAG_S * 1000:g} ms) of maximum correlation "
            "before scoring.",
            "Cells: mean ± standard error over examples; targets: means pooled over every example and condition.",
        ],
    }
    result["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
    progress("writing the evaluation", done, total)
    paths = opts.output_paths()
    write_outputs(result, paths)
    result["outputs"] = {k: str(v) for k, v in paths.items()}
    return result


# ------------------------------------------------------------------------------ outputs
def _cell(stat: Mapping[str, Any] | None) -> str:
    return "—" if stat is None else f"{stat['mean']:.3f} ± {stat['sem']:.3f}"


def render_markdown(result: Mapping[str, Any]) -> str:
    """The table (rows: condition × audiogram, then the per-audiogram means), the targets and notes."""
    d = result["data"]
    cal = result["calibration"]
    head = ["condition", "audiogram", *[LABELS[s] for s in SYSTEMS]]
    lines = [
        "# HASPI v2 evaluation",
        "",
        f"{d['examples']} held-out examples ({d['split']} split) of {d['seconds']:g} s at {d['sample_rate']} Hz, "
        f"speech at {cal['speech_level_db_spl']:g} dB SPL; student `{result['models']['student']['path']}`"
        + (f", teacher `{result['models']['teacher']['path']}`" if result["models"]["teacher"] else ", no teacher")
        + (" (the same checkpoint as the student)" if result["models"]["teacher_is_student"] else "") + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * len(SYSTEMS)) + "|",
    ]
    for r in [*result["rows"], *result["means"]]:
        cond = "**mean (all conditions)**" if r["condition"] == "all" else r["condition"]
        lines.append("| " + " | ".join([cond, r["audiogram"], *[_cell(r["haspi"][s]) for s in SYSTEMS]]) + " |")
    t = result["targets"]
    lines += ["", f"## Targets ({t['audiogram']}, pooled over every example and condition)", ""]
    if t["status"] != "evaluated":
        lines.append(f"not evaluated: {t['reason']}")
    for c in t["checks"]:
        verdict = "n/a" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        value = c.get("reason") if c["value"] is None else f"{c['value']:+.3f}"
        lines.append(f"- **{verdict}** {c['target']}: {value}")
    lines += ["", "## int8 bundles", ""]
    for preset, info in result["int8"].items():
        lines.append(f"- {preset}: int8 vs student fp32 {info['int8_vs_student_fp32_snr_db']:.1f} dB SNR on these "
                     f"inputs; {'exported for this run' if info['exported_for_this_run'] else info['bundle']}; "
                     f"output limit {info['output_limit']:g}")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    lines += ["", f"{result['haspi_scores_computed']} HASPI scores computed ({result['haspi_scores_reused']} reused for "
              f"identical outputs) in {result['elapsed_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def render_plot(result: Mapping[str, Any]) -> bytes:
    """Grouped bars: one group per condition × audiogram, one bar per system, ± standard error."""
    from matplotlib.figure import Figure

    rows = result["rows"]
    systems = result["evaluated_systems"]
    colours = {"unprocessed": "#bbbbbb", "nal-r": "#4477aa", "teacher-fp32": "#228833", "student-fp32": "#ccbb44",
               "student-int8": "#ee6677"}
    fig = Figure(figsize=(max(6.0, 1.1 * len(rows) + 2), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(systems)
    x = np.arange(len(rows))
    for k, s in enumerate(systems):
        means = [r["haspi"][s]["mean"] for r in rows]
        sems = [r["haspi"][s]["sem"] for r in rows]
        ax.bar(x + (k - (len(systems) - 1) / 2) * width, means, width, yerr=sems, capsize=2, label=LABELS[s],
               color=colours[s])
    ax.set_xticks(x, [f"{r['condition']}\n{r['audiogram']}" for r in rows], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("HASPI v2")
    ax.legend(fontsize=7, ncol=len(systems), loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    d = result["data"]
    ax.set_title(f"HASPI v2, {d['examples']} held-out examples per bar (mean ± s.e.)", fontsize=9)
    fig.tight_layout()
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
def _snrs(text: str) -> tuple[float | None, ...]:
    out: list[float | None] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.lower() == "quiet":
            out.append(None)
            continue
        try:
            v = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'quiet' or an SNR in dB, got {item!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite SNR in dB, got {item!r}")
        out.append(v)
    if not out:
        raise argparse.ArgumentTypeError(f"expected 'quiet' and/or SNRs in dB, got {text!r}")
    return tuple(out)


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``toolchain evaluate`` (for the CLI's sub-parser)."""
    parser.add_argument("--student", metavar="CKPT", type=Path, default=None,
                        help="student compensator checkpoint (default: the shipped toolchain/assets/seanet_default.pt)")
    parser.add_argument("--teacher", metavar="CKPT", type=Path,
                        help="teacher checkpoint (any registered kind); without it the teacher column is empty")
    parser.add_argument("--bundle", metavar="DIR", type=Path, action="append", default=[],
                        help="exported int8 bundle of the student (repeatable; each is used for the preset with its "
                             "audiogram; presets without one get a bundle exported for this run, ~30 s each)")
    parser.add_argument("--presets", metavar="A,B,..", type=_names, default=DEFAULT_PRESETS,
                        help=f"audiogram presets (default {','.join(DEFAULT_PRESETS)})")
    parser.add_argument("--examples", type=int, default=8, help="held-out speech examples per condition (default 8)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per example (default 2)")
    parser.add_argument("--snr", metavar="C,C,..", type=_snrs, default=(None, 5.0),
                        help="listening conditions: 'quiet' and/or SNRs in dB (default quiet,5)")
    parser.add_argument("--noise", default="babble", help="noise for the SNR conditions: babble (default), "
                        "speech-shaped, pink, white, brown, hum")
    parser.add_argument("--level", type=float, default=65.0, help="speech level in dB SPL (default 65)")
    parser.add_argument("--target", default="rpi", help="board for bundles exported here (default rpi)")
    parser.add_argument("--export-dir", metavar="DIR", type=Path,
                        help="keep the bundles exported for this run here (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0, help="corpus and noise seed (default 0)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=Path("out/evaluation"),
                        help="where evaluation.json, evaluation.md and evaluation.png go (default out/evaluation)")
    parser.add_argument("--name", metavar="STEM", default="evaluation",
                        help="file name stem of the three outputs (default evaluation)")
    parser.add_argument("--fail-on-target", action="store_true", help="exit with status 1 when a target fails")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def options_from_args(args: argparse.Namespace) -> EvaluateOptions:
    return EvaluateOptions(student=args.student if args.student is not None else _default_student(),
                           teacher=args.teacher, bundles=tuple(args.bundle), presets=tuple(args.presets),
                           examples=args.examples, seconds=args.seconds, snrs=tuple(args.snr), noise=args.noise,
                           level_db_spl=args.level, target=args.target, seed=args.seed, out=args.out,
                           name=args.name, export_dir=args.export_dir)


def evaluate_main(args: argparse.Namespace) -> int:
    """``toolchain evaluate``: progress on stderr, the table and targets on stdout. Raises :class:`EvaluateError`."""
    opts = options_from_args(args)
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
                print(f"evaluate: {stage} ({done}/{total} HASPI scores)" if total else f"evaluate: {stage}",
                      file=sys.stderr, flush=True)

        result = run_evaluation(opts, progress=progress)
    md = render_markdown(result)
    table = [line for line in md.splitlines() if line.startswith("|")]
    print("\n".join(table))
    for c in result["targets"]["checks"]:
        verdict = "n/a" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        print(f"{verdict}  {c['target']}: " + (c.get("reason", "") if c["value"] is None else f"{c['value']:+.3f}"))
    print(f"wrote {', '.join(result['outputs'].values())} in {result['elapsed_seconds']:.0f} s")
    failed = any(c["pass"] is False for c in result["targets"]["checks"])
    return 1 if (failed and args.fail_on_target) else 0


__all__ = ["EVALUATION_FORMAT", "EvaluateError", "EvaluateOptions", "SYSTEMS", "TARGETS", "add_evaluate_arguments",
           "evaluate_main", "make_audio", "render_markdown", "render_plot", "run_evaluation", "write_outputs"]
