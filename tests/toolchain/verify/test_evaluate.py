"""``toolchain evaluate``: the HASPI table end to end, the held-out inputs, the target logic, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_toolchain
from toolchain import cli
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.verify.evaluate import (SYSTEMS, EvaluateError, EvaluateOptions, _stats, _target_checks, make_audio,
                                       render_markdown)

DEFAULT = REPO / "toolchain" / "assets" / "seanet_default.pt"
HEADER = "| condition | audiogram | unprocessed | NAL-R | teacher fp32 | student fp32 | student int8 |"


def _one_line_exit_2(capsys, rc: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("toolchain evaluate: error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ end to end
def test_evaluate_writes_the_table_json_and_plot(default_bundle, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = cli.main(["evaluate", "--bundle", str(default_bundle), "--presets", "moderate-sloping", "--examples", "2",
                   "--seconds", "1", "--snr", "quiet", "--student", str(DEFAULT), "--teacher", str(DEFAULT),
                   "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "evaluation.md", "evaluation.png"]

    data = json.loads((out / "evaluation.json").read_text())
    assert data["format"] == "hx-evaluate/1" and data["data"]["examples"] == 2
    assert [(r["condition"], r["audiogram"]) for r in data["rows"]] == [("quiet", "moderate-sloping")]
    row = data["rows"][0]
    assert set(row["haspi"]) == set(SYSTEMS)
    for s in SYSTEMS:
        per = row["haspi"][s]["per_example"]
        assert len(per) == 2 and all(0.0 <= v <= 1.0 for v in per), (s, per)
    assert row["haspi"]["teacher-fp32"] == row["haspi"]["student-fp32"]  # the teacher is the student here
    assert data["models"]["teacher_is_student"] and data["haspi_scores_reused"] == 2
    # Processing an impaired ear's input changes what it hears: NAL-R and the compensator are not the unprocessed score.
    assert row["haspi"]["nal-r"]["per_example"] != row["haspi"]["unprocessed"]["per_example"]
    assert row["output_level_db_spl"]["unprocessed"] == pytest.approx(65.0, abs=0.01)
    assert row["output_level_db_spl"]["student-fp32"] > 70  # the compensator amplifies for a moderate loss
    int8 = data["int8"]["moderate-sloping"]
    assert not int8["exported_for_this_run"] and int8["output_limit"] == pytest.approx(0.891)
    assert int8["int8_vs_student_fp32_snr_db"] > 10
    checks = data["targets"]["checks"]
    assert [c["key"] for c in checks] == ["int8_vs_nalr", "int8_vs_unprocessed", "int8_drop", "student_vs_teacher"]
    assert all(isinstance(c["pass"], bool) for c in checks)
    assert checks[3]["value"] == 0.0 and checks[3]["pass"]

    md = (out / "evaluation.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == HEADER
    assert table[2].startswith("| quiet | moderate-sloping | ")
    assert table[3].startswith("| **mean (all conditions)** | moderate-sloping | ")
    assert len(table) == 4 and all(line.count("|") == 8 for line in table)
    assert sum(md.count(w) for w in ("**PASS**", "**FAIL**")) == 4
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert HEADER in printed and "wrote" in printed
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------------------------------------ inputs
def test_held_out_inputs_are_seeded_and_at_the_asked_level_and_snr():
    opts = EvaluateOptions(examples=1, seconds=1.0, snrs=(None, 5.0), noise="speech-shaped")
    clean, inputs = make_audio(opts, 16000)
    clean2, inputs2 = make_audio(opts, 16000)
    np.testing.assert_array_equal(inputs[1][0], inputs2[1][0])
    np.testing.assert_array_equal(clean[0], clean2[0])
    assert DEFAULT_CALIBRATION.level_db_spl(clean[0]) == pytest.approx(65.0, abs=0.01)
    np.testing.assert_array_equal(inputs[0][0], clean[0])  # quiet: the clean speech itself
    noise = inputs[1][0].astype(np.float64) - clean[0]
    snr = 10 * np.log10(np.sum(clean[0].astype(np.float64) ** 2) / np.sum(noise**2))
    assert snr == pytest.approx(5.0, abs=0.01)
    other, _ = make_audio(EvaluateOptions(examples=1, seconds=1.0, snrs=(None,), seed=1), 16000)
    assert not np.array_equal(other[0], clean[0])


def _row(preset: str, condition: str, **means: list[float]) -> dict:
    return {"audiogram": preset, "condition": condition,
            "haspi": {s: (_stats(means[s]) if s in means else None) for s in SYSTEMS}}


def test_targets_pass_and_fail_on_the_pooled_means():
    good = dict(unprocessed=[0.4, 0.5], **{"nal-r": [0.6, 0.7], "teacher-fp32": [0.8, 0.8],
                                            "student-fp32": [0.79, 0.79], "student-int8": [0.785, 0.785]})
    t = _target_checks([_row("moderate-sloping", "quiet", **good), _row("mild-flat", "quiet", unprocessed=[0.0])],
                       "moderate-sloping")
    assert t["all_pass"] and [c["pass"] for c in t["checks"]] == [True, True, True, True]
    assert t["checks"][0]["value"] == pytest.approx(0.785 - 0.65)
    bad = dict(good, **{"student-int8": [0.66, 0.66]})  # beats NAL-R by 0.01 only, and drops 0.13 from fp32
    t = _target_checks([_row("moderate-sloping", "quiet", **bad)], "moderate-sloping")
    assert [c["pass"] for c in t["checks"]] == [False, True, False, True] and not t["all_pass"]
    no_teacher = {k: v for k, v in good.items() if k != "teacher-fp32"}
    t = _target_checks([_row("moderate-sloping", "quiet", **no_teacher)], "moderate-sloping")
    assert t["checks"][3]["pass"] is None and "teacher" in t["checks"][3]["reason"] and not t["all_pass"]
    t = _target_checks([_row("mild-flat", "quiet", **good)], "moderate-sloping")
    assert t["status"] == "not evaluated" and t["checks"] == []
    # The markdown renders every verdict.
    result = {"data": {"examples": 2, "split": "test", "seconds": 1.0, "sample_rate": 16000},
              "calibration": {"speech_level_db_spl": 65.0},
              "models": {"student": {"path": "s.pt"}, "teacher": {"path": "t.pt"}, "teacher_is_student": False},
              "rows": [_row("moderate-sloping", "quiet", **{s: [v, v] for s, v in zip(SYSTEMS, (.1, .2, .3, .4, .5))})],
              "means": [], "targets": _target_checks([_row("moderate-sloping", "quiet", **bad)], "moderate-sloping"),
              "int8": {}, "notes": [], "haspi_scores_computed": 1, "haspi_scores_reused": 0, "elapsed_seconds": 1.0}
    md = render_markdown(result)
    assert md.count("**FAIL**") == 2 and md.count("**PASS**") == 2
    assert "| quiet | moderate-sloping | 0.100 ± 0.000 | 0.200 ± 0.000 | 0.300 ± 0.000 | 0.400 ± 0.000 | 0.500 ± 0.000 |" in md


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs, words", [
    ({"presets": ("moderate-sloping", "loud")}, ("unknown audiogram preset 'loud'", "severe-sloping")),
    ({"examples": 0}, ("--examples",)),
    ({"seconds": float("nan")}, ("--seconds",)),
    ({"snrs": (None, 99.0)}, ("--snr",)),
    ({"snrs": ()}, ("--snr",)),
    ({"noise": "traffic"}, ("unknown noise 'traffic'",)),
    ({"level_db_spl": 140.0}, ("--level",)),
    ({"name": "../x"}, ("--name",)),
])
def test_bad_options_are_one_line_errors(kwargs, words):
    with pytest.raises(EvaluateError) as e:
        EvaluateOptions(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_cli_user_mistakes_exit_2_with_one_line(tmp_path, capsys, default_bundle):
    out = str(tmp_path / "eval")
    rc = cli.main(["evaluate", "--student", str(tmp_path / "absent.pt"), "--out", out])
    _one_line_exit_2(capsys, rc, "absent.pt", "not found")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    rc = cli.main(["evaluate", "--teacher", str(junk), "--out", out])
    _one_line_exit_2(capsys, rc, "--teacher", "not a model checkpoint")
    rc = cli.main(["evaluate", "--presets", "moderate-sloping,nope", "--out", out])
    _one_line_exit_2(capsys, rc, "unknown audiogram preset 'nope'")
    rc = cli.main(["evaluate", "--examples", "0", "--out", out])
    _one_line_exit_2(capsys, rc, "--examples")
    # The bundle is fitted to moderate-sloping: it cannot stand for another audiogram.
    rc = cli.main(["evaluate", "--bundle", str(default_bundle), "--presets", "mild-flat", "--out", out])
    _one_line_exit_2(capsys, rc, str(default_bundle), "none of --presets")
    rc = cli.main(["evaluate", "--bundle", str(tmp_path), "--out", out])
    _one_line_exit_2(capsys, rc, "manifest.json")
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc = cli.main(["evaluate", "--out", str(afile)])
    _one_line_exit_2(capsys, rc, "not a directory")
    for argv in (["--examples", "many"], ["--snr", "loud"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["evaluate", *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and argv[0] in err[0], err
    assert not Path(out).exists()  # nothing written by a failed run


def test_the_installed_command_reports_a_missing_checkpoint_in_one_line(tmp_path):
    r = run_toolchain("evaluate", "--student", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "none.pt" in lines[0] and "Traceback" not in r.stderr
