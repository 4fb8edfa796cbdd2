"""CARFAC in torch: google/carfac reference vectors, causality, gradients, batching, hearing-loss fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain.audio.audiogram import PRESETS
from toolchain.models.hearing.carfac import Carfac, SaiParams, sai
from toolchain.models.hearing.carfac_fit import fit_audiogram, tone_thresholds

FIXTURE = Path(__file__).parent / "fixtures" / "carfac" / "reference_nap.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", ["tone", "click", "speech"])
def test_nap_matches_google_reference(reference: dict[str, np.ndarray], name: str) -> None:
    fs = float(reference[f"{name}_fs"])
    model = Carfac(fs)
    np.testing.assert_allclose(model.pole_freqs, reference[f"{name}_pole_freqs"], rtol=1e-12)
    x = torch.from_numpy(reference[f"{name}_input"])
    nap = model(x).T.numpy()
    ref = reference[f"{name}_nap"].astype(np.float64)
    assert nap.shape == ref.shape
    assert _rel(nap, ref) <= 1e-4, _rel(nap, ref)
    # float32 is the training dtype: looser, but still close
    nap32 = model(x.float()).T.double().numpy()
    assert _rel(nap32, ref) <= 1e-3, _rel(nap32, ref)


def test_sai_matches_google_reference(reference: dict[str, np.ndarray]) -> None:
    nap = torch.from_numpy(reference["speech_nap"].astype(np.float64).T)[None]
    out = sai(nap, SaiParams.for_rate(16000))[0].numpy()
    ref = reference["speech_sai"].astype(np.float64)
    assert out.shape == ref.shape
    assert _rel(out, ref) <= 1e-4


def test_causal_and_batched() -> None:
    model = Carfac(16000.0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(0.05 * rng.standard_normal((2, 400)))
    y = x.clone()
    y[:, 250:] += 0.3  # a change from sample 250 on
    a, b = model(x), model(y)
    assert torch.equal(a[..., :250], b[..., :250])
    assert not torch.allclose(a[..., 250:], b[..., 250:])
    single = model(x[1])
    torch.testing.assert_close(single, a[1], rtol=1e-10, atol=1e-12)
    assert a.dtype == torch.float64 and model(x.float()).dtype == torch.float32


def test_gradients_reach_the_input() -> None:
    model = Carfac(16000.0)
    x = (0.05 * torch.randn(1, 300, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    nap = model(x)
    nap.pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(x.grad.abs().max()) > 0
    # the gradient is causal too: the NAP up to t does not depend on later input
    x2 = x.detach().clone().requires_grad_(True)
    model(x2)[..., :100].sum().backward()
    assert float(x2.grad[:, 100:].abs().max()) == 0.0
    assert float(x2.grad[:, :100].abs().max()) > 0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="ohc_health"):
        Carfac(16000.0, ohc_health=np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        Carfac(16000.0)(torch.zeros(1, 1, 10))


def test_fitted_thresholds_match_the_moderate_sloping_audiogram() -> None:
    target = np.asarray(PRESETS["moderate-sloping"], dtype=np.float64)
    fit = fit_audiogram(target, 22050.0)
    assert fit.freqs_hz == (250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0)
    impaired = fit.model()
    # measured again, on the fitted model itself, against the normal model's thresholds
    shift = tone_thresholds(impaired, fit.freqs_hz) - fit.normal_thresholds_db_spl
    assert np.max(np.abs(shift - target)) <= 5.0, (shift, target)
    assert np.all(fit.ohc_health <= 1.0) and np.min(fit.ohc_health) < 0.5
