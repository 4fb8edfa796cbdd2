"""toolchain/verify/verdicts.py: each section of the verify report against its baseline (issue 17)."""

from __future__ import annotations

import pytest

from toolchain.verify import verdicts as vd


def _haspi(**means: float) -> dict:
    return {"status": "ok", "scores": {k.replace("_", "-"): {"mean": v} for k, v in means.items()}}


def test_haspi_below_unprocessed_is_harm_above_is_ok_and_a_tie_is_no_benefit():
    assert vd.haspi_vs_unprocessed({"haspi": _haspi(unprocessed=0.965, compensated=0.914)})["level"] == "harm"
    assert vd.haspi_vs_unprocessed({"haspi": _haspi(unprocessed=0.80, compensated=0.85)})["level"] == "ok"
    tie = vd.haspi_vs_unprocessed({"haspi": _haspi(unprocessed=0.80, compensated=0.805)})
    assert tie["level"] == "warn" and "no measurable benefit" in tie["text"]
    v = vd.haspi_vs_unprocessed({"haspi": _haspi(unprocessed=0.965, compensated=0.914)})
    assert "0.914" in v["text"] and "0.965" in v["text"] and "-0.051" in v["text"]


def test_an_empty_section_is_never_ok():
    """NAL-R that ran but has no HASPI to compare, HASPI not installed, no budget, no midbrain: "none"."""
    report = {"haspi": {"status": "not available", "reason": "pyclarity not installed"},
              "nal_r": {"status": "ok", "taps": 221},
              "latency": {"status": "ok", "algorithmic_latency_ms": 1.0, "budget_ms": None},
              "midbrain": {"status": "not run", "reason": "no ICNet weights given"},
              "self_noise": vd.self_noise_section({})}
    out = vd.judge(report)
    for key in ("haspi", "nal_r", "latency", "midbrain", "self_noise"):
        assert report[key]["verdict"]["level"] == "none", key
    assert out["level"] == "none" and out["judged"] == []
    assert sorted(out["not_judged"]) == ["haspi", "latency", "midbrain", "nal_r", "self_noise"]


def test_device_vs_nalr_warns_below_the_classic_fitting():
    r = {"nal_r": {"status": "ok"}, "haspi": _haspi(unprocessed=0.80, compensated=0.85, nal_r=0.90)}
    v = vd.device_vs_nalr(r)
    assert v["level"] == "warn" and "Byrne & Dillon 1986" in v["text"] and "+0.100 over unprocessed" in v["text"]
    r["haspi"] = _haspi(unprocessed=0.80, compensated=0.95, nal_r=0.90)
    assert vd.device_vs_nalr(r)["level"] == "ok"


@pytest.mark.parametrize("measured,manifest,dev,fp32,level", [
    (35.0, 32.7, 0.86, 0.865, "ok"),     # within the manifest, HASPI tied with fp32
    (25.0, 32.7, 0.86, 0.865, "warn"),   # 7.7 dB worse than exported
    (35.0, 32.7, 0.80, 0.86, "harm"),    # integer arithmetic costs HASPI
    (35.0, None, None, None, "none"),    # nothing to compare with
])
def test_device_vs_fp32(measured, manifest, dev, fp32, level):
    r = {"int8_vs_fp32": {"measured_snr_db": measured, "manifest_snr_db": manifest}}
    if dev is not None:
        r["haspi"] = _haspi(compensated=dev, fp32=fp32)
    assert vd.device_vs_fp32(r)["level"] == level


def test_latency_over_budget_is_harm_and_an_impulse_mismatch_warns():
    base = {"algorithmic_latency_ms": 6.0, "budget_ms": 5.0, "algorithmic_latency_samples": 96}
    assert vd.latency({"latency": base})["level"] == "harm"
    mism = dict(base, algorithmic_latency_ms=1.0, impulse_samples=17, impulse_matches_manifest=False)
    assert vd.latency({"latency": mism})["level"] == "warn"


def test_self_noise_from_the_manifest_is_judged_against_soft_speech():
    metrics = {"int16x8_equivalent_input_noise_db_spl": 12.5, "int16x8_silence_output_db_spl": 30.1,
               "int16x8_silence_output_exactly_zero": "no", "int16x8_input_clip_level_db_spl": 117.0,
               "int16x8_vs_fp32_snr_db_at_45db_spl": 41.0, "int8_equivalent_input_noise_db_spl": 38.0,
               "hfa_gain_db": 17.6}
    sec = vd.self_noise_section(metrics, default_graph="int16x8")
    assert sec["graph"] == "int16x8" and sec["snr_by_level_db"] == {"45": 41.0}
    assert vd.self_noise({"self_noise": sec})["level"] == "ok"
    sec8 = vd.self_noise_section(metrics, default_graph="int8")
    v = vd.self_noise({"self_noise": sec8})
    assert v["level"] == "harm" and "38.0 dB SPL" in v["text"]


def test_midbrain_impaired_fidelity_below_unprocessed_is_harm():
    def mb(dev: float, unp: float, nal: float) -> dict:
        conds = {"compensated": {"feve": dev}, "unprocessed": {"feve": unp}, "nal-r": {"feve": nal}}
        return {"midbrain": {"status": "ok", "comparisons": {"impaired": {"status": "ok", "conditions": conds}}}}

    assert vd.midbrain(mb(0.40, 0.50, 0.55))["level"] == "harm"
    assert vd.midbrain(mb(0.52, 0.50, 0.60))["level"] == "warn"
    assert vd.midbrain(mb(0.62, 0.50, 0.60))["level"] == "ok"


def test_a_section_judged_elsewhere_counts_in_the_overall_verdict():
    """A section whose own module set a verdict (e.g. a cochlear check) joins the report's verdict."""
    report = {"latency": {"algorithmic_latency_ms": 1.0, "budget_ms": 5.0},
              "cochlear": {"status": "ok", "verdict": {"level": "harm", "text": "further from normal"}}}
    out = vd.judge(report)
    assert out["level"] == "harm" and "cochlear" in out["judged"] and "latency" in out["judged"]
