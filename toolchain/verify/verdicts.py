"""Verdicts for ``toolchain verify``: each section of the report judged against its baseline.

A report that says "ok" next to a device scoring below unprocessed speech misleads the clinician
reading it. So every section gets a ``verdict`` (``{"level", "text"}``) that compares the device
with the baseline that section is about, and says in words what the numbers mean:

* **device vs fp32** (``int8_vs_fp32``): HASPI v2 of the device graph against the same graph in
  float, and the measured SNR against the exporter's own figure in the manifest;
* **latency**: the algorithmic latency against the board's latency budget (and the impulse
  re-measurement against the manifest);
* **HASPI v2**: the device against unprocessed speech (harm: the listener understands less
  with the device than without it);
* **NAL-R**: the device against the classic prescription (Byrne & Dillon 1986);
* **self-noise**: the manifest's equivalent input noise against the softest level a hearing aid
  must pass;
* **midbrain**: the impaired midbrain model's fidelity (FEVE) to normal hearing, device against
  unprocessed and NAL-R.

Levels: ``harm`` (red: the device is worse than its baseline), ``warn`` (amber: below a target,
not harmful), ``ok`` (green), ``none`` (grey: nothing measured, so nothing is claimed; an empty
section is never "ok"). Pure functions over the report dict; no I/O.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, MutableMapping

__all__ = ["HASPI_TIE", "LEVELS", "PAPERS", "SNR_SLACK_DB", "SOFT_SPEECH_DB_SPL", "judge", "self_noise_section",
           "worst"]

#: Severity order of the verdict levels (worst last).
LEVELS = ("none", "ok", "warn", "harm")

#: HASPI v2 differences within ±0.01 count as a tie: HASPI is a 0..1 index, and the smallest
#: step the evaluation's targets ask for is 0.05 over a baseline (issue 6).
HASPI_TIE = 0.01
#: FEVE differences within ±0.01 count as a tie (FEVE is a fraction, 0..1).
FEVE_TIE = 0.01
#: How far the device-vs-fp32 SNR measured here may fall below the manifest's before it is
#: flagged (other clips, other levels: a few dB of scatter is expected; more is a regression).
SNR_SLACK_DB = 3.0
#: The softest sound a hearing aid passes (DESIGN.md: 30-110 dB SPL): an equivalent input noise
#: above it means the device's own noise is as loud as the soft speech it must make audible.
SOFT_SPEECH_DB_SPL = 30.0
#: ANSI S3.22-style equivalent input noise a good hearing aid keeps under (round 2 · 1 of 6 target).
EIN_TARGET_DB_SPL = 20.0

#: The papers the report cites, in the words a reader can look up.
PAPERS = {
    "haspi": "HASPI v2 (Kates & Arehart 2021, Speech Communication 131:35-46)",
    "nalr": "NAL-R (Byrne & Dillon 1986, Ear and Hearing 7(4):257-265)",
    "icnet": "ICNet (Drakopoulos et al. 2025, Nature Machine Intelligence, doi:10.1038/s42256-025-01104-9)",
    "psi_icnet": "ψ-ICNet (Pellatt et al. 2025, arXiv:2506.03088)",
    "ein": "equivalent input noise as ANSI S3.22 measures it",
}


def _v(level: str, text: str) -> dict[str, str]:
    return {"level": level, "text": text}


def worst(levels: list[str]) -> str:
    """The most severe of ``levels`` (``none`` when empty)."""
    return max(levels, key=LEVELS.index) if levels else "none"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _haspi_means(report: Mapping[str, Any]) -> dict[str, float]:
    h = report.get("haspi") or {}
    if h.get("status") != "ok":
        return {}
    return {k: float(v["mean"]) for k, v in (h.get("scores") or {}).items() if _num(v.get("mean")) is not None}


def device_vs_fp32(report: Mapping[str, Any]) -> dict[str, str]:
    """Harm when the device's arithmetic costs HASPI against the float graph; warn when its SNR
    falls more than :data:`SNR_SLACK_DB` below the exporter's figure."""
    s = report.get("int8_vs_fp32") or {}
    measured, manifest = _num(s.get("measured_snr_db")), _num(s.get("manifest_snr_db"))
    if measured is None:
        return _v("none", "no device-vs-fp32 SNR was measured")
    h = _haspi_means(report)
    parts = [f"SNR {measured:.1f} dB against the float graph"]
    level = "ok"
    if manifest is not None:
        parts.append(f"the manifest says {manifest:.1f} dB")
        if measured < manifest - SNR_SLACK_DB:
            level = "warn"
            parts.append(f"{manifest - measured:.1f} dB worse than exported (more than {SNR_SLACK_DB:g} dB)")
    if "compensated" in h and "fp32" in h:
        d = h["compensated"] - h["fp32"]
        parts.append(f"HASPI v2 device {h['compensated']:.3f} vs fp32 {h['fp32']:.3f} ({d:+.3f})")
        if d < -HASPI_TIE:
            level = "harm"
            parts.append("the device's integer arithmetic costs intelligibility")
    elif manifest is None:
        return _v("none", f"SNR {measured:.1f} dB measured, but neither the manifest's figure nor HASPI "
                          "of the float graph to compare it with")
    return _v(level, "; ".join(parts))


def latency(report: Mapping[str, Any]) -> dict[str, str]:
    """Harm over the board's latency budget; warn when the impulse re-measurement disagrees."""
    lat = report.get("latency") or {}
    ms, budget = _num(lat.get("algorithmic_latency_ms")), _num(lat.get("budget_ms"))
    if ms is None:
        return _v("none", "no latency figure")
    if budget is None:
        return _v("none", f"{ms:.2f} ms algorithmic, but the manifest names no board latency budget")
    text = f"{ms:.2f} ms algorithmic against the board's budget of {budget:g} ms"
    if ms > budget:
        return _v("harm", text + f": {ms - budget:.2f} ms over")
    if lat.get("impulse_samples") is not None and lat.get("impulse_matches_manifest") is False:
        return _v("warn", text + f", but the impulse gives {lat['impulse_samples']} samples, not the manifest's "
                                 f"{lat.get('algorithmic_latency_samples')}")
    return _v("ok", text + " (within)")


def haspi_vs_unprocessed(report: Mapping[str, Any]) -> dict[str, str]:
    """Harm when the device scores below unprocessed speech."""
    h = report.get("haspi") or {}
    means = _haspi_means(report)
    if "compensated" not in means or "unprocessed" not in means:
        return _v("none", f"HASPI v2 {h.get('status', 'not run')}"
                          + (f" ({h['reason']})" if h.get("reason") else ""))
    dev, unp = means["compensated"], means["unprocessed"]
    d = dev - unp
    text = f"{PAPERS['haspi']}: device {dev:.3f} vs unprocessed {unp:.3f} ({d:+.3f})"
    if d < -HASPI_TIE:
        return _v("harm", text + ": the listener would understand LESS with the device than without it")
    if d <= HASPI_TIE:
        return _v("warn", text + ": no measurable benefit over unprocessed speech")
    return _v("ok", text + ": the device helps")


def device_vs_nalr(report: Mapping[str, Any]) -> dict[str, str]:
    """Warn when the device scores below the classic prescription (harm is the HASPI section's call)."""
    n = report.get("nal_r") or {}
    means = _haspi_means(report)
    if n.get("status") != "ok" or "nal-r" not in means or "compensated" not in means:
        why = n.get("reason") or ("HASPI v2 was not scored" if n.get("status") == "ok" else n.get("status", "not run"))
        return _v("none", f"no HASPI v2 of NAL-R to compare with ({why})")
    dev, nal, unp = means["compensated"], means["nal-r"], means.get("unprocessed")
    d = dev - nal
    text = (f"device {dev:.3f} vs {PAPERS['nalr']} {nal:.3f} ({d:+.3f})"
            + (f"; NAL-R itself {nal - unp:+.3f} over unprocessed" if unp is not None else ""))
    if d < -HASPI_TIE:
        return _v("warn", text + ": the device does less than the classic fitting")
    return _v("ok", text + (": at least as good as the classic fitting" if d <= HASPI_TIE else ": better than the classic fitting"))


def self_noise_section(metrics: Mapping[str, Any], default_graph: str | None = None) -> dict[str, Any]:
    """The manifest's self-noise figures (``<graph>_equivalent_input_noise_db_spl`` and friends).

    The device graph's (``default_graph``) when the manifest has them for it, else the first graph
    that has them; ``status: "not in the manifest"`` when there are none (older exports).
    """
    suffix = "_equivalent_input_noise_db_spl"
    graphs = [k[: -len(suffix)] for k in metrics if k.endswith(suffix)]
    if not graphs:
        return {"status": "not in the manifest",
                "reason": "the manifest has no self-noise figures (equivalent input noise, output for silence)"}
    g = default_graph if default_graph in graphs else graphs[0]
    keys = {"equivalent_input_noise_db_spl": f"{g}{suffix}", "silence_output_db_spl": f"{g}_silence_output_db_spl",
            "silence_output_exactly_zero": f"{g}_silence_output_exactly_zero", "silence_dc": f"{g}_silence_dc",
            "block_tone_excess_db": f"{g}_silence_block_tone_excess_db",
            "input_clip_level_db_spl": f"{g}_input_clip_level_db_spl"}
    sec: dict[str, Any] = {"status": "ok", "graph": g, "what": f"the exporter's measurement: {PAPERS['ein']}, the "
                           "output for digital silence, and the input clip level"}
    sec.update({name: metrics[k] for name, k in keys.items() if k in metrics})
    sec["hfa_gain_db"] = metrics.get("hfa_gain_db")
    prefix = f"{g}_vs_fp32_snr_db_at_"
    sec["snr_by_level_db"] = {k[len(prefix):].removesuffix("db_spl"): v for k, v in metrics.items() if k.startswith(prefix)}
    return sec


def self_noise(report: Mapping[str, Any]) -> dict[str, str]:
    """Harm when the equivalent input noise is above :data:`SOFT_SPEECH_DB_SPL`."""
    s = report.get("self_noise") or {}
    ein = _num(s.get("equivalent_input_noise_db_spl"))
    if s.get("status") != "ok" or ein is None:
        return _v("none", str(s.get("reason", "no self-noise figures")))
    bound = "at most " if s.get("silence_output_exactly_zero") in (True, "yes") else ""
    text = (f"equivalent input noise {bound}{ein:.1f} dB SPL ({s.get('graph')} graph) against the {SOFT_SPEECH_DB_SPL:g} dB "
            "SPL of the softest speech a hearing aid must pass")
    if ein > SOFT_SPEECH_DB_SPL:
        return _v("harm", text + ": the device's own noise is as loud as soft speech")
    if ein > EIN_TARGET_DB_SPL:
        return _v("warn", text + f" (below it, but above the {EIN_TARGET_DB_SPL:g} dB SPL a good aid keeps under)")
    return _v("ok", text + " (below)")


def midbrain(report: Mapping[str, Any]) -> dict[str, str]:
    """The impaired comparison: harm when the device's FEVE to normal hearing is below unprocessed,
    warn when below NAL-R. The normal-hearing ICNet comparison has no verdict (any processing departs
    from the clean reference it is measured against)."""
    mb = report.get("midbrain") or {}
    cmp = (mb.get("comparisons") or {}).get("impaired") or {}
    if cmp.get("status") != "ok":
        why = mb.get("reason") if mb.get("status") == "not run" else cmp.get("reason")
        return _v("none", why or "the midbrain check did not run")
    conds = cmp.get("conditions") or {}
    dev = _num((conds.get("compensated") or {}).get("feve"))
    unp = _num((conds.get("unprocessed") or {}).get("feve"))
    if dev is None or unp is None:
        return _v("none", "no FEVE for the device or for unprocessed speech")
    text = f"{PAPERS['psi_icnet']} FEVE to normal hearing: device {dev:.3f} vs unprocessed {unp:.3f}"
    if dev < unp - FEVE_TIE:
        return _v("harm", text + ": the device moves the impaired midbrain response further from normal")
    nal = _num((conds.get("nal-r") or {}).get("feve"))
    if nal is not None and dev < nal - FEVE_TIE:
        return _v("warn", text + f", NAL-R {nal:.3f}: less than the classic fitting")
    return _v("ok", text + (f", NAL-R {nal:.3f}" if nal is not None else ""))


_JUDGES = {"int8_vs_fp32": device_vs_fp32, "latency": latency, "haspi": haspi_vs_unprocessed, "nal_r": device_vs_nalr,
           "self_noise": self_noise, "midbrain": midbrain}


def judge(report: MutableMapping[str, Any]) -> dict[str, Any]:
    """Add ``verdict`` to every judged section of ``report`` and the report's own verdict:
    ``{"level": worst judged level, "judged": [...], "not_judged": [...]}`` (a report with no
    section judged is "none", never "ok"). A section another module judged itself (a ``verdict``
    of the same shape already in it) counts towards the report's verdict too."""
    judged, not_judged, levels = [], [], []
    for key, fn in _JUDGES.items():
        sec = report.get(key)
        if isinstance(sec, MutableMapping):
            sec["verdict"] = fn(report)
    for key, sec in report.items():
        v = sec.get("verdict") if isinstance(sec, Mapping) else None
        if isinstance(v, Mapping) and v.get("level") in LEVELS:
            (not_judged if v["level"] == "none" else judged).append(key)
            levels.append(v["level"])
    report["verdict"] = {"level": worst(levels), "judged": judged, "not_judged": not_judged}
    return report["verdict"]
