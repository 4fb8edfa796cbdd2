"""The verification report as a person reads it: matplotlib figures (embedded PNG) and the HTML page.

``toolchain verify`` (:mod:`toolchain.verify.report`) measures; this module only draws what the
JSON report already holds, so the two can be read (and tested) apart.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Mapping, Sequence

import numpy as np

from toolchain.verify.cochlear import cochlear_html
from toolchain.verify.verdicts import PAPERS

__all__ = ["png", "draw_plots", "fmt", "overall", "render_html", "VERDICT_LABEL"]

def png(fig: Any) -> str:
    # lazy: matplotlib is needed only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def draw_plots(data: Mapping[str, Any], clean: Sequence[np.ndarray], y8: Sequence[np.ndarray], y32: Sequence[np.ndarray],
           fs: int, midbrain: Mapping[str, Any]) -> dict[str, str]:
    # lazy: matplotlib is needed only when a plot is drawn
    from matplotlib.figure import Figure

    plots: dict[str, str] = {}
    s = data["int8_vs_fp32"]
    fig = Figure(figsize=(9, 3))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    per = [v if v is not None else np.nan for v in s["per_clip_snr_db"]]
    ax1.bar(range(len(per)), per, color="#4477aa")
    ax1.set_xticks(range(len(per)))
    if s.get("manifest_snr_db") is not None:
        ax1.axhline(s["manifest_snr_db"], color="k", ls="--", lw=1, label="manifest")
        ax1.legend(loc="lower right", fontsize=8)
    ax1.set_xlabel("clip")
    ax1.set_ylabel("SNR (dB)")
    ax1.set_title("int8 vs fp32")
    n = min(len(y32[0]), int(0.05 * fs))
    start = int(np.argmax(np.abs(y32[0]))) // max(1, n) * n
    seg = slice(start, min(start + n, len(y32[0])))
    t = np.arange(seg.stop - seg.start) / fs * 1000
    ax2.plot(t, y32[0][seg], lw=1, label="fp32")
    ax2.plot(t, y8[0][seg], lw=1, alpha=0.8, label="int8")
    ax2.plot(t, y8[0][seg] - y32[0][seg], lw=1, label="difference")
    ax2.set_xlabel("ms")
    ax2.legend(fontsize=8)
    ax2.set_title("clip 0, loudest 50 ms")
    plots["int8"] = png(fig)

    lat = data["latency"]
    fig = Figure(figsize=(6, 1.8))
    ax = fig.subplots()
    ax.barh(["algorithmic"], [lat["algorithmic_latency_ms"]], color="#228833")
    if lat.get("budget_ms") is not None:
        ax.axvline(lat["budget_ms"], color="r", ls="--", label=f"budget {lat['budget_ms']:g} ms")
        ax.legend(fontsize=8)
    ax.set_xlabel("ms")
    ax.set_title("latency")
    plots["latency"] = png(fig)

    h = data["haspi"]
    if h.get("status") == "ok":
        fig = Figure(figsize=(5, 2.6))
        ax = fig.subplots()
        names = list(h["scores"])
        ax.bar(names, [h["scores"][k]["mean"] for k in names], color="#aa3377")
        ax.set_ylim(0, 1)
        ax.set_ylabel("HASPI v2")
        plots["haspi"] = png(fig)

    for key, cmp in (midbrain.get("comparisons") or {}).items():
        if not isinstance(cmp, dict) or cmp.get("status") != "ok":
            continue
        conds = cmp["conditions"]
        names = list(conds)
        fig = Figure(figsize=(9, 2.8))
        ax1, ax2 = fig.subplots(1, 2)
        ax1.bar(names, [conds[k]["feve"] if conds[k]["feve"] is not None else np.nan for k in names], color="#4477aa")
        ax1.set_ylabel("FEVE")
        ax2.bar(names, [conds[k]["kl_w"] if conds[k]["kl_w"] is not None else np.nan for k in names], color="#ee6677")
        ax2.set_ylabel("KL_W")
        for ax in (ax1, ax2):
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        fig.suptitle(f"{key}: {cmp['test_model']}", fontsize=9)
        plots[f"midbrain_{key}"] = png(fig)
        ex = cmp.get("examples") or {}
        if ex:
            fig = Figure(figsize=(9, 1.6 * len(ex)))
            axes = np.atleast_1d(fig.subplots(len(ex), 1, sharex=True))
            vmin = min(float(np.min(v)) for v in ex.values())
            vmax = max(float(np.max(v)) for v in ex.values())
            vmax = vmax if vmax > vmin else vmin + 1.0
            for ax, (name, resp) in zip(axes, ex.items()):
                step = max(1, resp.shape[1] // 256)
                ax.imshow(np.asarray(resp)[:, ::step].T, aspect="auto", origin="lower", cmap="inferno", vmin=vmin,
                          vmax=vmax, extent=[0, resp.shape[0] / 762.939453125 * 1000, 0, resp.shape[1]])
                ax.set_ylabel(name, fontsize=7)
            axes[-1].set_xlabel("ms (clip 0)")
            plots[f"responses_{key}"] = png(fig)
    return plots


def fmt(v: Any, nd: int = 3) -> str:
    """A value as the report prints it: floats to ``nd`` places, booleans as yes/no, HTML-escaped."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return html.escape(str(v))


def _img(plots: Mapping[str, str], key: str) -> str:
    return f'<img alt="{key}" src="data:image/png;base64,{plots[key]}">' if key in plots else ""


#: How a verdict level reads on the page (toolchain/verify/verdicts.py): red where the device does harm.
VERDICT_LABEL = {"ok": ("ok", "ok"), "warn": ("below target", "warn"), "harm": ("HARM", "harm"),
                  "none": ("not judged", "off")}


def overall(verdict: Mapping[str, Any]) -> str:
    """The report's verdict in words: the worst judged section, and what was not judged."""
    label = VERDICT_LABEL.get(str(verdict.get("level")), ("not judged",))[0]
    judged, skipped = verdict.get("judged") or [], verdict.get("not_judged") or []
    text = f"{label} (worst of {len(judged)} judged section(s))" if judged else "not judged (no section had numbers)"
    return text + (f"; not judged: {', '.join(skipped)}" if skipped and judged else "")


def _status(sec: Mapping[str, Any]) -> str:
    v = sec.get("verdict")
    if isinstance(v, Mapping):  # a judged section shows its verdict, never a bare "ok"
        label, cls = VERDICT_LABEL.get(str(v.get("level")), ("not judged", "off"))
        reason = f" ({html.escape(str(sec['reason']))})" if sec.get("reason") and v.get("level") != "none" else ""
        return f'<p class="status {cls}"><b>{label}</b> — {html.escape(str(v.get("text", "")))}{reason}</p>'
    st = str(sec.get("status", "?"))
    cls = {"ok": "ok", "partial": "warn"}.get(st, "off")
    reason = f" — {html.escape(str(sec['reason']))}" if sec.get("reason") else ""
    return f'<p class="status {cls}"><b>{html.escape(st)}</b>{reason}</p>'


def render_html(data: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The self-contained HTML page (plots embedded as base64 PNG)."""
    b = data["bundle"]
    ag = b.get("audiogram") or {}
    verdict = data.get("verdict") if isinstance(data.get("verdict"), Mapping) else {}
    overall_cls = VERDICT_LABEL.get(str(verdict.get("level")), ("", "off"))[1]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>verify: " + html.escape(str(b["path"])) + "</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}"
        ".status{padding:4px 8px;border-radius:4px}.ok{background:#e6f4ea}.warn{background:#fff4d6}.harm{background:#f6c6c6;color:#800}"
        ".off{background:#eeeeee}img{max-width:100%}code{background:#f4f4f4}</style></head><body>",
        f"<h1>Verification report</h1><p>bundle <code>{html.escape(str(b['path']))}</code>: "
        f"{html.escape(str(b['model']))} → {html.escape(str(b['target']))}, {b['sample_rate']} Hz, block {b['block']}; "
        f"audiogram {html.escape(str(ag.get('name', 'none')))} "
        f"({', '.join(fmt(v, 0) for v in ag.get('thresholds_db_hl', []))} dB HL)</p>",
        f"<p>device: {html.escape(data['device']['note'])}; precision {data['device']['precision']}; "
        f"created {data['created_utc']}; {data.get('elapsed_seconds', 0):.1f} s</p>",
        f'<p class="status {overall_cls}">overall: <b>{html.escape(overall(verdict))}</b></p>',
    ]
    s = data["int8_vs_fp32"]
    parts += ["<h2>Device vs fp32</h2>", _status(s),
              f"<table><tr><th>manifest SNR</th><th>measured SNR</th><th>audio</th></tr><tr><td>{fmt(s['manifest_snr_db'], 2)} dB</td>"
              f"<td>{fmt(s['measured_snr_db'], 2)} dB</td><td>{fmt(s['test_seconds'], 1)} s</td></tr></table>",
              f"<p>{html.escape(s['what'])}</p>", _img(plots, "int8")]
    lat = data["latency"]
    parts += ["<h2>Latency</h2>", _status(lat),
              "<table><tr><th>algorithmic</th><th>impulse (int8)</th><th>budget</th><th>within budget</th></tr>"
              f"<tr><td>{lat['algorithmic_latency_samples']} samples = {fmt(lat['algorithmic_latency_ms'], 2)} ms</td>"
              f"<td>{fmt(lat.get('impulse_samples'))} {html.escape(lat.get('impulse_note', ''))}</td>"
              f"<td>{fmt(lat.get('budget_ms'), 2)} ms</td><td>{fmt(lat.get('within_budget'))}</td></tr></table>",
              _img(plots, "latency")]
    h = data["haspi"]
    parts += ["<h2>HASPI v2</h2>", _status(h)]
    if h.get("status") == "ok":
        parts.append("<table><tr><th>condition</th><th>HASPI v2</th></tr>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{fmt(v['mean'])}</td></tr>" for k, v in h["scores"].items()) + "</table>")
        parts.append(_img(plots, "haspi"))
    parts += ["<h2>Device vs NAL-R</h2>", _status(data["nal_r"])]
    sn = data.get("self_noise") or {}
    parts += ["<h2>Self-noise</h2>", _status(sn)]
    if sn.get("status") == "ok":
        parts.append("<table><tr><th>equivalent input noise</th><th>output for silence</th><th>input clip level</th>"
                     f"<th>SNR vs fp32 by speech level</th></tr><tr><td>{fmt(sn.get('equivalent_input_noise_db_spl'), 1)} dB SPL</td>"
                     f"<td>{fmt(sn.get('silence_output_db_spl'), 1)} dB SPL</td><td>{fmt(sn.get('input_clip_level_db_spl'), 1)} dB SPL</td>"
                     "<td>" + ", ".join(f"{html.escape(k)} dB SPL: {fmt(v, 1)} dB" for k, v in
                                        (sn.get("snr_by_level_db") or {}).items()) + "</td></tr></table>")
    parts += cochlear_html(data.get("cochlear"), plots)
    mb = data["midbrain"]
    parts += ["<h2>Midbrain fidelity (ICNet / ψ-ICNet, fp32)</h2>", _status(mb)]
    if mb.get("timing"):
        t = mb["timing"]
        parts.append(f"<p>speed: <b>{fmt(t.get('seconds_per_second'), 3)} s per second of audio</b> on "
                     f"{html.escape(str(t.get('device')))}, {t.get('batch_frames')} frames per batch "
                     f"({html.escape(str(t.get('weights', '')))})</p>")
    for key, cmp in (mb.get("comparisons") or {}).items():
        parts.append(f"<h3>{html.escape(key)}</h3>")
        parts.append(_status(cmp))
        if cmp.get("status") != "ok":
            continue
        parts.append(f"<p>reference: {html.escape(cmp['reference_model'])} on clean speech; test: "
                     f"{html.escape(cmp['test_model'])}. {html.escape(cmp.get('what', ''))}</p>")
        if cmp.get("psi"):
            src = cmp["psi"].get("source") or {}
            parts.append("<p>ψ: " + "; ".join(f"{html.escape(k)} {html.escape(str(cmp['psi'].get(k)))} from "
                                               f"{html.escape(str(src.get(k, '?')))}" for k in ("impaired", "normal"))
                         + "</p>")
        parts.append("<table><tr><th>condition</th><th>FEVE</th><th>KL_W</th><th>median r</th>"
                     "<th>FEVE gap closed</th><th>KL_W gap closed</th></tr>" + "".join(
                         f"<tr><td>{html.escape(k)}</td><td>{fmt(v['feve'])}</td><td>{fmt(v['kl_w'], 4)}</td>"
                         f"<td>{fmt(v['correlation_median'])}</td><td>{fmt(v.get('feve_gap_closed'))}</td>"
                         f"<td>{fmt(v.get('kl_w_gap_closed'))}</td></tr>" for k, v in cmp["conditions"].items())
                     + "</table>")
        parts.append(_img(plots, f"midbrain_{key}"))
        parts.append(_img(plots, f"responses_{key}"))
    arch = mb.get("architecture")
    if arch:
        parts.append(f"<h3>ICNet architecture of the weights given ({html.escape(PAPERS['icnet'])}): "
                     f"{arch['parameters']:,} parameters</h3><table>"
                     "<tr><th>layer</th><th>output (one 10240-sample frame)</th><th>parameters</th></tr>" + "".join(
                         f"<tr><td>{html.escape(r['layer'])}</td><td>{' × '.join(map(str, r['output_shape']))}</td>"
                         f"<td>{r['parameters']:,}</td></tr>" for r in arch["layers"]) + "</table>")
    parts.append("<p>FEVE: the fraction of explainable variance explained, weighted by each channel's cross-trial "
                 "covariance (normalised to a weighted mean); KL_W: the covariance-weighted divergence between "
                 f"predicted and reference count distributions; both as defined for {html.escape(PAPERS['psi_icnet'])}. "
                 "Gap closed = (processed − unprocessed) / (ceiling − unprocessed).</p></body></html>")
    return "\n".join(parts)

