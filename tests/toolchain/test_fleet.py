"""toolchain fleet: audiogram files, a local Ray with 2 workers end to end, resume, and bundles
byte-identical to a single export of the same audiogram."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from runtime.boards import resolve_target
from runtime.bundle import load_bundle
from runtime.signing import TrustPolicy
from tests.conftest import run_toolchain
from toolchain import fleet
from toolchain.audio.audiogram import Audiogram
from toolchain.export import process_cache
from toolchain.export.pipeline import ExportOptions, export_bundle
from toolchain.fleet import CSV_COLUMNS, FleetError, FleetOptions, read_audiograms, run_fleet

HEADER = ",".join(CSV_COLUMNS)
# A reduced export (short calibration and test sets): the fleet's machinery is under test, and the
# single export it is compared with uses the very same options.
KNOBS = dict(calib_clips=2, calib_blocks=200, test_clips=1, clip_seconds=1.0, drift_clips=1)
PATIENTS = {
    "p001": (20, 25, 35, 45, 50, 55, 60, 65),
    "p002": (10, 10, 15, 20, 30, 40, 50, 55),
    "p003": (30, 30, 35, 40, 45, 50, 55, 60),
    "p004": (40, 45, 50, 55, 60, 65, 70, 75),
}
MODEL_FILES = ("model_int8.tflite", "model_fp32.tflite", "model.onnx", "kernel/model.hxb")


def _csv(path: Path, patients: dict[str, tuple], bad: str | None = "bad row,1,2,3") -> Path:
    lines = [HEADER] + [f"{pid}," + ",".join(f"{v:g}" for v in t) for pid, t in patients.items()]
    if bad is not None:
        lines.insert(3, bad)
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------ reading
def test_reads_csv_rows_and_records_bad_ones(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text(f"{HEADER}\np1,20,25,35,45,50,55,60,65\n\n../x,1,2,3,4,5,6,7,8\np2,20,25,35,45,50,55,60,500\n"
                 "p3,20,25,x,45,50,55,60,65\np4,1,2\np1,0,0,0,0,0,0,0,0\n")
    rows = read_audiograms(f)
    assert [r.line for r in rows] == [2, 4, 5, 6, 7, 8]
    assert rows[0].error is None and rows[0].audiogram.thresholds_db_hl[-1] == 65.0 and rows[0].audiogram.name == "p1"
    assert "patient_id '../x'" in rows[1].error
    assert "500" in rows[2].error and "8000" in rows[2].error
    assert "'x'" in rows[3].error and "1000 Hz" in rows[3].error
    assert "2 thresholds" in rows[4].error
    assert "repeats line 2" in rows[5].error


def test_reads_json_lines(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"patient_id": "a", "thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65]}\n'
                 + json.dumps({"patient_id": "b", **{c: 30 for c in CSV_COLUMNS[1:]}}) + "\n"
                 '{"patient_id": "c"}\n[1, 2]\nnot json\n')
    rows = read_audiograms(f)
    assert [r.patient_id for r in rows[:2]] == ["a", "b"] and rows[1].audiogram.thresholds_db_hl == (30.0,) * 8
    assert all(r.error for r in rows[2:]) and "no threshold" in rows[2].error and "not JSON" in rows[4].error


@pytest.mark.parametrize("text,words", [
    ("id,250,500\nx,1,2\n", ["header", "patient_id,250,500,1000"]),
    ("", ["empty"]),
    ("\n\n", ["empty"]),
])
def test_bad_file_is_a_usage_error(tmp_path, text, words):
    f = tmp_path / "a.csv"
    f.write_text(text)
    with pytest.raises(FleetError) as e:
        read_audiograms(f)
    for w in words:
        assert w in str(e.value)
    with pytest.raises(FleetError, match="no such audiogram file"):
        read_audiograms(tmp_path / "missing.csv")


def test_options_are_checked():
    board = resolve_target("rpi")
    with pytest.raises(FleetError, match="--workers"):
        FleetOptions(audiograms=Path("a.csv"), board=board, out_dir=Path("o"), workers=0)
    with pytest.raises(FleetError, match="--address"):
        FleetOptions(audiograms=Path("a.csv"), board=board, out_dir=Path("o"), address="10.0.0.1")
    with pytest.raises(FleetError, match="calib_clip"):
        FleetOptions(audiograms=Path("a.csv"), board=board, out_dir=Path("o"), export_options={"calib_clip": 1})


@pytest.mark.parametrize("args,words", [
    (["--workers", "0"], ["--workers", "0"]),
    (["--address", "nowhere"], ["--address", "nowhere"]),
])
def test_cli_usage_errors_exit_2(tmp_path, args, words):
    csv = _csv(tmp_path / "a.csv", {"p1": PATIENTS["p001"]}, bad=None)
    r = run_toolchain("fleet", str(csv), "--target", "rpi", "--out", str(tmp_path / "out"), *args, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words) and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_bad_header_exits_2(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("patient,250\n")
    r = run_toolchain("fleet", str(f), "--target", "rpi", "--out", str(tmp_path / "out"), timeout=300)
    assert r.returncode == 2 and "header" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ on Ray
@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory):
    """4 patients + 1 malformed row through a local Ray with 2 workers."""
    tmp = tmp_path_factory.mktemp("fleet")
    opts = FleetOptions(audiograms=_csv(tmp / "patients.csv", PATIENTS), board=resolve_target("rpi"),
                        out_dir=tmp / "out", workers=2, export_options=KNOBS)
    failures = []
    result = run_fleet(opts, on_failure=failures.append)
    return opts, result, failures


@pytest.mark.slow
def test_fleet_exports_every_patient_and_records_the_bad_row(fleet_run):
    opts, result, failures = fleet_run
    assert result.exit_code == 1
    doc = json.loads((opts.out_dir / "fleet.json").read_text())
    by_id = {r["patient_id"]: r for r in doc["patients"]}
    assert doc["summary"]["ok"] == 4 and doc["summary"]["failed"] == 1 and doc["finished_utc"]
    assert [r["patient_id"] for r in failures] == ["bad row"] and "line 4" in failures[0]["error"]
    assert by_id["bad row"]["status"] == "failed" and "\n" not in by_id["bad row"]["error"]
    pids = set()
    for pid, thresholds in PATIENTS.items():
        rec = by_id[pid]
        assert rec["status"] == "ok" and rec["error"] is None and rec["seconds"] > 0
        b = load_bundle(opts.out_dir / pid)
        assert list(b.manifest.audiogram["thresholds_db_hl"]) == [float(v) for v in thresholds]
        assert rec["manifest_sha256"] == hashlib.sha256(
            (opts.out_dir / pid / "manifest.json").read_bytes()).hexdigest()
        pids.add(rec["pid"])
    assert len(pids) == 2, "two worker processes share the patients"
    assert not [p for p in opts.out_dir.iterdir() if p.name.startswith(".")], "no temporary bundle left"


@pytest.mark.slow
def test_fleet_bundle_equals_a_single_export(fleet_run, tmp_path):
    """Same audiogram, same options: the warm worker's bundle has the model bytes of a cold single export."""
    opts, _, _ = fleet_run
    process_cache.clear()
    single = export_bundle(ExportOptions(board=opts.board, audiogram=Audiogram(PATIENTS["p003"], name="p003"),
                                         out_dir=tmp_path / "single", **KNOBS)).bundle
    for name in MODEL_FILES:
        assert (single.path / name).read_bytes() == (opts.out_dir / "p003" / name).read_bytes(), name


@pytest.mark.slow
def test_fleet_resume_skips_finished_patients(fleet_run, tmp_path, monkeypatch):
    opts, first, _ = fleet_run
    out = tmp_path / "out"
    shutil.copytree(opts.out_dir, out)
    before = {p: (out / p / "manifest.json").read_bytes() for p in PATIENTS}
    # A rerun needs no Ray at all: every patient is done, the bad row is recorded again.
    monkeypatch.setattr(fleet, "_start_ray", lambda o: pytest.fail("a resumed fleet with nothing to do started Ray"))
    opts2 = FleetOptions(audiograms=opts.audiograms, board=opts.board, out_dir=out, workers=2, export_options=KNOBS)
    result = run_fleet(opts2)
    status = {r["patient_id"]: r["status"] for r in result.records}
    assert status == {"p001": "skipped", "p002": "skipped", "p003": "skipped", "p004": "skipped", "bad row": "failed"}
    assert all((out / p / "manifest.json").read_bytes() == before[p] for p in PATIENTS)
    seconds = {r["patient_id"]: r["seconds"] for r in first.records}
    assert all(r["seconds"] == seconds[r["patient_id"]] for r in result.records if r["status"] == "skipped")

    # What makes a patient due again: a changed audiogram, another target, a damaged bundle.
    ag = Audiogram(PATIENTS["p001"], name="p001")
    assert fleet.finished_bundle(out / "p001", ag, opts.board, opts.checkpoint, TrustPolicy()) is not None
    assert fleet.finished_bundle(out / "p001", Audiogram((25, 25, 35, 45, 50, 55, 60, 65)), opts.board,
                                 opts.checkpoint, TrustPolicy()) is None
    assert fleet.finished_bundle(out / "p001", ag, resolve_target("rpi5"), opts.checkpoint, TrustPolicy()) is None
    (out / "p001" / "model_int8.tflite").write_bytes(b"\0" * 16)
    assert fleet.finished_bundle(out / "p001", ag, opts.board, opts.checkpoint, TrustPolicy()) is None


@pytest.mark.slow
def test_fleet_cli_exit_codes_and_failure_lines(fleet_run, tmp_path):
    """Through the CLI on finished bundles (no export left to do): the bad row is one line on stderr,
    exit 1; without it, exit 0."""
    opts, _, _ = fleet_run
    out = tmp_path / "out"
    shutil.copytree(opts.out_dir, out)
    r = run_toolchain("fleet", str(opts.audiograms), "--target", "rpi", "--out", str(out), "--quiet", timeout=300)
    assert r.returncode == 1, (r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "bad row" in err[0] and "line 4" in err[0]
    assert "4 already done" in r.stdout and "1 failed" in r.stdout
    r = run_toolchain("fleet", str(_csv(tmp_path / "good.csv", PATIENTS, bad=None)), "--target", "rpi", "--out",
                      str(out), "--quiet", timeout=300)
    assert r.returncode == 0 and r.stderr.strip() == "", (r.stdout, r.stderr)
