"""Verification metrics: int8-vs-fp32 SNR, and the midbrain fidelity measures of seed 000.

Neural responses are arrays ``(time, channels)``: MUA counts of a trial (``r1``, ``r2``) or the
expected counts E_C[R̂] of a model's distribution (``pred``). Histograms are ``(channels,
classes)`` over the counts 0..4.

* :func:`feve` — seed 000 Eq. 4, the fraction of explainable variance explained, weighted by
  each channel's cross-trial covariance ``w_i = Cov(R1_i, R2_i)``.
* :func:`kl_w` — seed 000 Eq. 5, the covariance-weighted KL divergence between the predicted
  and the true count histograms of each channel.
* :func:`channel_correlation` — Pearson correlation per channel over time.
* :class:`FidelityAccumulator` — the same three, accumulated chunk by chunk from sufficient
  statistics, so hours of responses of thousands of units never sit in memory at once.

Two deliberate readings of the seed's formulas (both documented in the report):

1. Eq. 4 and Eq. 5 weight channels by ``w_i`` but Eq. 4 divides by M, so its value depends on
   the scale of the counts. We normalise the weights (``Σ w_i f_i / Σ w_i``): a weighted mean,
   so that identical responses give FEVE = 1 and KL_W = 0 whatever the activity level.
   Negative covariances (unreliable channels) get weight 0, as do channels without explainable
   variance (``½(Var R1 + Var R2) − σ² ≤ 1e-12``), whose FEVE is undefined.
2. KL(P‖Q) between histograms with empty bins is smoothed with ``eps`` (default 1e-6) and
   renormalised; identical histograms still give exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

#: Count classes 0..4 (seed 001: counts clipped at 4; N_c = 5).
N_CLASSES = 5
KL_EPS = 1e-6


# ------------------------------------------------------------------------------ audio
def snr_db(reference: npt.ArrayLike, test: npt.ArrayLike) -> float:
    """10·log10(Σ ref² / Σ (ref − test)²) in dB; +inf for identical signals."""
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    t = np.asarray(test, dtype=np.float64).reshape(-1)
    if r.shape != t.shape:
        raise ValueError(f"SNR needs equal lengths, got {r.size} and {t.size}")
    if r.size == 0:
        raise ValueError("SNR of empty signals")
    num = float(np.sum(r * r))
    den = float(np.sum((r - t) ** 2))
    if den == 0.0:
        return math.inf
    if num == 0.0:
        return -math.inf
    return 10.0 * math.log10(num / den)


# ------------------------------------------------------------------------------ helpers
def _as_tm(a: npt.ArrayLike, name: str) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (time, channels), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 time bins, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has non-finite values")
    return x


def cross_trial_weights(r1: npt.ArrayLike, r2: npt.ArrayLike) -> np.ndarray:
    """``w_i = Cov(R1_i, R2_i)`` (population covariance over time), negatives set to 0."""
    a, b = _as_tm(r1, "r1"), _as_tm(r2, "r2")
    if a.shape != b.shape:
        raise ValueError(f"trials differ in shape: {a.shape} vs {b.shape}")
    w = np.mean((a - a.mean(0)) * (b - b.mean(0)), axis=0)
    return np.clip(w, 0.0, None)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    ok = np.isfinite(values) & (weights > 0)
    total = float(np.sum(weights[ok]))
    if total <= 0.0:
        return math.nan
    return float(np.sum(weights[ok] * values[ok]) / total)


# ------------------------------------------------------------------------------ FEVE (Eq. 4)
def feve_per_channel(r1: npt.ArrayLike, r2: npt.ArrayLike, pred1: npt.ArrayLike,
                     pred2: npt.ArrayLike | None = None) -> np.ndarray:
    """The bracket of seed 000 Eq. 4 for each channel (NaN where nothing is explainable).

    f_i = 1 − (½(C(R1, R̂1) + C(R2, R̂2)) − σ_i²) / (½(Var R1 + Var R2) − σ_i²), with
    C(X, Y) = mean_t (X_t − E_C[Y_t])² and σ_i² = ½ Var(R1 − R2).
    """
    a, b = _as_tm(r1, "r1"), _as_tm(r2, "r2")
    e1 = _as_tm(pred1, "pred1")
    e2 = e1 if pred2 is None else _as_tm(pred2, "pred2")
    if not (a.shape == b.shape == e1.shape == e2.shape):
        raise ValueError(f"shapes differ: r1 {a.shape}, r2 {b.shape}, pred {e1.shape}, {e2.shape}")
    noise = 0.5 * np.var(a - b, axis=0)
    c = 0.5 * (np.mean((a - e1) ** 2, axis=0) + np.mean((b - e2) ** 2, axis=0))
    explainable = 0.5 * (np.var(a, axis=0) + np.var(b, axis=0)) - noise
    with np.errstate(divide="ignore", invalid="ignore"):
        f = 1.0 - (c - noise) / explainable
    return np.where(explainable > 1e-12, f, np.nan)


def feve(r1: npt.ArrayLike, r2: npt.ArrayLike, pred1: npt.ArrayLike, pred2: npt.ArrayLike | None = None, *,
         weights: npt.ArrayLike | None = None) -> float:
    """Seed 000 Eq. 4, F_W: covariance-weighted mean over channels of :func:`feve_per_channel`.

    ``weights`` defaults to :func:`cross_trial_weights`; pass ones for an unweighted mean.
    Identical trials predicted exactly give 1.
    """
    f = feve_per_channel(r1, r2, pred1, pred2)
    w = cross_trial_weights(r1, r2) if weights is None else np.clip(np.asarray(weights, np.float64).reshape(-1), 0, None)
    if w.shape != f.shape:
        raise ValueError(f"{w.size} weights for {f.size} channels")
    return _weighted_mean(f, w)


# ------------------------------------------------------------------------------ KL (Eq. 5)
def count_histogram(counts: npt.ArrayLike, n_classes: int = N_CLASSES) -> np.ndarray:
    """Normalised histogram of MUA counts per channel: ``(time, channels)`` → ``(channels, classes)``.

    Counts are clipped to ``0 .. n_classes − 1`` (seed 001 clips MUA at 4).
    """
    c = np.asarray(counts)
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"counts must be (time, channels) with time > 0, got shape {c.shape}")
    c = np.clip(np.rint(c).astype(np.int64), 0, n_classes - 1)
    h = np.stack([(c == k).sum(0) for k in range(n_classes)], axis=-1).astype(np.float64)
    return h / c.shape[0]


def kl_divergence(p: npt.ArrayLike, q: npt.ArrayLike, eps: float = KL_EPS) -> np.ndarray:
    """KL(p ‖ q) over the last axis (natural log), both smoothed by ``eps`` and renormalised."""
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"histograms differ in shape: {a.shape} vs {b.shape}")
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("histograms must be non-negative")
    a = a + eps
    b = b + eps
    a = a / a.sum(-1, keepdims=True)
    b = b / b.sum(-1, keepdims=True)
    return np.sum(a * (np.log(a) - np.log(b)), axis=-1)


def kl_w(h1: npt.ArrayLike, h2: npt.ArrayLike, hhat1: npt.ArrayLike, hhat2: npt.ArrayLike | None = None, *,
         weights: npt.ArrayLike, eps: float = KL_EPS) -> float:
    """Seed 000 Eq. 5: Σ_i w_i · ½ (KL(Ĥ1_i ‖ H1_i) + KL(Ĥ2_i ‖ H2_i)), weights normalised to sum 1.

    ``h1``, ``h2``: true count histograms per channel for trials 1 and 2; ``hhat*``: the
    predicted ones (``hhat2`` defaults to ``hhat1``). Identical histograms give 0.
    """
    hh2 = hhat1 if hhat2 is None else hhat2
    kl = 0.5 * (kl_divergence(hhat1, h1, eps) + kl_divergence(hh2, h2, eps))
    w = np.clip(np.asarray(weights, np.float64).reshape(-1), 0.0, None)
    if w.shape != kl.shape:
        raise ValueError(f"{w.size} weights for {kl.size} channels")
    return _weighted_mean(kl, w)


# ------------------------------------------------------------------------------ correlation
def channel_correlation(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """Pearson correlation over time for each channel; NaN where either channel is constant."""
    x, y = _as_tm(a, "a"), _as_tm(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    xc, yc = x - x.mean(0), y - y.mean(0)
    den = np.sqrt(np.sum(xc * xc, 0) * np.sum(yc * yc, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sum(xc * yc, 0) / den
    return np.where(den > 0, np.clip(r, -1.0, 1.0), np.nan)


def gap_closed(unprocessed: float, processed: float, ceiling: float) -> float | None:
    """Fraction of the distance from ``unprocessed`` to ``ceiling`` that ``processed`` covers.

    1 = the processed response is as good as the reference can be, 0 = no better than doing
    nothing, < 0 = worse. Works for higher-is-better (FEVE) and lower-is-better (KL_W)
    metrics alike. None when the gap is zero or a value is not finite.
    """
    vals = (unprocessed, processed, ceiling)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
        return None
    gap = ceiling - unprocessed
    if abs(gap) < 1e-12:
        return None
    return float((processed - unprocessed) / gap)


# ------------------------------------------------------------------------------ streaming
@dataclass
class _ConditionSums:
    err1: np.ndarray  # Σ_t (R1 − E)²
    err2: np.ndarray  # Σ_t (R2 − E)²
    se: np.ndarray    # Σ E
    see: np.ndarray   # Σ E²
    sxe: np.ndarray   # Σ E_ref · E
    hist: np.ndarray  # Σ_t predicted count distribution, (channels, classes)


@dataclass
class FidelityAccumulator:
    """FEVE, KL_W and per-channel correlation of several conditions against one reference,
    accumulated over chunks of time.

    Each :meth:`add` gives, for one stretch of time, two reference trials ``r1``, ``r2``
    (sampled counts), the reference's expected counts ``ref_mean`` (for correlations) and, per
    condition, its expected counts and its predicted count distribution summed over time.
    """

    channels: int
    n_classes: int = N_CLASSES
    n: int = 0
    _ref: dict[str, np.ndarray] = field(default_factory=dict)
    _cond: dict[str, _ConditionSums] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, k = self.channels, self.n_classes
        z = lambda: np.zeros(m, np.float64)  # noqa: E731
        self._ref = {"s1": z(), "s2": z(), "s11": z(), "s22": z(), "s12": z(), "sx": z(), "sxx": z(),
                     "h1": np.zeros((m, k)), "h2": np.zeros((m, k))}

    def add(self, r1: npt.ArrayLike, r2: npt.ArrayLike, ref_mean: npt.ArrayLike,
            conditions: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]]) -> None:
        """One chunk: trials ``(T, M)``, ``ref_mean (T, M)``, ``{name: (mean (T, M), dist_sum (M, K))}``.

        Every call must carry the same condition names.
        """
        a, b, x = (np.asarray(v, np.float64) for v in (r1, r2, ref_mean))
        if not (a.shape == b.shape == x.shape) or a.ndim != 2 or a.shape[1] != self.channels:
            raise ValueError(f"chunk shapes {a.shape}, {b.shape}, {x.shape}; expected (T, {self.channels})")
        if self.n and set(conditions) != set(self._cond):
            raise ValueError(f"conditions {sorted(conditions)} differ from earlier chunks' {sorted(self._cond)}")
        r = self._ref
        r["s1"] += a.sum(0)
        r["s2"] += b.sum(0)
        r["s11"] += (a * a).sum(0)
        r["s22"] += (b * b).sum(0)
        r["s12"] += (a * b).sum(0)
        r["sx"] += x.sum(0)
        r["sxx"] += (x * x).sum(0)
        r["h1"] += count_histogram(a, self.n_classes) * a.shape[0]
        r["h2"] += count_histogram(b, self.n_classes) * b.shape[0]
        for name, (mean, dist_sum) in conditions.items():
            e = np.asarray(mean, np.float64)
            d = np.asarray(dist_sum, np.float64)
            if e.shape != a.shape or d.shape != (self.channels, self.n_classes):
                raise ValueError(f"condition {name!r}: mean {e.shape} / distribution sum {d.shape} do not fit "
                                 f"(T, {self.channels}) / ({self.channels}, {self.n_classes})")
            s = self._cond.get(name)
            if s is None:
                m, k = self.channels, self.n_classes
                s = self._cond[name] = _ConditionSums(*(np.zeros(m) for _ in range(5)), np.zeros((m, k)))
            s.err1 += ((a - e) ** 2).sum(0)
            s.err2 += ((b - e) ** 2).sum(0)
            s.se += e.sum(0)
            s.see += (e * e).sum(0)
            s.sxe += (x * e).sum(0)
            s.hist += d
        self.n += a.shape[0]

    @property
    def conditions(self) -> list[str]:
        return list(self._cond)

    def weights(self) -> np.ndarray:
        n, r = self.n, self._ref
        return np.clip(r["s12"] / n - (r["s1"] / n) * (r["s2"] / n), 0.0, None)

    def result(self, name: str) -> dict[str, Any]:
        """``feve``, ``kl_w``, ``correlation_median``/``_mean`` and the per-channel arrays for one condition."""
        if self.n < 2:
            raise ValueError("need at least 2 time bins")
        n, r, s = self.n, self._ref, self._cond[name]
        m1, m2 = r["s1"] / n, r["s2"] / n
        v1 = r["s11"] / n - m1 ** 2
        v2 = r["s22"] / n - m2 ** 2
        vdiff = (r["s11"] + r["s22"] - 2 * r["s12"]) / n - (m1 - m2) ** 2
        noise = 0.5 * vdiff
        c = 0.5 * (s.err1 + s.err2) / n
        explainable = 0.5 * (v1 + v2) - noise
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(explainable > 1e-12, 1.0 - (c - noise) / explainable, np.nan)
        w = self.weights()
        h1, h2 = r["h1"] / n, r["h2"] / n
        hhat = s.hist / n
        kl = 0.5 * (kl_divergence(hhat, h1) + kl_divergence(hhat, h2))
        mx, me = r["sx"] / n, s.se / n
        vx = r["sxx"] / n - mx ** 2
        ve = s.see / n - me ** 2
        cov = s.sxe / n - mx * me
        den = np.sqrt(np.clip(vx, 0, None) * np.clip(ve, 0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.where(den > 1e-12, np.clip(cov / den, -1.0, 1.0), np.nan)
        finite = corr[np.isfinite(corr)]
        return {
            "feve": _weighted_mean(f, w),
            "kl_w": _weighted_mean(kl, w),
            "correlation_median": float(np.median(finite)) if finite.size else math.nan,
            "correlation_mean": float(np.mean(finite)) if finite.size else math.nan,
            "channels_weighted": int(np.count_nonzero((w > 0) & np.isfinite(f))),
            "bins": int(n),
            "per_channel": {"feve": f, "kl": kl, "correlation": corr, "weight": w},
        }


__all__ = ["FidelityAccumulator", "KL_EPS", "N_CLASSES", "channel_correlation", "count_histogram",
           "cross_trial_weights", "feve", "feve_per_channel", "gap_closed", "kl_divergence", "kl_w", "snr_db"]
