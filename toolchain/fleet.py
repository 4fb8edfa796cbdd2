"""``toolchain fleet``: one bundle per patient, fitted on Ray, each by ``toolchain export``'s function.

A clinic network or a study fits thousands of audiograms to the same compensator. This module
reads them (CSV ``patient_id,250,500,1000,2000,3000,4000,6000,8000`` in dB HL with a header row,
or JSON lines), sends one Ray task per patient to
:func:`toolchain.export.pipeline.export_bundle` (the very function ``toolchain export`` calls, so
there is no second export path) and writes ``DIR/<patient_id>/`` bundles and ``DIR/fleet.json``.

* Ray: a local Ray started in-process by default (``num_cpus`` = ``--workers``, on 127.0.0.1,
  no dashboard, usage statistics off), or an existing cluster with ``--address auto|HOST:PORT``.
  Worker processes live for the whole run, so each pays the imports, the model load, the
  synthetic corpus and the Keras/SavedModel build once (:mod:`toolchain.export.process_cache`).
* Resumable: a patient whose bundle validates (hashes, schema; signature with ``--sign``) and
  whose manifest holds the same audiogram, target and checkpoint is skipped.
* Isolated failures: a malformed row or a failing export is recorded with a one-line reason and
  the others go on. Exit status 0 when every patient has a bundle, 1 when any failed, 2 on bad
  usage (bad CSV header, unknown target, unwritable ``--out``, bad key...: :class:`FleetError`
  and the CLI's other user errors). Bundles are atomic (``write_bundle``); so is fleet.json,
  rewritten after every patient.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ray

from runtime.atomic import atomic_write
from runtime.boards import Board
from runtime.bundle import MANIFEST_NAME, BundleError, load_bundle
from runtime.signing import TrustPolicy
from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, Audiogram, AudiogramError
from toolchain.export import process_cache
from toolchain.export.pipeline import DEFAULT_CHECKPOINT, ExportOptions, export_bundle
from toolchain.export.signing import load_signing_key

__all__ = ["FLEET_JSON", "FleetError", "FleetOptions", "FleetResult", "PatientRow", "read_audiograms", "run_fleet"]

FLEET_JSON = "fleet.json"
FLEET_FORMAT = "hx-fleet-v1"
#: The CSV header: the patient id, then one column per audiogram frequency (Hz).
CSV_COLUMNS = ("patient_id", *(f"{f:g}" for f in AUDIOGRAM_FREQS_HZ))
#: A patient id is a directory name under --out: no separators, no leading dot, <= 100 characters.
PATIENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
#: The most patients one file may list (each is a Ray task and a directory).
MAX_PATIENTS = 1_000_000
#: ExportOptions fields a caller may tune per fleet (tests shrink the calibration and test sets).
EXPORT_KNOBS = ("calib_clips", "calib_blocks", "test_clips", "clip_seconds", "drift_clips", "corpus_seed", "block",
                "qat_steps", "quant")


class FleetError(ValueError):
    """Bad usage of the whole command (one line; exit status 2): nothing was exported."""


@dataclass(frozen=True)
class PatientRow:
    """One patient line of the audiogram file: an audiogram, or why the line was refused."""

    line: int
    patient_id: str | None
    audiogram: Audiogram | None = None
    error: str | None = None


@dataclass(frozen=True)
class FleetOptions:
    """One fleet run. ``address`` None: a local Ray with ``workers`` CPUs, started here."""

    audiograms: Path
    board: Board
    out_dir: Path
    workers: int = 2
    address: str | None = None
    sign_key: Path | None = None
    checkpoint: Path = DEFAULT_CHECKPOINT
    # ExportOptions fields (EXPORT_KNOBS) applied to every patient's export.
    export_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 4096:
            raise FleetError(f"--workers must be 1..4096, got {self.workers}")
        unknown = sorted(set(self.export_options) - set(EXPORT_KNOBS))
        if unknown:
            raise FleetError(f"export options {unknown} cannot be set per fleet; expected some of {', '.join(EXPORT_KNOBS)}")
        if self.address is not None and not _valid_address(self.address):
            raise FleetError(f"--address {self.address!r}: expected 'auto' or HOST:PORT (port 1..65535)")


@dataclass
class FleetResult:
    """What a run did: one record per patient line (as in fleet.json) and the totals."""

    records: list[dict[str, Any]]
    seconds: float
    path: Path

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _valid_address(address: str) -> bool:
    if address == "auto":
        return True
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and 1 <= int(port) <= 65535)


# ------------------------------------------------------------------------------- input
def _row(line: int, pid: Any, values: Sequence[Any]) -> PatientRow:
    """Validate one patient: an id usable as a directory name and 8 thresholds in range."""
    if not isinstance(pid, str) or not PATIENT_ID.fullmatch(pid.strip()):
        return PatientRow(line, pid if isinstance(pid, str) else None,
                          error=f"patient_id {pid!r} is not a name of 1-100 letters, digits, '.', '_' or '-' "
                                "(not starting with '.' or '-')")
    pid = pid.strip()
    if len(values) != len(AUDIOGRAM_FREQS_HZ):
        return PatientRow(line, pid, error=f"{len(values)} thresholds; expected {len(AUDIOGRAM_FREQS_HZ)} "
                                           f"(dB HL at {', '.join(CSV_COLUMNS[1:])} Hz)")
    parsed: list[float] = []
    for f, v in zip(CSV_COLUMNS[1:], values):
        try:
            x = float(v.strip()) if isinstance(v, str) else v
        except ValueError:
            return PatientRow(line, pid, error=f"{f} Hz threshold {v!r} is not a number (dB HL)")
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return PatientRow(line, pid, error=f"{f} Hz threshold {v!r} is not a number (dB HL)")
        parsed.append(float(x))
    try:
        return PatientRow(line, pid, audiogram=Audiogram(tuple(parsed), name=pid))
    except AudiogramError as e:
        return PatientRow(line, pid, error=str(e))


def _read_csv(text: str, where: str) -> list[PatientRow]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[PatientRow] = []
    for fields_ in reader:
        line = reader.line_num
        if not fields_ or all(not f.strip() for f in fields_):
            continue
        if header is None:
            header = [f.strip() for f in fields_]
            if tuple(header) != CSV_COLUMNS:
                raise FleetError(f"{where}: header {','.join(header)!r} on line {line}; expected {','.join(CSV_COLUMNS)}")
            continue
        rows.append(_row(line, fields_[0], fields_[1:]))
    if header is None:
        raise FleetError(f"{where}: empty; expected a header {','.join(CSV_COLUMNS)} and one line per patient")
    return rows


def _read_jsonl(text: str, where: str) -> list[PatientRow]:
    rows: list[PatientRow] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            rows.append(PatientRow(line, None, error=f"not JSON ({e.msg} at column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            rows.append(PatientRow(line, None, error=f"a JSON line must be an object, got {type(obj).__name__}"))
            continue
        if "thresholds_db_hl" in obj:
            values = obj["thresholds_db_hl"]
            if not isinstance(values, list):
                rows.append(PatientRow(line, obj.get("patient_id") if isinstance(obj.get("patient_id"), str) else None,
                                       error=f"thresholds_db_hl must be a list of {len(AUDIOGRAM_FREQS_HZ)} numbers"))
                continue
        else:
            values = [obj.get(f) for f in CSV_COLUMNS[1:]]
            missing = [f for f in CSV_COLUMNS[1:] if f not in obj]
            if missing:
                rows.append(PatientRow(line, obj.get("patient_id") if isinstance(obj.get("patient_id"), str) else None,
                                       error=f"no threshold for {', '.join(missing)} Hz (keys {', '.join(CSV_COLUMNS)} "
                                             "or patient_id + thresholds_db_hl)"))
                continue
        rows.append(_row(line, obj.get("patient_id"), values))
    if not rows:
        raise FleetError(f"{where}: no patients (one JSON object per line)")
    return rows


def read_audiograms(path: str | os.PathLike[str]) -> list[PatientRow]:
    """Every patient line of a CSV (header ``patient_id,250,...,8000``) or JSON-lines file.

    A file that cannot be read, or a CSV without the header, raises :class:`FleetError`; a bad
    patient line is returned as a row with its ``error``. A patient id listed twice is refused
    on its second line (its bundle directory would be written twice).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FleetError(f"{p}: no such audiogram file") from None
    except OSError as e:
        raise FleetError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FleetError(f"{p}: not UTF-8 text (byte {e.start})") from None
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    rows = _read_jsonl(text, str(p)) if first.startswith("{") else _read_csv(text, str(p))
    if len(rows) > MAX_PATIENTS:
        raise FleetError(f"{p}: {len(rows)} patients; at most {MAX_PATIENTS} per file")
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        if r.error is None and r.patient_id in seen:
            r = PatientRow(r.line, r.patient_id, error=f"patient_id {r.patient_id!r} repeats line {seen[r.patient_id]}")
        elif r.error is None:
            seen[r.patient_id] = r.line
        out.append(r)
    return out


# ------------------------------------------------------------------------------ resume
def _manifest_sha256(bundle_dir: Path) -> str:
    return hashlib.sha256((bundle_dir / MANIFEST_NAME).read_bytes()).hexdigest()


def finished_bundle(bundle_dir: Path, audiogram: Audiogram, board: Board, checkpoint: Path,
                    trust: TrustPolicy) -> str | None:
    """The manifest sha256 of a bundle that needs no new export, else None: it validates under
    ``trust`` and was made for this audiogram, target and checkpoint."""
    if not bundle_dir.is_dir():
        return None
    try:
        b = load_bundle(bundle_dir, trust=trust)
    except BundleError:
        return None
    m = b.manifest
    ag = m.audiogram or {}
    same = (m.target == board.name
            and [float(v) for v in ag.get("thresholds_db_hl", [])] == list(audiogram.thresholds_db_hl)
            and [float(f) for f in ag.get("frequencies_hz", [])] == [float(f) for f in AUDIOGRAM_FREQS_HZ]
            and (m.extra or {}).get("checkpoint") == Path(checkpoint).name)
    return _manifest_sha256(bundle_dir) if same else None


# ------------------------------------------------------------------------------ worker
_worker_ready = False
_worker_keys: dict[str, Any] = {}


def export_patient(job: Mapping[str, Any]) -> dict[str, Any]:
    """One patient's export, in a worker: ``export_bundle`` with the fleet's options.

    Never raises for a failing export: the result says ``failed`` with a one-line reason, so one
    patient cannot stop the others. Timestamps are wall-clock (the benchmark's throughput).
    """
    global _worker_ready
    t0, c0 = time.time(), time.process_time()
    if not _worker_ready:  # first task in this process: one CPU's worth of threads (a worker holds one)
        process_cache.pin_worker_threads()
        _worker_ready = True
    try:
        key = None
        if job["sign_key"]:
            if job["sign_key"] not in _worker_keys:
                _worker_keys[job["sign_key"]] = load_signing_key(job["sign_key"])
            key = _worker_keys[job["sign_key"]]
        opts = ExportOptions(board=job["board"], audiogram=job["audiogram"], out_dir=Path(job["out_dir"]),
                             checkpoint=Path(job["checkpoint"]), overwrite=True, signing_key=key,
                             **dict(job["export_options"]))
        export_bundle(opts)
        sha = _manifest_sha256(Path(job["out_dir"]))
        return {"status": "ok", "error": None, "manifest_sha256": sha, "started": t0, "ended": time.time(),
                "cpu_seconds": round(time.process_time() - c0, 3), "pid": os.getpid()}
    except Exception as e:  # isolation: any failure of one patient is that patient's record
        reason = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, (ValueError, OSError)):
            reason = f"{type(e).__name__}: {reason}"
        return {"status": "failed", "error": reason, "manifest_sha256": None, "started": t0, "ended": time.time(),
                "cpu_seconds": round(time.process_time() - c0, 3), "pid": os.getpid()}


_remote_export = ray.remote(num_cpus=1, max_retries=0)(export_patient)


# ------------------------------------------------------------------------------ driver
def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FleetError(f"{out}: is not a directory (--out names the folder of the patients' bundles)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FleetError(f"{out}: cannot create the output directory ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise FleetError(f"{out}: not writable")


def _start_ray(opts: FleetOptions) -> None:
    """Connect to ``opts.address``, or start a local Ray that listens on loopback only."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray would otherwise report usage to its makers
    # Quiet: the command's stderr carries one line per failed patient, not Ray's start-up notes.
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "namespace": "hx-fleet",
                              "logging_level": logging.ERROR}
    if opts.address is not None:
        ray.init(address=opts.address, **common)
        return
    # Ray starts workers 15 nice levels below the driver; they do all the work here, and on a shared
    # machine a worker at nice 19 got 1.5 % of a core. They run at the driver's priority instead.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Workers inherit this environment: make the project importable there as it is here.
    root = str(Path(__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    ray.init(num_cpus=opts.workers, _node_ip_address="127.0.0.1", object_store_memory=128 << 20, **common)


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_fleet_json(path: Path, opts: FleetOptions, records: list[dict[str, Any]], started: str, t0: float,
                      done: bool) -> None:
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "skipped", "failed", "pending")}
    exported = [r for r in records if r["status"] == "ok" and r["seconds"] is not None]
    wall = time.perf_counter() - t0
    doc = {
        "format": FLEET_FORMAT,
        "audiograms": str(opts.audiograms),
        "target": opts.board.name,
        "checkpoint": Path(opts.checkpoint).name,
        "address": opts.address or "local",
        "workers": opts.workers,
        "signed": opts.sign_key is not None,
        "started_utc": started,
        "finished_utc": _utc() if done else None,
        "seconds": round(wall, 2),
        "summary": {"patients": len(records), **counts,
                    "exported_per_minute": round(60.0 * len(exported) / wall, 3) if exported and wall > 0 else 0.0},
        "patients": records,
    }
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")


def run_fleet(opts: FleetOptions, *, on_failure: Callable[[dict[str, Any]], None] = lambda r: None,
              progress: Any = None) -> FleetResult:
    """Export every patient of ``opts.audiograms`` not already done; see the module docstring.

    ``progress``: a ``rich.progress.Progress`` to show (one task, advanced per patient), or None.
    ``on_failure`` is called once per failed patient, as it fails.
    """
    t0 = time.perf_counter()
    started = _utc()
    rows = read_audiograms(opts.audiograms)
    _check_out_dir(opts.out_dir)
    trust = TrustPolicy()
    if opts.sign_key is not None:
        trust = TrustPolicy(keys=(load_signing_key(opts.sign_key).public,))
    fleet_json = opts.out_dir / FLEET_JSON
    previous = _previous_seconds(fleet_json)

    records: list[dict[str, Any]] = []
    todo: list[tuple[dict[str, Any], PatientRow]] = []
    for r in rows:
        rec: dict[str, Any] = {"patient_id": r.patient_id, "line": r.line, "status": "pending", "error": None,
                               "seconds": None, "manifest_sha256": None,
                               "bundle": r.patient_id if r.error is None else None,
                               "thresholds_db_hl": list(r.audiogram.thresholds_db_hl) if r.audiogram else None}
        records.append(rec)
        if r.error is not None:
            rec.update(status="failed", error=f"line {r.line}: {r.error}")
            on_failure(rec)
            continue
        sha = finished_bundle(opts.out_dir / r.patient_id, r.audiogram, opts.board, opts.checkpoint, trust)
        if sha is not None:
            rec.update(status="skipped", manifest_sha256=sha, seconds=previous.get((r.patient_id, sha)))
        else:
            todo.append((rec, r))

    task = progress.add_task("fitting", total=len(todo)) if progress is not None and todo else None
    _write_fleet_json(fleet_json, opts, records, started, t0, done=not todo)
    if todo:
        _start_ray(opts)
        try:
            _dispatch(opts, todo, lambda: _write_fleet_json(fleet_json, opts, records, started, t0, done=False),
                      on_failure, progress, task)
        finally:
            ray.shutdown()
        _write_fleet_json(fleet_json, opts, records, started, t0, done=True)
    return FleetResult(records=records, seconds=time.perf_counter() - t0, path=fleet_json)


def _dispatch(opts: FleetOptions, todo: list[tuple[dict[str, Any], PatientRow]], save: Callable[[], None],
              on_failure: Callable[[dict[str, Any]], None], progress: Any, task: Any) -> None:
    """Keep ``opts.workers`` tasks in flight until every patient has a result."""
    queue = list(todo)
    in_flight: dict[Any, dict[str, Any]] = {}
    submitted: dict[Any, float] = {}
    failed = 0
    while queue or in_flight:
        while queue and len(in_flight) < opts.workers:
            rec, row = queue.pop(0)
            job = {"board": opts.board, "audiogram": row.audiogram, "out_dir": str(opts.out_dir / row.patient_id),
                   "checkpoint": str(opts.checkpoint), "sign_key": str(opts.sign_key) if opts.sign_key else None,
                   "export_options": dict(opts.export_options)}
            ref = _remote_export.remote(job)
            in_flight[ref] = rec
            submitted[ref] = time.perf_counter()
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            rec = in_flight.pop(ref)
            try:
                out = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died (killed, out of memory): this patient only
                out = {"status": "failed", "error": f"worker lost: {' '.join(str(e).split())[:300]}",
                       "manifest_sha256": None, "started": None, "ended": None}
            seconds = (out["ended"] - out["started"]) if out.get("started") else time.perf_counter() - submitted[ref]
            rec.update(status=out["status"], error=out["error"], manifest_sha256=out["manifest_sha256"],
                       seconds=round(seconds, 3), cpu_seconds=out.get("cpu_seconds"), started=out.get("started"),
                       ended=out.get("ended"), pid=out.get("pid"))
            if rec["status"] == "failed":
                failed += 1
                on_failure(rec)
            save()
            if progress is not None:
                progress.update(task, advance=1, description=f"fitting ({failed} failed)" if failed else "fitting")


def _previous_seconds(path: Path) -> dict[tuple[str, str], float]:
    """Export seconds of the bundles an earlier run wrote, by (patient, manifest sha256)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {(r["patient_id"], r["manifest_sha256"]): r["seconds"] for r in doc.get("patients", [])
                if r.get("manifest_sha256") and isinstance(r.get("seconds"), (int, float)) and math.isfinite(r["seconds"])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


# ------------------------------------------------------------------------------ command
def fleet_main(args: Any, board: Board) -> int:
    """``toolchain fleet``: run the fleet with a rich progress bar (ETA); one line per failure on
    stderr; exit 0 (all bundles present), 1 (some failed)."""
    # lazy: rich is needed only for the progress display
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    opts = FleetOptions(audiograms=Path(args.audiograms), board=board, out_dir=Path(args.out), workers=args.workers,
                        address=None if args.address in (None, "local") else args.address,
                        sign_key=Path(args.sign) if args.sign else None,
                        checkpoint=Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT)
    if args.sign:  # a wrong key must fail now, not in every worker
        load_signing_key(args.sign)
    err = Console(stderr=True, highlight=False)
    con = Console(highlight=False)

    def failure(rec: dict[str, Any]) -> None:
        err.print(f"toolchain fleet: {rec['patient_id'] or 'line ' + str(rec['line'])}: failed: {rec['error']}",
                  markup=False, soft_wrap=True)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=con,
                  disable=args.quiet) as prog:
        result = run_fleet(opts, on_failure=failure, progress=prog)
    n = {s: sum(r["status"] == s for r in result.records) for s in ("ok", "skipped", "failed")}
    con.print(f"fleet: {len(result.records)} patients: {n['ok']} exported, {n['skipped']} already done, "
              f"{n['failed']} failed in {result.seconds:.1f} s; {result.path}", markup=False)
    return result.exit_code
