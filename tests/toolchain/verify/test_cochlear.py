"""The cochlear section of ``toolchain verify`` (CARFAC, seed 004): runs without outside weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers import speech_clip
from toolchain.verify.cochlear import cochlear_html, cochlear_section, summary_line
from toolchain.verify.report import VerifyOptions, run_verify

MODERATE = {"name": "moderate-sloping", "thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65],
            "frequencies_hz": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]}


def test_no_audiogram_is_not_run() -> None:
    sec = cochlear_section(None, [np.zeros(100, np.float32)], {"unprocessed": [np.zeros(100, np.float32)]}, 16000)
    assert sec["status"] == "not run" and "audiogram" in sec["reason"]
    assert "not run" in "".join(cochlear_html(sec, {})) and "not run" in summary_line(sec)


def test_own_nal_r_without_pyclarity_and_gap_arithmetic() -> None:
    clean = [speech_clip("test", 0, seconds=0.3)]
    sec = cochlear_section(MODERATE, clean, {"unprocessed": clean, "compensated": clean}, 16000)
    assert sec["status"] == "ok" and "minimum-phase" in sec["nal_r"]
    c = sec["conditions"]
    assert set(c) == {"unprocessed", "nal-r", "compensated"}
    # the "device" here is the unprocessed sound itself: it closes exactly none of the gap
    assert c["compensated"]["nap_distance_gap_closed"] == 0.0 and c["compensated"]["sai_correlation_gap_closed"] == 0.0
    assert c["unprocessed"]["nap_distance"] > 0.2
    assert c["nal-r"]["nap_distance_gap_closed"] > 0.0
    assert sec["fit"]["max_error_db"] <= 5.0


def test_verify_on_the_default_bundle_reports_cochlear_numbers(default_bundle: Path, tmp_path: Path) -> None:
    from runtime.bundle import load_bundle

    js, page = tmp_path / "v.json", tmp_path / "v.html"
    opts = VerifyOptions(bundle=default_bundle, device="cpu", clips=1, seconds=1.0, json_path=js, html_path=page)
    rep = run_verify(opts, progress=lambda s: None, bundle=load_bundle(default_bundle))
    data = json.loads(js.read_text())
    sec = data["cochlear"]
    assert sec["status"] == "ok" and "examples" not in sec and sec == json.loads(json.dumps(rep["cochlear"]))
    assert set(sec["conditions"]) == {"unprocessed", "nal-r", "compensated"}
    for name, v in sec["conditions"].items():
        for key in ("nap_distance", "sai_distance", "nap_correlation", "sai_correlation"):
            assert v[key] is not None and np.isfinite(v[key]), (name, key)
    # NAL-R closes part of a moderate loss's gap, in both representations
    nalr = sec["conditions"]["nal-r"]
    assert 0.0 < nalr["nap_distance_gap_closed"] < 1.0 and nalr["sai_distance_gap_closed"] > 0.0
    assert sec["conditions"]["compensated"]["nap_distance_gap_closed"] is not None
    text = page.read_text()
    assert "Cochlear fidelity" in text and 'alt="cochlear"' in text


def test_normal_audiogram_needs_no_fit() -> None:
    clean = [speech_clip("test", 1, seconds=0.25)]
    normal = {"thresholds_db_hl": [0] * 8}
    sec = cochlear_section(normal, clean, {"unprocessed": clean}, 16000)
    # a normal ear hearing the clean speech: the same response, no gap at all
    assert sec["fit"] is None and sec["conditions"]["unprocessed"]["nap_distance"] == 0.0
