"""The cochlear section of ``toolchain verify``: CARFAC (seed 004) needs no outside weights, so it always runs.

For the bundle's audiogram, a CARFAC fitted to it (:mod:`toolchain.models.hearing.carfac_fit`) hears each
condition (unprocessed speech, NAL-R, the device's output) and a normal CARFAC hears the clean
speech. Per condition: the NAP and SAI distances of :mod:`toolchain.train.losses_dal` (relative
L1, 0 = the impaired ear responds as a normal one) and the Pearson correlations of the NAP
envelopes and SAI frames, averaged over clips, and the fraction of the unprocessed gap each
condition closes: ``(d_unprocessed − d) / d_unprocessed`` for distances, ``(r − r_unprocessed) /
(1 − r_unprocessed)`` for correlations (1 = normal hearing restored, 0 = no better than
unprocessed, negative = worse).

Cost: one batched CARFAC pass over at most :data:`MAX_CLIPS` clips of :data:`MAX_SECONDS` (the
normal ear and every condition side by side) plus one audiogram fit, about 15-30 s on a busy core.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from toolchain.fitting.prescription import nalr_fir
from toolchain.models.hearing.carfac_fit import fit_audiogram_cached
from toolchain.train.losses_dal import CochlearEars, correlation, relative_l1

MAX_CLIPS = 2
MAX_SECONDS = 1.0
NAP_POOL_MS = 2.0   # the DAL recipe's NAP envelope window (toolchain/train/recipes/dal.toml)
NALR_TAPS = 48      # as the prescription model's skip (toolchain/train/recipes/prescription.toml)
_LABELS = {"unprocessed": "unprocessed", "nal-r": "NAL-R", "compensated": "device"}
WHAT = ("NH = CARFAC with default parameters on the clean speech; HI = CARFAC fitted to the bundle's audiogram "
        "(OHC health, then IHC gain) on each condition. Distance: Σ|HI − NH| / Σ|NH| of 2 ms NAP envelopes and of "
        "SAI frames (20 ms lag, 10 ms hop); correlation: Pearson over the same; gap closed = (unprocessed − x) / "
        "unprocessed for distances, (x − unprocessed) / (1 − unprocessed) for correlations.")


def cochlear_section(audiogram: Mapping[str, Any] | None, clean: Sequence[np.ndarray],
                     conditions: Mapping[str, Sequence[np.ndarray]], fs: int,
                     progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The section dict (``examples`` holds NAP envelopes of clip 0 for the plot, not for the JSON)."""
    # torch (CARFAC) lazily: report.py imports this module for every `toolchain` command line
    # lazy: torch takes seconds to import; only this path needs it
    import torch

    if audiogram is None:
        return {"status": "not run", "reason": "the bundle has no audiogram to fit the impaired cochlea to"}
    n = min(int(MAX_SECONDS * fs), min(len(c) for c in clean))
    k = min(MAX_CLIPS, len(clean))
    progress("cochlear check (CARFAC NH vs fitted HI)")
    ears = CochlearEars(float(fs))
    thresholds = np.asarray(audiogram["thresholds_db_hl"], dtype=np.float64)
    fit = fit_audiogram_cached(thresholds, float(fs)) if np.max(thresholds) > 0 else None
    conditions = dict(conditions)
    if "nal-r" in conditions:
        nalr_source = "pyclarity NALR (the report's NAL-R condition)"
    else:   # pyclarity missing: the project's own NAL-R, so the section still has its classic baseline
        h = nalr_fir(thresholds, int(fs), NALR_TAPS)
        conditions["nal-r"] = [np.convolve(np.asarray(x, np.float64), h)[: len(x)].astype(np.float32) for x in clean]
        nalr_source = f"minimum-phase NAL-R FIR, {NALR_TAPS} taps (toolchain/fitting/prescription.py)"
    names = [c for c in ("unprocessed", "nal-r", "compensated") if c in conditions]
    rows_nh = np.stack([np.asarray(clean[i][:n], np.float32) for i in range(k)])
    rows_hi = np.stack([np.asarray(conditions[c][i][:n], np.float32) for c in names for i in range(k)])
    with torch.no_grad():
        nh, hi = ears.naps(torch.from_numpy(rows_nh), torch.from_numpy(rows_hi),
                           np.repeat(thresholds[None], len(rows_hi), axis=0))
        env_nh, sai_nh = ears.features(nh, NAP_POOL_MS)
        env_hi, sai_hi = ears.features(hi, NAP_POOL_MS)
    dims = tuple(range(1, env_nh.dim()))
    sdims = tuple(range(1, sai_nh.dim()))
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        sl = slice(j * k, (j + 1) * k)
        out[name] = {
            "nap_distance": float(relative_l1(env_hi[sl], env_nh, dims).mean()),
            "sai_distance": float(relative_l1(sai_hi[sl], sai_nh, sdims).mean()),
            "nap_correlation": float(correlation(env_hi[sl], env_nh).mean()),
            "sai_correlation": float(correlation(sai_hi[sl], sai_nh).mean()),
        }
    base = out.get("unprocessed")
    if base is not None:
        for v in out.values():
            for key in ("nap_distance", "sai_distance"):
                v[key.replace("distance", "distance_gap_closed")] = \
                    (base[key] - v[key]) / base[key] if base[key] > 0 else None
            for key in ("nap_correlation", "sai_correlation"):
                v[key.replace("correlation", "correlation_gap_closed")] = \
                    (v[key] - base[key]) / (1.0 - base[key]) if base[key] < 1.0 else None
    examples = {"NH (clean)": env_nh[0].numpy()}
    examples.update({f"HI ({_LABELS.get(c, c)})": env_hi[j * k].numpy() for j, c in enumerate(names)})
    return {
        "status": "ok", "what": WHAT, "nal_r": nalr_source, "clips": k, "seconds_per_clip": round(n / fs, 3), "channels": ears.carfac.n_ch,
        "fit": None if fit is None else {"frequencies_hz": list(fit.freqs_hz),
                                         "target_db_hl": [round(float(v), 2) for v in fit.target_db_hl],
                                         "achieved_db_hl": [round(float(v), 2) for v in fit.achieved_db_hl],
                                         "max_error_db": round(fit.max_error_db, 2)},
        "conditions": out, "examples": examples,
        "channel_cf_hz": [float(ears.carfac.pole_freqs[0]), float(ears.carfac.pole_freqs[-1])],
    }


def cochlear_plots(section: Mapping[str, Any], png: Callable[[Any], str]) -> dict[str, str]:
    """``{"cochlear": base64 PNG}``: NAP envelopes of clip 0 side by side (NH clean, HI per condition)."""
    ex = section.get("examples") or {}
    if section.get("status") != "ok" or not ex:
        return {}
    # lazy: matplotlib is needed only when a plot is drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.0 * len(ex), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(ex), sharey=True))
    # one colour scale for every panel, clipped at the normal ear's 99.5th percentile so speech shows
    vmax = float(np.percentile(ex["NH (clean)"], 99.5)) or 1.0
    base, apex = section["channel_cf_hz"]
    for ax, (name, env) in zip(axes, ex.items()):
        frames = env.shape[1]
        ax.imshow(env[::-1], aspect="auto", origin="lower", cmap="magma", vmin=0.0, vmax=vmax,
                  extent=[0, frames * NAP_POOL_MS, 0, env.shape[0]])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("ms (clip 0)")
    axes[0].set_ylabel(f"channel, CF {apex:.0f} Hz (bottom) to {base:.0f} Hz", fontsize=8)
    fig.suptitle("CARFAC NAP envelopes (2 ms), same colour scale", fontsize=9, y=1.04)
    return {"cochlear": png(fig)}


def _f(v: Any, nd: int = 3) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def cochlear_html(section: Mapping[str, Any] | None, plots: Mapping[str, str]) -> list[str]:
    """The section's HTML: status, table, NAP plot."""
    if not section:
        return []
    st = str(section.get("status"))
    parts = ["<h2>Cochlear fidelity (CARFAC NAP / SAI: Lyon 2017; the Differentiable Auditory Loop, 2026)</h2>",
             f'<p class="status {"ok" if st == "ok" else "off"}"><b>{html.escape(st)}</b>'
             + (f" — {html.escape(str(section['reason']))}" if section.get("reason") else "") + "</p>"]
    if st != "ok":
        return parts
    parts.append(f"<p>{html.escape(section['what'])} {section['clips']} clip(s) of {section['seconds_per_clip']} s, "
                 f"{section['channels']} channels; NAL-R: {html.escape(section['nal_r'])}.</p>")
    if section.get("fit"):
        f = section["fit"]
        parts.append(f"<p>fitted HI thresholds (dB HL) at {', '.join(f'{v:g}' for v in f['frequencies_hz'])} Hz: "
                     f"{', '.join(f'{v:.1f}' for v in f['achieved_db_hl'])} (target "
                     f"{', '.join(f'{v:.0f}' for v in f['target_db_hl'])}; worst error {f['max_error_db']:.1f} dB)</p>")
    parts.append("<table><tr><th>condition</th><th>NAP distance</th><th>SAI distance</th><th>NAP r</th><th>SAI r</th>"
                 "<th>NAP gap closed</th><th>SAI gap closed</th><th>NAP r gap closed</th><th>SAI r gap closed</th></tr>"
                 + "".join(f"<tr><td>{html.escape(_LABELS.get(k, k))}</td><td>{_f(v['nap_distance'])}</td>"
                           f"<td>{_f(v['sai_distance'])}</td><td>{_f(v['nap_correlation'])}</td>"
                           f"<td>{_f(v['sai_correlation'])}</td><td>{_f(v.get('nap_distance_gap_closed'))}</td>"
                           f"<td>{_f(v.get('sai_distance_gap_closed'))}</td>"
                           f"<td>{_f(v.get('nap_correlation_gap_closed'))}</td>"
                           f"<td>{_f(v.get('sai_correlation_gap_closed'))}</td></tr>"
                           for k, v in section["conditions"].items()) + "</table>")
    if "cochlear" in plots:
        parts.append(f'<img alt="cochlear" src="data:image/png;base64,{plots["cochlear"]}">')
    return parts


def summary_line(section: Mapping[str, Any]) -> str:
    """One line for the CLI: NAP distance and gap closed per condition."""
    if section.get("status") != "ok":
        return f"cochlear (CARFAC): {section.get('status')} ({section.get('reason')})"
    return "cochlear (CARFAC) NAP distance: " + ", ".join(
        f"{_LABELS.get(k, k)} {v['nap_distance']:.3f}" + (f" (gap closed {v['nap_distance_gap_closed']:.2f})"
                                                          if k != "unprocessed" and v.get("nap_distance_gap_closed") is not None else "")
        for k, v in section["conditions"].items())


__all__ = ["cochlear_html", "cochlear_plots", "cochlear_section", "summary_line"]
