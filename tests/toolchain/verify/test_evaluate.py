"""``toolchain evaluate``: a tiny grid end to end, the held-out inputs, the targets as value/target/shortfall, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_toolchain
from toolchain import cli
from toolchain.audio.clarity import haspi_level1
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.verify.evaluate import (
    LABELS,
    SYSTEMS,
    EvaluateError,
    EvaluateOptions,
    _Scorer,
    _stats,
    format_check,
    make_audio,
    parse_condition,
    reverb_rir,
    target_checks,
)


def _one_line_exit_2(capsys, rc: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("toolchain evaluate: error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ end to end
def test_tiny_grid_runs_end_to_end_and_its_table_has_every_system(default_bundle, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = cli.main(["evaluate", "--grid", "tiny", "--presets", "moderate-sloping", "--bundle", str(default_bundle),
                   "--conditions", "quiet,speech-shaped:5", "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "evaluation.md", "evaluation.png"]

    data = json.loads((out / "evaluation.json").read_text())
    assert data["format"] == "hx-evaluate/2" and data["data"]["split"] == "heldout"
    assert [(r["audiogram"], r["level_db_spl"], r["condition"]) for r in data["rows"]] == [
        ("moderate-sloping", 65.0, "quiet"), ("moderate-sloping", 65.0, "speech-shaped 5 dB SNR")]
    for r in data["rows"]:
        for metric in ("haspi", "hasqi"):
            assert set(r[metric]) == set(SYSTEMS)
            assert all(0.0 <= r[metric][s]["mean"] <= 1.0 and r[metric][s]["n"] == 1 for s in SYSTEMS)
    quiet = data["rows"][0]
    # Processing for an impaired ear changes what it hears; the classic fittings and the device differ.
    assert len({quiet["haspi"][s]["mean"] for s in SYSTEMS}) == 4
    assert quiet["output_level_db_spl"]["unprocessed"] == pytest.approx(65.0, abs=0.01)
    assert quiet["output_level_db_spl"]["nal-r"] > 70 and quiet["output_level_db_spl"]["device"] > 70
    dev = data["devices"]["moderate-sloping"]
    assert not dev["exported_for_this_run"] and dev["output_limit"] == pytest.approx(0.891)
    assert dev["default_graph"] and dev["backend"] == "litert" and dev["peak"] <= dev["output_limit"]
    assert [c["key"] for c in data["targets"]] == ["quiet_moderate-sloping", "noise_reverb", "no_harm", "hasqi",
                                                   "output_limit", "latency"]
    assert all(isinstance(c["pass"], bool) and c["shortfall"] >= 0 for c in data["targets"])
    assert data["elapsed_seconds"] > 0 and data["scores_computed"] == 16

    md = (out / "evaluation.md").read_text()
    pooled = [line for line in md.split("## Pooled")[1].split("## Targets")[0].splitlines() if line.startswith("|")]
    for s in SYSTEMS:
        assert f"HASPI v2 {LABELS[s]} |" in pooled[0] and f"HASQI v2 {LABELS[s]} |" in pooled[0]
    assert all(line.count("|") == 11 for line in pooled)
    assert "| moderate-sloping | quiet |" in md and "| moderate-sloping | 65 dB SPL | speech-shaped 5 dB SNR |" in md
    assert "Wall time" in md and sum(md.count(w) for w in ("- PASS", "- FAIL")) == 6
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pooled[0] in printed and printed.count("shortfall") == 6 and "wrote" in printed
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------------------------------------ inputs
def test_held_out_inputs_are_seeded_at_the_asked_snr_and_reverberant():
    opts = EvaluateOptions(grid="tiny", examples=1, seconds=1.0, conditions=("quiet", "speech-shaped:5", "reverb"))
    clean, inputs, meta = make_audio(opts, 16000)
    clean2, inputs2, _ = make_audio(opts, 16000)
    for a, b in zip(inputs, inputs2):
        np.testing.assert_array_equal(a[0], b[0])
    assert DEFAULT_CALIBRATION.level_db_spl(clean[0]) == pytest.approx(65.0, abs=0.01)
    assert meta[0]["voice"] in ("de", "fr", "es", "it", "nl")
    np.testing.assert_array_equal(inputs[0][0], clean[0])  # quiet: the clean speech itself
    noise = inputs[1][0].astype(np.float64) - clean[0]
    assert 10 * np.log10(np.sum(clean[0].astype(np.float64) ** 2) / np.sum(noise**2)) == pytest.approx(5.0, abs=0.01)
    assert 0.3 <= meta[0]["t60_s"] <= 0.6 and DEFAULT_CALIBRATION.level_db_spl(inputs[2][0]) == pytest.approx(65.0, abs=0.01)
    assert not np.allclose(inputs[2][0], clean[0])


def test_reverb_rir_decays_60_db_in_t60():
    h = reverb_rir(0.5, 16000, np.random.default_rng(0))
    assert h[0] == 1.0 and np.sum(h[1:] ** 2) == pytest.approx(1.0)  # 0 dB direct-to-reverberant
    edc = 10 * np.log10(np.cumsum((h[1:] ** 2)[::-1])[::-1])  # Schroeder backward integration
    edc -= edc[0]
    t = np.arange(len(edc)) / 16000
    sel = (edc < -5) & (edc > -25)
    slope = np.polyfit(t[sel], edc[sel], 1)[0]  # dB per second
    assert -60 / slope == pytest.approx(0.5, rel=0.1)


@pytest.mark.slow  # two spawned workers import pyclarity: ~15 s on an idle 2-core machine
def test_worker_processes_give_the_same_scores_as_one_process():
    opts = EvaluateOptions(grid="tiny", seconds=0.5, conditions=("quiet", "speech-shaped:0"))
    clean, inputs, _ = make_audio(opts, 16000)
    tasks = [((c, 0), clean[0], inputs[c][0] * 3, 16000, (35.0, 35, 40, 50, 55, 60, 65, 65), haspi_level1(), 7)
             for c in range(2)]
    one, two = _Scorer(1), _Scorer(2)
    for t in tasks:
        one.submit(t)
        two.submit(t)
    one.finish()
    two.finish()
    assert one.results == two.results and len(one.results) == 2
    assert one.results[(0, 0)][0] > one.results[(1, 0)][0]  # noise at 0 dB SNR lowers HASPI


# ------------------------------------------------------------------------------ targets
def _row(preset: str, condition: str, level: float = 65.0, **means: float) -> dict:
    return {"audiogram": preset, "condition": condition, "level_db_spl": level,
            "haspi": {s: _stats([means[s]] * 2) for s in SYSTEMS},
            "hasqi": {s: _stats([means[s] - 0.3] * 2) for s in SYSTEMS}}


def test_targets_report_value_target_and_shortfall():
    devices = {"N3": {"peak": 0.5, "output_limit": 0.891, "algorithmic_latency_ms": 1.0}}
    good = [_row("N3", "quiet", unprocessed=0.8, **{"nal-r": 0.95, "nal-r+wdrc": 0.96, "device": 0.955}),
            _row("N3", "babble 0 dB SNR", unprocessed=0.4, **{"nal-r": 0.5, "nal-r+wdrc": 0.55, "device": 0.61})]
    checks = {c["key"]: c for c in target_checks(good, devices)}
    assert all(c["pass"] for c in checks.values()), checks
    assert checks["quiet_N3"]["value"] == pytest.approx(-0.005) and checks["quiet_N3"]["detail"]["best_classic"] == "nal-r+wdrc"
    assert checks["noise_reverb"]["value"] == pytest.approx(0.06)
    bad = [_row("N3", "quiet", unprocessed=0.8, **{"nal-r": 0.95, "nal-r+wdrc": 0.90, "device": 0.884}),
           _row("N3", "reverb T60 0.3-0.6 s", unprocessed=0.5, **{"nal-r": 0.6, "nal-r+wdrc": 0.7, "device": 0.45})]
    devices["N3"] = {"peak": 0.95, "output_limit": 0.891, "algorithmic_latency_ms": 2.0}
    checks = {c["key"]: c for c in target_checks(bad, devices)}
    assert {k: c["pass"] for k, c in checks.items()} == {"quiet_N3": False, "noise_reverb": False, "no_harm": False,
                                                         "hasqi": False, "output_limit": False, "latency": False}
    assert checks["quiet_N3"]["shortfall"] == pytest.approx(0.056) and "NAL-R" in checks["quiet_N3"]["target"]
    assert checks["no_harm"]["detail"]["cells_below"] == ["N3 | 65 dB | reverb T60 0.3-0.6 s"]
    line = format_check(checks["quiet_N3"])
    assert line.startswith("FAIL") and "value -0.066, target >= -0.010, shortfall 0.056" in line
    assert format_check(checks["latency"]).endswith("value +2.000, target <= +1.500, shortfall 0.500")
    quiet_only = {c["key"]: c for c in target_checks(bad[:1], devices)}
    assert quiet_only["noise_reverb"]["pass"] is None and "n/a" in format_check(quiet_only["noise_reverb"])


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs, words", [
    ({"presets": ("N3", "loud")}, ("unknown audiogram preset 'loud'", "S2")),
    ({"grid": "huge"}, ("--grid", "tiny")),
    ({"examples": 0}, ("--examples",)),
    ({"seconds": float("nan")}, ("--seconds",)),
    ({"levels": (65.0, 140.0)}, ("--levels",)),
    ({"conditions": ("quiet", "traffic:5")}, ("traffic:5", "babble")),
    ({"conditions": ("babble:99",)}, ("-20..40",)),
    ({"conditions": ("quiet", "quiet")}, ("twice",)),
    ({"jobs": 0}, ("--jobs",)),
    ({"name": "../x"}, ("--name",)),
])
def test_bad_options_are_one_line_errors(kwargs, words):
    with pytest.raises(EvaluateError) as e:
        EvaluateOptions(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_grid_defaults_and_overrides():
    d = EvaluateOptions()
    assert len(d.presets) >= 6 and d.levels == (55.0, 65.0, 75.0) and "reverb" in d.conditions
    assert {"S2", "S3"} & set(d.presets) and parse_condition("babble:0").label == "babble 0 dB SNR"
    assert EvaluateOptions(grid="full", examples=2).examples == 2 and EvaluateOptions(grid="full").examples > 1
    assert math.isclose(EvaluateOptions(grid="tiny", seconds=1.5).seconds, 1.5)


def test_cli_user_mistakes_exit_2_with_one_line(tmp_path, capsys, default_bundle):
    out = str(tmp_path / "eval")
    rc = cli.main(["evaluate", "--grid", "tiny", "--student", str(tmp_path / "absent.pt"), "--out", out])
    _one_line_exit_2(capsys, rc, "absent.pt", "not found")
    rc = cli.main(["evaluate", "--presets", "N3,nope", "--out", out])
    _one_line_exit_2(capsys, rc, "unknown audiogram preset 'nope'")
    rc = cli.main(["evaluate", "--conditions", "quiet,rain:3", "--out", out])
    _one_line_exit_2(capsys, rc, "rain:3")
    # The bundle is fitted to moderate-sloping: it cannot stand for another audiogram.
    rc = cli.main(["evaluate", "--bundle", str(default_bundle), "--presets", "N2", "--out", out])
    _one_line_exit_2(capsys, rc, str(default_bundle), "none of --presets")
    rc = cli.main(["evaluate", "--bundle", str(tmp_path), "--out", out])
    _one_line_exit_2(capsys, rc, "manifest.json")
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc = cli.main(["evaluate", "--out", str(afile)])
    _one_line_exit_2(capsys, rc, "not a directory")
    for argv in (["--examples", "many"], ["--levels", "loud"], ["--grid", "huge"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["evaluate", *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and argv[0] in err[0], err
    assert not Path(out).exists()  # nothing written by a failed run


def test_the_installed_command_reports_a_missing_checkpoint_in_one_line(tmp_path):
    r = run_toolchain("evaluate", "--grid", "tiny", "--student", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "none.pt" in lines[0] and "Traceback" not in r.stderr
