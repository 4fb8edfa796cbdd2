"""``toolchain verify BUNDLE``: one JSON + HTML report on a bundle's full-precision checks.

Sections (DESIGN.md, "Verification on the full-precision path"):

* **int8 vs fp32** — the manifest's figure and a re-measurement: held-out synthetic speech
  through the bundle's int8 and fp32 TFLite graphs (``runtime.engine.Engine``), SNR in dB;
* **latency** — the manifest's algorithmic latency, an impulse re-measurement through the int8
  graph, and the board's budget;
* **HASPI v2** and **NAL-R** — pyclarity's ``haspi_v2`` and ``NALR`` when ``clarity`` imports;
  otherwise reported as "not available (pyclarity not installed)", never invented;
* **midbrain fidelity** — ICNet / ψ-ICNet (:mod:`toolchain.verify.neural`) in fp32, CUDA when
  present, with the seconds of compute per second of audio. The project cannot download
  weights: without ``--icnet-weights`` / ``--psi-icnet`` the section says it did not run (and
  times a randomly initialised ICNet, labelled as such, for the speed figure only). The
  impaired-listener comparison needs a ψ-ICNet checkpoint *and* ψ for the listener: ``--psi``
  (and ``--psi-normal``), or the audiogram → ψ map stored with the user's checkpoint — a
  user-supplied map, not from the seeds (seed 000 learns ψ per animal from recordings). Without
  either it is reported as "not run" with what is missing, never as a number.

Each section carries a ``verdict`` against its baseline (:mod:`toolchain.verify.verdicts`): red
("HARM") where the device does worse than its baseline, "not judged" where there are no numbers.

Any user mistake — a missing or malformed weights file, a ``config.yaml`` that does not match
the architecture, a bad bundle, an unwritable output — raises :class:`VerifyError` (a
``ValueError``) whose ``str()`` is one line; the CLI prints it and exits with status 2.
The CLI owner wires :func:`add_verify_arguments` and :func:`verify_main` in as ``toolchain verify``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtime.atomic import OutputPathError, atomic_write, check_output_path
from runtime.backends import open_backend
from runtime.backends.base import BackendError
from runtime.bundle import BundleError, load_bundle
from runtime.engine import Engine
from runtime.harness.measure import impulse_latency
from toolchain.audio.clarity import (
    NALR_TAPS,
    NOT_INSTALLED,  # noqa: F401  (the report's "not available" reason; read here too)
    clarity_tools,
    haspi_level1,
    haspi_score,
    nalr_process,
)
from toolchain.audio.clarity import align as _align
from toolchain.audio.data import CorpusConfig, SyntheticCorpus
from toolchain.verify.cochlear import cochlear_plots, cochlear_section
from toolchain.verify.cochlear import summary_line as cochlear_summary_line
from toolchain.verify.metrics import snr_db
from toolchain.verify.midbrain.icnet import ICNet, load_psi_icnet
from toolchain.verify.midbrain.icnet_keras_import import ICNetImportError, import_icnet
from toolchain.verify.neural import DEVICES, MidbrainModel, compare, psi_for_audiogram, select_device, time_model
from toolchain.verify.render import VERDICT_LABEL, draw_plots, fmt, overall, png, render_html
from toolchain.verify.verdicts import judge, self_noise_section

REPORT_FORMAT = "hx-verify-report/1"

Progress = Callable[[str], None]


class VerifyError(ValueError):
    """A user's mistake in ``toolchain verify``; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# ------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class VerifyOptions:
    """Everything ``toolchain verify`` needs; paths are checked by :func:`run_verify`."""

    bundle: Path
    icnet_weights: Path | None = None
    icnet_config: Path | None = None
    psi_icnet: Path | None = None
    psi: tuple[float, ...] | None = None
    psi_normal: tuple[float, ...] | None = None
    device: str = "auto"
    json_path: Path | None = None
    html_path: Path | None = None
    clips: int = 3
    seconds: float = 2.0
    level_db_spl: float = 65.0
    batch_frames: int = 4
    seed: int = 0
    timing_seconds: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.clips, bool) or not isinstance(self.clips, int) or not 1 <= self.clips <= 100:
            raise VerifyError(f"--clips must be an integer in 1..100, got {self.clips!r}")
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and 0.2 <= self.seconds <= 60):
            raise VerifyError(f"--seconds must be in 0.2..60, got {self.seconds!r}")
        if not (isinstance(self.level_db_spl, (int, float)) and 20 <= self.level_db_spl <= 110):
            raise VerifyError(f"--level must be in 20..110 dB SPL, got {self.level_db_spl!r}")
        if isinstance(self.batch_frames, bool) or not isinstance(self.batch_frames, int) or not 1 <= self.batch_frames <= 256:
            raise VerifyError(f"--batch-frames must be in 1..256, got {self.batch_frames!r}")

        if self.device not in DEVICES:
            raise VerifyError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")

    def outputs(self) -> tuple[Path, Path]:
        """JSON and HTML paths (default: beside the bundle, ``<bundle>.verify.json/.html``)."""
        b = Path(self.bundle)
        name = b.resolve().name or "bundle"
        return (Path(self.json_path) if self.json_path else b.parent / f"{name}.verify.json",
                Path(self.html_path) if self.html_path else b.parent / f"{name}.verify.html")


# ------------------------------------------------------------------------------ helpers
def _stderr_progress(stage: str) -> None:
    print(f"verify: {stage}", file=sys.stderr, flush=True)


def _finite(v: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy → Python."""
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, np.ndarray):
        return _finite(v.tolist())
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, Path):
        return str(v)
    return v


def _without_examples(v: Any) -> Any:
    """Copy without the ``examples`` arrays (plots only; too large for the JSON)."""
    if isinstance(v, dict):
        return {k: _without_examples(x) for k, x in v.items() if k != "examples"}
    return v


def _check_writable(path: Path, what: str) -> None:
    """Before minutes of work: the report path must be one the atomic writer will write (not a
    directory, device, FIFO or socket; a writable directory), else a one-line VerifyError."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise VerifyError(f"{path}: is a directory; --{what} needs a file name")
    if not parent.is_dir():
        raise VerifyError(f"{path}: cannot write the {what} report ({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VerifyError(f"{path}: cannot write the {what} report ({parent} is not writable)")
    try:
        check_output_path(path, what=f"{what} report")
    except OutputPathError as e:
        raise VerifyError(str(e)) from None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temp file in the same directory, fsync, then ``os.replace``."""
    p = Path(path)
    with atomic_write(p, "w", encoding="utf-8") as fh:
        fh.write(text)


# ------------------------------------------------------------------------------ models
@dataclass
class _Models:
    icnet: Any = None
    icnet_import: Any = None
    psi: Any = None
    psi_map: Any = None


def _load_models(opts: VerifyOptions) -> _Models:
    out = _Models()
    if opts.icnet_weights is not None:
        try:
            out.icnet, out.icnet_import = import_icnet(opts.icnet_weights, opts.icnet_config)
        except ICNetImportError as e:
            raise VerifyError(str(e)) from None
    elif opts.icnet_config is not None:
        raise VerifyError("--icnet-config needs --icnet-weights")
    if opts.psi_icnet is not None:
        p = Path(opts.psi_icnet)
        if not p.is_file():
            raise VerifyError(f"{p}: ψ-ICNet checkpoint not found")
        try:
            out.psi, out.psi_map = load_psi_icnet(p)
        except Exception as e:  # torch raises many types for a bad file
            first = str(e).splitlines()[0][:120] if str(e) else ""
            raise VerifyError(f"{p}: not a ψ-ICNet checkpoint ({type(e).__name__}: {first})") from None
        for name, vals in (("--psi", opts.psi), ("--psi-normal", opts.psi_normal)):
            if vals is not None and len(vals) != out.psi.config.n_psi:
                raise VerifyError(f"{name} has {len(vals)} values; the ψ-ICNet has {out.psi.config.n_psi} ψ parameters")
    elif opts.psi is not None or opts.psi_normal is not None:
        raise VerifyError("--psi / --psi-normal need --psi-icnet")
    return out


def _architecture(icnet: Any) -> dict[str, Any]:
    model = icnet if icnet is not None else ICNet()
    rows = [{"layer": n, "output_shape": list(s), "parameters": p} for n, s, p in model.layer_summary()]
    return {"layers": rows, "parameters": model.parameter_count(), "config": model.config.to_dict()}


# ------------------------------------------------------------------------------ the run
def _speech(bundle_rate: int, opts: VerifyOptions) -> list[np.ndarray]:
    cfg = CorpusConfig(sample_rate=int(bundle_rate), seconds=float(opts.seconds),
                       speech_level_db_spl=(float(opts.level_db_spl), float(opts.level_db_spl)), noise_probability=0.0)
    corpus = SyntheticCorpus("test", cfg, seed=int(opts.seed), size=int(opts.clips))
    return [corpus[i].clean.astype(np.float32) for i in range(len(corpus))]


def _engine_runner(bundle: Any, backend: str) -> Callable[[np.ndarray], np.ndarray]:
    engine = Engine(bundle, backend=backend)
    return lambda x: engine.run(np.asarray(x, np.float32))


def run_verify(opts: VerifyOptions, *, progress: Progress = _stderr_progress, bundle: Any = None,
               speech: Sequence[np.ndarray] | None = None, compensate: Callable[[np.ndarray], np.ndarray] | None = None,
               fp32: Callable[[np.ndarray], np.ndarray] | None = None,
               latency_probe: Callable[[], int] | None = None) -> dict[str, Any]:
    """Build the report, write JSON + HTML, return the report dict.

    The keyword arguments replace parts of the pipeline (for tests or other front ends): a
    ready ``bundle`` object, the clean ``speech`` clips, the int8 ``compensate`` and ``fp32``
    runners, the ``latency_probe``.
    """
    t_start = time.perf_counter()
    models = _load_models(opts)
    if bundle is None:
        try:
            bundle = load_bundle(opts.bundle)
        except BundleError as e:
            raise VerifyError(str(e)) from None
    json_path, html_path = opts.outputs()
    _check_writable(json_path, "json")
    _check_writable(html_path, "html")
    if os.path.abspath(json_path) == os.path.abspath(html_path):
        raise VerifyError(f"{json_path}: --json and --html name the same file")
    m = bundle.manifest
    fs = int(m.sample_rate)
    audiogram = dict(m.audiogram) if m.audiogram else None

    # lazy: torch takes seconds to import; only this path needs it
    import torch

    device, device_note = select_device(opts.device)

    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bundle": {"path": str(bundle.path), "model": m.model, "target": m.target, "sample_rate": fs,
                   "block": m.block, "audiogram": audiogram},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "device": {"requested": opts.device, "used": str(device), "note": device_note, "torch": torch.__version__,
                   "precision": "fp32"},
    }

    # ---------------------------------------------------------------- audio through the bundle
    progress("synthesising held-out speech")
    clean = [np.asarray(c, np.float32) for c in (speech if speech is not None else _speech(fs, opts))]
    if not clean:
        raise VerifyError("no speech clips to verify with")

    try:
        run_int8 = compensate or _engine_runner(bundle, "litert")
        run_fp32 = fp32 or _engine_runner(bundle, "litert-fp32")
    except (BackendError, ValueError) as e:
        raise VerifyError(f"{bundle.path}: cannot run the bundle ({' '.join(str(e).split())})") from None
    progress("running the int8 and fp32 graphs")
    y8 = [np.asarray(run_int8(x), np.float32) for x in clean]
    y32 = [np.asarray(run_fp32(x), np.float32) for x in clean]
    report["int8_vs_fp32"] = _int8_section(m, y8, y32, fs)
    report["latency"] = _latency_section(bundle, latency_probe)

    max_lag = int(min(0.01 * fs, 2 * m.algorithmic_latency_samples + m.block))
    compensated, lags = [], []
    for x, y in zip(clean, y8):
        a, lag = _align(x, y, max_lag)
        compensated.append(a)
        lags.append(lag)
    # The float graph, aligned the same way: HASPI of the device against it is the device-vs-fp32 verdict.
    float_graph = [_align(x, y, max_lag)[0] for x, y in zip(clean, y32)]

    # ---------------------------------------------------------------- pyclarity
    haspi_v2, NALR, why = clarity_tools()
    conditions: dict[str, list[np.ndarray]] = {"unprocessed": clean, "compensated": compensated}
    nalr_section: dict[str, Any]
    if NALR is None:
        nalr_section = {"status": "not available", "reason": why}
    elif audiogram is None:
        nalr_section = {"status": "not run", "reason": "the bundle has no audiogram"}
    else:
        progress("NAL-R (pyclarity)")
        conditions["nal-r"] = [nalr_process(NALR, x, fs, audiogram["thresholds_db_hl"], audiogram["frequencies_hz"])
                               for x in clean]
        nalr_section = {"status": "ok", "taps": NALR_TAPS + 1, "delay_removed_samples": NALR_TAPS // 2}
    report["nal_r"] = nalr_section
    report["haspi"] = _haspi_section(haspi_v2, why, audiogram, clean, {**conditions, "fp32": float_graph}, fs, progress)
    report["self_noise"] = self_noise_section(m.metrics, getattr(m, "default_graph", None))

    # ---------------------------------------------------------------- midbrain
    report["midbrain"] = _midbrain_section(opts, models, audiogram, clean, conditions, fs, device, progress, lags)
    report["cochlear"] = cochlear_section(audiogram, clean, conditions, fs, progress)
    judge(report)  # every section against its baseline (toolchain/verify/verdicts.py)
    report["elapsed_seconds"] = round(time.perf_counter() - t_start, 2)

    progress("writing the report")
    midbrain = report["midbrain"]
    data = _finite(_without_examples(report))
    write_text_atomic(json_path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    plots = draw_plots(data, clean, y8, y32, fs, midbrain) | cochlear_plots(report["cochlear"], png)
    write_text_atomic(html_path, render_html(data, plots))
    report = _without_examples(report)
    report["outputs"] = {"json": str(json_path), "html": str(html_path)}
    return report


def _int8_section(m: Any, y8: Sequence[np.ndarray], y32: Sequence[np.ndarray], fs: int) -> dict[str, Any]:
    per = [snr_db(b, a) for a, b in zip(y8, y32)]
    graph = getattr(m, "default_graph", "int8")
    key = "int16x8_vs_fp32_snr_db" if graph == "int16x8" else "int8_vs_fp32_snr_db"
    return {"status": "ok", "manifest_snr_db": m.metrics.get(key), "graph": graph,
            "measured_snr_db": snr_db(np.concatenate(y32), np.concatenate(y8)), "per_clip_snr_db": per,
            "test_seconds": float(sum(len(a) for a in y8) / fs),
            "what": f"held-out clean synthetic speech (test split) through the bundle's device graph ({graph}) vs its "
                    "fp32 TFLite graph (the manifest's figure is the exporter's own: that graph vs the torch model on "
                    "its held-out set)"}


def _latency_section(bundle: Any, probe: Callable[[], int] | None) -> dict[str, Any]:
    m = bundle.manifest
    extra = m.extra if isinstance(m.extra, Mapping) else {}
    board = extra.get("board") if isinstance(extra.get("board"), Mapping) else {}
    budget = board.get("latency_budget_ms")
    out: dict[str, Any] = {"status": "ok", "algorithmic_latency_samples": m.algorithmic_latency_samples,
                           "algorithmic_latency_ms": m.algorithmic_latency_ms,
                           "manifest_measured_samples": m.metrics.get("algorithmic_latency_measured_samples"),
                           "budget_ms": budget,
                           "within_budget": (m.algorithmic_latency_ms <= float(budget)) if isinstance(budget, (int, float)) else None}
    try:
        if probe is None:
            measured = impulse_latency(open_backend(bundle, "litert"))
        else:
            measured = probe()
        out["impulse_samples"] = int(measured)
        out["impulse_matches_manifest"] = int(measured) == int(m.algorithmic_latency_samples)
    except Exception as e:  # the manifest figure still stands; say why no re-measurement
        out["impulse_samples"] = None
        out["impulse_note"] = f"not re-measured ({type(e).__name__}: {' '.join(str(e).split())[:100]})"
    return out


def _haspi_section(haspi_v2: Any, why: str | None, audiogram: Mapping[str, Any] | None, clean: Sequence[np.ndarray],
                   conditions: Mapping[str, Sequence[np.ndarray]], fs: int, progress: Progress) -> dict[str, Any]:
    if haspi_v2 is None:
        return {"status": "not available", "reason": why}
    if audiogram is None:
        return {"status": "not run", "reason": "the bundle has no audiogram"}
    progress("HASPI v2 (pyclarity)")
    level1 = haspi_level1()
    scores: dict[str, Any] = {}
    for name, clips in conditions.items():
        # Seeded per clip (HASPI's threshold noise), so a re-run of the report gives the same scores.
        vals = [haspi_score(haspi_v2, x, y, fs, audiogram["thresholds_db_hl"], audiogram["frequencies_hz"], level1,
                            seed=k) for k, (x, y) in enumerate(zip(clean, clips))]
        scores[name] = {"mean": float(np.mean(vals)), "per_clip": vals}
    return {"status": "ok", "level1_db_spl": level1, "audiogram": audiogram.get("name"), "scores": scores,
            "what": "HASPI v2 (pyclarity) of each condition against the clean speech, for the bundle's audiogram"}


_NO_PSI_CHECKPOINT = ("no ψ-ICNet checkpoint (--psi-icnet FILE): there is no impaired midbrain model, so how much "
                      "of the hearing-loss gap the compensator closes was not measured")
_MAP_SOURCE = ("the checkpoint's audiogram → ψ map (user-supplied with the checkpoint; ψ-ICNet, Pellatt et al. "
               "2025, learns ψ per animal, not from audiograms)")


def _resolve_psi(opts: VerifyOptions, models: _Models, audiogram: Mapping[str, Any] | None
                 ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, str], str | None]:
    """ψ of the listener and of normal hearing: ``(psi_hi, psi_nh, sources, why_not)``.

    ``--psi`` / ``--psi-normal`` win; otherwise the user's audiogram → ψ map stored with the
    checkpoint, at the bundle's audiogram and at 0 dB HL. ``why_not`` names exactly what is
    missing when either ψ cannot be had (seed 000 learns ψ per animal; it gives no such map).
    """

    n_psi = models.psi.config.n_psi
    sources: dict[str, str] = {}
    missing: list[str] = []
    psi_hi = psi_nh = None
    if opts.psi is not None:
        psi_hi, sources["impaired"] = np.asarray(opts.psi, np.float32), "--psi"
    elif audiogram is None:
        missing.append("the bundle has no audiogram and no --psi was given")
    elif models.psi_map is None:
        missing.append("no --psi was given and the ψ-ICNet checkpoint has no audiogram → ψ map (a user-supplied map; "
                       "ψ-ICNet, Pellatt et al. 2025, learns ψ per animal, not from audiograms)")
    if opts.psi_normal is not None:
        psi_nh, sources["normal"] = np.asarray(opts.psi_normal, np.float32), "--psi-normal"
    elif models.psi_map is None:
        missing.append("no --psi-normal was given and the ψ-ICNet checkpoint has no audiogram → ψ map to evaluate at "
                       "0 dB HL")
    try:
        if psi_hi is None and not missing and audiogram is not None:
            psi_hi = psi_for_audiogram(models.psi_map, audiogram["thresholds_db_hl"], n_psi)
            sources["impaired"] = _MAP_SOURCE + " at the bundle's audiogram"
        if psi_nh is None and models.psi_map is not None:
            n = len(audiogram["thresholds_db_hl"]) if audiogram else 8
            psi_nh = psi_for_audiogram(models.psi_map, [0.0] * n, n_psi)
            sources["normal"] = _MAP_SOURCE + " at 0 dB HL"
    except ValueError as e:  # a map of the wrong shape
        missing.append(f"the checkpoint's audiogram → ψ map is unusable ({e})")
    if missing or psi_hi is None or psi_nh is None:
        what = "no ψ for this audiogram" if psi_hi is None else "no normal-hearing ψ for the reference"
        return None, None, sources, f"{what}: " + "; ".join(missing or ["ψ could not be determined"])
    return psi_hi, psi_nh, sources, None


def _midbrain_section(opts: VerifyOptions, models: _Models, audiogram: Mapping[str, Any] | None,
                      clean: Sequence[np.ndarray], conditions: Mapping[str, Sequence[np.ndarray]], fs: int,
                      device: Any, progress: Progress, lags: Sequence[int]) -> dict[str, Any]:
    # lazy: torch takes seconds to import; only this path needs it
    import torch

    sec: dict[str, Any] = {"alignment_lag_samples": list(lags)}
    if models.icnet is not None:  # the layer table of the weights given; random weights get none
        sec["architecture"] = _architecture(models.icnet)
    if models.icnet is None and models.psi is None:
        torch.manual_seed(opts.seed)
        random_net = ICNet()
        sec["status"] = "not run"
        sec["reason"] = ("no ICNet weights given (--icnet-weights FILE with its config.yaml) and no ψ-ICNet "
                         "checkpoint (--psi-icnet FILE); the project cannot download them, so no midbrain fidelity "
                         "numbers exist for this bundle")
        sec["comparisons"] = {"impaired": {"status": "not run", "reason": _NO_PSI_CHECKPOINT}}
        progress("timing ICNet (random weights, speed only)")
        timing = time_model(MidbrainModel("ICNet (random initialisation)", random_net), device,
                            seconds=opts.timing_seconds, batch_frames=opts.batch_frames, seed=opts.seed)
        timing["weights"] = "random initialisation: timing only, no fidelity numbers"
        sec["timing"] = timing
        return sec

    sec["status"] = "ok"
    sec["comparisons"] = {}
    notes = []
    if models.icnet_import is not None:
        ir = models.icnet_import
        sec["icnet_import"] = {"weights": ir.weights, "config": ir.config, "layout": ir.layout,
                               "graph_traced": ir.graph_traced, "parameters": ir.parameters, "mapping": ir.mapping}
    if models.psi is not None:
        psi_hi, psi_nh, sources, why = _resolve_psi(opts, models, audiogram)
        if psi_hi is None or psi_nh is None:
            sec["comparisons"]["impaired"] = {"status": "not run", "reason": why}
            notes.append(f"impaired comparison not run ({why.split(':', 1)[0]})")
        else:
            cond = lambda v: models.psi.condition(torch.as_tensor(v).reshape(1, -1))  # noqa: E731
            show = lambda v: [round(float(a), 3) for a in v]  # noqa: E731
            nh = MidbrainModel(f"ψ-ICNet, ψ(normal) = {show(psi_nh)}", models.psi, psi=cond(psi_nh))
            hi = MidbrainModel(f"ψ-ICNet, ψ(audiogram) = {show(psi_hi)}", models.psi, psi=cond(psi_hi))
            progress("ψ-ICNet: normal-hearing reference vs impaired model")
            c = compare(nh, hi, clean, conditions, fs, device, impaired=True, batch_frames=opts.batch_frames,
                        seed=opts.seed)
            d = c.to_dict()
            d["status"] = "ok"
            d["psi"] = {"impaired": show(psi_hi), "normal": show(psi_nh), "source": sources}
            d["what"] = ("impaired ψ-ICNet on each processed version vs normal-hearing ψ-ICNet on the clean speech: "
                         "how much of the hearing-loss gap the processing closes")
            d["examples"] = {k: v for k, v in c.examples.items()}
            sec["comparisons"]["impaired"] = d
    else:
        sec["comparisons"]["impaired"] = {"status": "not run", "reason": _NO_PSI_CHECKPOINT}
        notes.append("impaired comparison not run (no ψ-ICNet checkpoint)")
    if models.icnet is not None:
        progress("ICNet: normal-hearing model on processed vs clean speech")
        net = MidbrainModel(f"ICNet ({models.icnet.config.n_branches} branches, stationary time input 1 h)", models.icnet)
        c = compare(net, net, clean, conditions, fs, device, impaired=False, batch_frames=opts.batch_frames,
                    seed=opts.seed)
        d = c.to_dict()
        d["status"] = "ok"
        d["what"] = ("normal-hearing ICNet on each processed version vs on the clean speech: how the processing "
                     "changes a normal midbrain's response (not the impaired gap)")
        d["examples"] = {k: v for k, v in c.examples.items()}
        sec["comparisons"]["normal_hearing_icnet"] = d
    timings = [v.get("timing", {}).get("seconds_per_second") for v in sec["comparisons"].values() if isinstance(v, dict)]
    timings = [t for t in timings if isinstance(t, float)]
    if timings:
        sec["timing"] = {"seconds_per_second": float(np.mean(timings)), "device": str(device),
                         "batch_frames": opts.batch_frames, "weights": "given"}
    if notes:
        ran = any(isinstance(v, dict) and v.get("status") == "ok" for v in sec["comparisons"].values())
        sec["status"] = "partial" if ran else "not run"
        sec["reason"] = "; ".join(notes)
    return sec


# ------------------------------------------------------------------------------ CLI
def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected finite comma-separated numbers, got {text!r}")
    return vals


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``toolchain verify`` (for the CLI owner's sub-parser)."""
    parser.add_argument("bundle", help="bundle directory (from `toolchain export`)")
    parser.add_argument("--icnet-weights", metavar="F", type=Path,
                        help="ICNet's released Keras weights (DNN/model_weights.hdf5 or a Keras 3 .weights.h5); "
                             "without it the midbrain check does not run")
    parser.add_argument("--icnet-config", metavar="F", type=Path,
                        help="ICNet's config.yaml (default: config.yaml beside the weights)")
    parser.add_argument("--psi-icnet", metavar="F", type=Path,
                        help="ψ-ICNet checkpoint (toolchain.verify.midbrain.icnet.save_psi_icnet): the impaired midbrain model")
    parser.add_argument("--psi", metavar="V,V,..", type=_floats,
                        help="ψ means for the listener (default: the audiogram → ψ map stored with the "
                             "checkpoint, if its owner supplied one); a leading minus needs --psi=-1,2,..")
    parser.add_argument("--psi-normal", metavar="V,V,..", type=_floats,
                        help="ψ means of normal hearing (default: that map at 0 dB HL)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where ICNet runs (default: CUDA when present, else the CPU)")
    parser.add_argument("--json", metavar="F", type=Path, help="JSON report (default BUNDLE.verify.json beside the bundle)")
    parser.add_argument("--html", metavar="F", type=Path, help="HTML report (default BUNDLE.verify.html)")
    parser.add_argument("--clips", type=int, default=3, help="held-out speech clips (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per clip (default 2)")
    parser.add_argument("--level", type=float, default=65.0, help="speech level in dB SPL (default 65)")
    parser.add_argument("--batch-frames", type=int, default=4,
                        help="ICNet frames (8192 samples + context) per batch (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="corpus and sampling seed (default 0)")


def options_from_args(args: argparse.Namespace) -> VerifyOptions:
    return VerifyOptions(bundle=Path(args.bundle), icnet_weights=args.icnet_weights, icnet_config=args.icnet_config,
                         psi_icnet=args.psi_icnet, psi=args.psi, psi_normal=args.psi_normal, device=args.device,
                         json_path=args.json, html_path=args.html, clips=args.clips, seconds=args.seconds,
                         level_db_spl=args.level, batch_frames=args.batch_frames, seed=args.seed)


def _verdict_line(name: str, sec: Mapping[str, Any]) -> str:
    """``name: HARM — text`` for a judged section (the terminal's view of the verdict)."""
    v = sec.get("verdict") or {}
    label = VERDICT_LABEL.get(str(v.get("level")), ("not judged", "off"))[0]
    return f"  verdict ({name}): {label} — {v.get('text', '')}"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The terminal summary: the figures of each section, each followed by its verdict."""
    s, lat, h, mb = report["int8_vs_fp32"], report["latency"], report["haspi"], report["midbrain"]
    lines = [f"device vs fp32: {s['measured_snr_db']:.2f} dB SNR measured ({fmt(s['manifest_snr_db'], 2)} dB in the "
             "manifest)", _verdict_line("device vs fp32", s),
             f"latency: {lat['algorithmic_latency_ms']:.2f} ms algorithmic (impulse {fmt(lat.get('impulse_samples'))} "
             f"samples, budget {fmt(lat.get('budget_ms'), 2)} ms)", _verdict_line("latency vs budget", lat)]
    if h.get("status") == "ok":
        lines.append("HASPI v2: " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in h["scores"].items()))
    else:
        lines.append(f"HASPI v2: {h['status']} ({h.get('reason')})")
    lines.append(_verdict_line("device vs unprocessed", h))
    n = report["nal_r"]
    lines.append(f"NAL-R: {'scored' if n.get('status') == 'ok' else n['status']}"
                 + (f" ({n.get('reason')})" if n.get("reason") else ""))
    lines.append(_verdict_line("device vs NAL-R", n))
    sn = report.get("self_noise") or {}
    if sn:
        lines.append(f"self-noise: equivalent input noise {fmt(sn.get('equivalent_input_noise_db_spl'), 1)} dB SPL"
                     if sn.get("status") == "ok" else f"self-noise: {sn.get('status')} ({sn.get('reason')})")
        lines.append(_verdict_line("self-noise", sn))
    line = f"midbrain: {mb['status']}"
    if mb.get("reason"):
        line += f" ({mb['reason']})"
    lines.append(line)
    for key, cmp in (mb.get("comparisons") or {}).items():
        if cmp.get("status") == "ok":
            lines.append(f"  {key}: " + "; ".join(f"{k} FEVE {fmt(v['feve'])} KL_W {fmt(v['kl_w'], 4)}"
                                                 for k, v in cmp["conditions"].items()))
        else:
            lines.append(f"  {key}: {cmp.get('status')} ({cmp.get('reason')})")
    lines.append(_verdict_line("midbrain", mb))
    if mb.get("timing"):
        t = mb["timing"]
        lines.append(f"ICNet speed: {t['seconds_per_second']:.3f} s per second of audio on {t['device']} ({t['weights']})")
    if report.get("cochlear"):
        lines.append(cochlear_summary_line(report["cochlear"]))
    if isinstance(report.get("verdict"), Mapping):
        lines.append(f"overall: {overall(report['verdict'])}")
    if report.get("outputs"):
        lines.append(f"report: {report['outputs']['json']}, {report['outputs']['html']}")
    return lines


def verify_main(args: argparse.Namespace) -> int:
    """``toolchain verify``: run, write JSON + HTML, print a summary. Raises :class:`VerifyError`."""
    report = run_verify(options_from_args(args), progress=_stderr_progress if not getattr(args, "quiet", False)
                        else (lambda s: None))
    for line in summary_lines(report):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m toolchain.verify.report``), with the CLI's one-line errors."""

    parser = argparse.ArgumentParser(prog="toolchain verify", description=__doc__.split("\n\n")[0])
    add_verify_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return verify_main(args)
    except (VerifyError, ICNetImportError) as e:
        print(f"toolchain verify: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
