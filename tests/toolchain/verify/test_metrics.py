"""FEVE (seed 000 Eq. 4), KL_W (Eq. 5), correlation, SNR and the streaming accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.verify.metrics import (
    FidelityAccumulator,
    channel_correlation,
    count_histogram,
    cross_trial_weights,
    feve,
    feve_per_channel,
    gap_closed,
    kl_divergence,
    kl_w,
    snr_db,
)


def _trials(rng: np.random.Generator, t: int = 300, m: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rate = np.clip(1.5 + np.sin(np.arange(t)[:, None] / (3 + np.arange(m))) * 1.2, 0.05, 4)
    r1 = np.clip(rng.poisson(rate), 0, 4)
    r2 = np.clip(rng.poisson(rate), 0, 4)
    return r1, r2, rate


def test_feve_is_one_for_identical_responses():
    rng = np.random.default_rng(0)
    r, _, _ = _trials(rng)
    assert feve(r, r, r) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(feve_per_channel(r, r, r), 1.0)


def test_feve_hand_built_values():
    # Channel 0: R1 = [0,2,0,2] (var 1), R2 = [0,2,2,2] (var 0.75), R1 − R2 = [0,0,−2,0] (var 0.75, σ² = 0.375),
    # prediction [0,2,1,2]: C1 = C2 = 0.25 → f = 1 − (0.25 − 0.375) / (0.875 − 0.375) = 1.25; w = Cov = 0.5.
    # Channel 1: R1 = R2 = [0,1,0,1] (var 0.25, σ² = 0), prediction 0.5: C = 0.25 → f = 0; w = 0.25.
    r1 = np.array([[0, 0], [2, 1], [0, 0], [2, 1]], float)
    r2 = np.array([[0, 0], [2, 1], [2, 0], [2, 1]], float)
    pred = np.array([[0, 0.5], [2, 0.5], [1, 0.5], [2, 0.5]])
    assert np.allclose(feve_per_channel(r1, r2, pred), [1.25, 0.0])
    assert np.allclose(cross_trial_weights(r1, r2), [0.5, 0.25])
    assert feve(r1, r2, pred) == pytest.approx((0.5 * 1.25 + 0.25 * 0.0) / 0.75)
    assert feve(r1, r2, pred, weights=np.ones(2)) == pytest.approx(0.625)
    # A constant prediction of the mean explains nothing: f = 1 − (Var − σ²)/(Var − σ²) = 0 when R1 = R2.
    r = np.array([0.0, 3.0, 1.0, 2.0])
    assert feve(r, r, np.full(4, r.mean())) == pytest.approx(0.0)


def test_feve_ignores_channels_without_explainable_variance():
    rng = np.random.default_rng(1)
    r1, r2, rate = _trials(rng, m=3)
    r1 = r1.astype(float)
    r2 = r2.astype(float)
    r1[:, 2] = 1.0
    r2[:, 2] = 1.0  # a silent-ish constant channel: no explainable variance, weight 0
    f = feve_per_channel(r1, r2, rate)
    assert np.isnan(f[2]) and np.all(np.isfinite(f[:2]))
    assert math.isfinite(feve(r1, r2, rate))


def test_kl_w_zero_for_identical_and_hand_built_value():
    h = np.array([[0.5, 0.5, 0, 0, 0], [0.1, 0.2, 0.3, 0.2, 0.2]])
    w = np.array([1.0, 3.0])
    assert kl_w(h, h, h, weights=w) == 0.0
    # KL(Ĥ‖H) with Ĥ = [.25, .75, 0, 0, 0], H = [.5, .5, 0, 0, 0]: .25 ln .5 + .75 ln 1.5 = 0.130812...
    hhat = np.array([[0.25, 0.75, 0, 0, 0]])
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kl_divergence(hhat, h[:1])[0] == pytest.approx(want, abs=1e-5)
    # Two channels, weights 1 and 3: only channel 0 differs → KL_W = want / 4.
    assert kl_w(h, h, np.vstack([hhat, h[1:]]), weights=w) == pytest.approx(want / 4, abs=1e-5)
    assert kl_divergence(h[:1], hhat)[0] > 0  # asymmetric, still finite


def test_count_histogram_clips_at_four():
    counts = np.array([[0], [1], [1], [4], [7]])
    assert np.allclose(count_histogram(counts), [[0.2, 0.4, 0.0, 0.0, 0.4]])


def test_correlation_snr_and_gap():
    t = np.linspace(0, 1, 100)
    a = np.stack([np.sin(9 * t), t, np.ones_like(t)], 1)
    b = np.stack([2 * np.sin(9 * t) + 1, -t, t], 1)
    r = channel_correlation(a, b)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0) and np.isnan(r[2])
    x = np.sin(np.arange(1000) / 7.0)
    assert snr_db(x, x) == math.inf
    assert snr_db(x, 1.1 * x) == pytest.approx(20.0, abs=1e-9)
    assert gap_closed(0.2, 0.6, 1.0) == pytest.approx(0.5)
    assert gap_closed(0.08, 0.02, 0.0) == pytest.approx(0.75)  # lower-is-better metrics too
    assert gap_closed(0.5, 0.7, 0.5) is None


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_accumulator_equals_direct_formulas(chunks: int, seed: int):
    rng = np.random.default_rng(seed)
    r1, r2, rate = _trials(rng, t=240, m=5)
    pred = np.clip(rate + rng.normal(0, 0.3, rate.shape), 0, 4)
    probs = rng.dirichlet(np.ones(5), size=rate.shape)  # (T, M, 5)
    acc = FidelityAccumulator(5)
    edges = np.linspace(0, 240, chunks + 1).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        acc.add(r1[lo:hi], r2[lo:hi], rate[lo:hi], {"x": (pred[lo:hi], probs[lo:hi].sum(0))})
    res = acc.result("x")
    assert res["feve"] == pytest.approx(feve(r1, r2, pred), rel=1e-9, abs=1e-9)
    w = cross_trial_weights(r1, r2)
    direct_kl = kl_w(count_histogram(r1), count_histogram(r2), probs.mean(0), weights=w)
    assert res["kl_w"] == pytest.approx(direct_kl, rel=1e-9, abs=1e-12)
    corr = channel_correlation(rate, pred)
    assert res["correlation_median"] == pytest.approx(float(np.nanmedian(corr)), abs=1e-9)


def test_accumulator_ceiling_condition_is_near_one():
    """The reference's own expectation against its own sampled trials: FEVE ≈ 1, KL_W ≈ 0."""
    rng = np.random.default_rng(3)
    t, m = 4000, 4
    p = rng.dirichlet(np.ones(5) * 0.7, size=(t, m))
    cdf = p.cumsum(-1)
    draw = lambda: (rng.random((t, m))[..., None] > cdf[..., :-1]).sum(-1)  # noqa: E731
    r1, r2 = draw(), draw()
    mean = (p * np.arange(5)).sum(-1)
    acc = FidelityAccumulator(m)
    acc.add(r1, r2, mean, {"self": (mean, p.sum(0)), "flat": (np.full_like(mean, mean.mean()), p.sum(0))})
    assert acc.result("self")["feve"] == pytest.approx(1.0, abs=0.1)
    assert acc.result("self")["kl_w"] < 1e-2
    assert acc.result("flat")["feve"] < 0.2  # a prediction without time structure explains ~nothing
    with pytest.raises(ValueError, match="differ"):
        acc.add(r1, r2, mean, {"self": (mean, p.sum(0))})
