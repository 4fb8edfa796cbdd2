"""The prescription path: minimum-phase NAL-R FIR, and the SEANet that starts as exactly it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, PRESETS
from toolchain.fitting.prescription import fir_response_db, nalr_fir, nalr_gains_db, nalr_response_db
from toolchain.models.compensators.seanet import SEANet, SEANetConfig
from toolchain.train.losses import envelope_correlation, silence_penalty

PRESCRIBED = SEANetConfig(activation="leaky_relu", kernel_size=48, skip_taps=48, skip_channels=2, prescription="nalr")


@pytest.mark.parametrize("preset", ["mild-flat", "moderate-sloping", "severe-sloping", "presbycusis"])
def test_min_phase_fir_reproduces_nalr_within_1_db(preset: str) -> None:
    thr = np.asarray(PRESETS[preset], np.float64)
    h = nalr_fir(thr, 16000, 48)
    err = fir_response_db(h, AUDIOGRAM_FREQS_HZ, 16000) - nalr_response_db(thr, AUDIOGRAM_FREQS_HZ, 16000)
    assert np.max(np.abs(err)) < 1.0
    energy = h ** 2
    assert (energy * np.arange(len(h))).sum() / energy.sum() < 1.0  # energy delay under one sample


def test_nalr_gains_match_pyclarity() -> None:
    from clarity.enhancer.nalr import NALR

    from toolchain.audio.clarity import clarity_audiogram

    thr = np.asarray(PRESETS["moderate-sloping"], np.float64)
    filt, _ = NALR(nfir=220, sample_rate=16000).build(clarity_audiogram(thr).resample(np.array([250, 500, 1000, 2000, 4000, 6000])))
    got = fir_response_db(np.asarray(filt), [500, 1000, 2000, 4000], 16000)
    want = nalr_gains_db(thr)[1:5]
    assert np.max(np.abs(got - want)) < 1.0


def test_untrained_prescribed_seanet_is_the_prescription_and_fit_matches_forward() -> None:
    torch.manual_seed(0)
    m = SEANet(PRESCRIBED).eval()
    thr = np.asarray(PRESETS["moderate-sloping"], np.float32)
    x = torch.randn(2, 1, 1600) * 0.05
    with torch.no_grad():
        y = m(x, torch.from_numpy(thr).expand(2, -1))
        fitted = m.fit(thr)
        yf = fitted(x)
    h = nalr_fir(thr, 16000, 48)
    direct = np.stack([np.convolve(xi, h)[: x.shape[-1]] for xi in x[:, 0].numpy()])
    assert np.max(np.abs(y[:, 0].numpy() - direct)) < 1e-4
    assert torch.max(torch.abs(y - yf)) < 1e-4
    w = fitted.skip_in.conv.weight[:, 0].numpy()
    assert np.allclose(w.sum(axis=0), h[::-1], atol=1e-6)  # FIR + its int8 residual
    assert all(not p.requires_grad for p in m.skip_in.parameters())


def test_prescription_config_is_checked() -> None:
    with pytest.raises(ValueError, match="prescription"):
        SEANetConfig(prescription="fig6")
    with pytest.raises(ValueError, match="skip_channels = 2"):
        SEANetConfig(kernel_size=48, skip_taps=48, skip_channels=4, prescription="nalr")


def test_envelope_correlation_and_silence_penalty() -> None:
    t = torch.randn(2, 5, 40)
    assert float(envelope_correlation(t, t)) == pytest.approx(1.0, abs=1e-3)
    assert float(envelope_correlation(-t, t)) == pytest.approx(-1.0, abs=1e-3)
    assert float(silence_penalty(torch.zeros(2, 100), 10.0)) == 0.0
    loud = torch.full((2, 100), 0.01)  # ~63 dB SPL
    assert float(silence_penalty(loud, 10.0)) > 40.0
