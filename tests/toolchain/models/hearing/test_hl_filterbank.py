"""Tests for the differentiable filterbank hearing-loss model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, PRESETS, Audiogram
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.models.hearing.hl_filterbank import (
    ISO389_7_FREE_FIELD_DB_SPL,
    FilterbankHearingLoss,
    FilterbankHLConfig,
)

SR = 16000
NORMAL = torch.zeros(1, 8)
SEVERE = torch.tensor([PRESETS["severe-sloping"]])


@pytest.fixture(scope="module")
def hl() -> FilterbankHearingLoss:
    return FilterbankHearingLoss()


def tone(freq: float, db_spl: float, seconds: float = 0.5) -> torch.Tensor:
    t = np.arange(int(seconds * SR)) / SR
    x = np.sin(2 * np.pi * freq * t)
    return torch.tensor(DEFAULT_CALIBRATION.set_level(x, db_spl))[None]


def speech_like(db_spl: float, seed: int = 0, seconds: float = 0.5) -> torch.Tensor:
    """Amplitude-modulated pink-ish noise at a given level."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec /= np.sqrt(np.maximum(f, 50.0))
    x = np.fft.irfft(spec, n) * (1.2 + np.sin(2 * np.pi * 4 * np.arange(n) / SR))
    return torch.tensor(DEFAULT_CALIBRATION.set_level(x, db_spl))[None]


def steady(p: torch.Tensor) -> torch.Tensor:
    """Drop the edge frames (zero-padded STFT) and average over time."""
    return p[..., 4:-4].mean(dim=-1)


def test_shapes_and_frames(hl: FilterbankHearingLoss) -> None:
    x = torch.randn(3, 8000) * 0.05
    a = torch.tensor([PRESETS["normal"], PRESETS["mild-flat"], PRESETS["severe-sloping"]])
    p = hl(x, a)
    assert p.shape == (3, hl.config.n_bands, hl.num_frames(8000))
    assert p.shape[-1] == 1 + 8000 // hl.config.hop
    assert torch.isfinite(p).all() and (p >= 0).all()
    assert hl.perceived_normal(x).shape == p.shape
    with pytest.raises(ValueError, match="audiograms"):
        hl(x, a[:2])


def test_calibrated_tone_level(hl: FilterbankHearingLoss) -> None:
    # A tone at a band centre keeps (almost) all its power in that band: its level is the SPL.
    band = 20
    x = tone(float(hl.centre_freqs_hz[band]), 70.0)
    levels = steady(hl.band_levels_db_spl(x))[0]
    assert int(levels.argmax()) == band
    assert float(levels[band]) == pytest.approx(70.0, abs=0.5)
    # Powers over all bands sum to the mean square of broadband noise in the covered range.
    noise = speech_like(65.0)
    total = steady(hl.band_powers(noise)).sum()
    assert float(DEFAULT_CALIBRATION.power_to_db_spl(float(total))) == pytest.approx(65.0, abs=1.0)


def test_gradient_flows_to_input(hl: FilterbankHearingLoss) -> None:
    x = (speech_like(60.0)).clone().requires_grad_(True)
    a = torch.tensor([PRESETS["moderate-sloping"]], requires_grad=True)
    hl(x, a).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert a.grad is not None and torch.isfinite(a.grad).all()
    # Even 20 dB below a severe threshold the input still gets a gradient (soft floor).
    q = speech_like(40.0).clone().requires_grad_(True)
    hl(q, SEVERE).mean().backward()
    assert q.grad.abs().sum() > 0


def test_recruitment_soft_sounds_drop_more(hl: FilterbankHearingLoss) -> None:
    band = 17  # ≈ 2.1 kHz: severe-sloping is ≈ 75 dB HL there
    f = float(hl.centre_freqs_hz[band])
    drop = {}
    for level in (50.0, 100.0):
        x = tone(f, level)
        normal = float(steady(hl(x, NORMAL))[0, band])
        severe = float(steady(hl(x, SEVERE))[0, band])
        assert severe < normal
        drop[level] = normal - severe
    assert drop[50.0] > 40.0            # soft: nearly inaudible to the impaired ear
    assert drop[100.0] < 15.0           # loud: close to normal loudness (recruitment)
    assert drop[50.0] > 4 * drop[100.0]
    # Below the elevated threshold the sound is (softly) inaudible.
    assert float(steady(hl(tone(f, 50.0), SEVERE))[0, band]) < 1.0
    # Normal ear: perceived level is the sensation level L - T0 well above threshold.
    t0 = float(hl.threshold_in_quiet[band])
    assert float(steady(hl(tone(f, 60.0), NORMAL))[0, band]) == pytest.approx(60.0 - t0, abs=1.0)


@pytest.mark.parametrize("preset, soft, loud", [("normal", 45.0, 65.0), ("moderate-sloping", 55.0, 75.0),
                                               ("severe-sloping", 75.0, 95.0)])
def test_louder_input_is_perceived_louder(hl: FilterbankHearingLoss, preset: str, soft: float,
                                          loud: float) -> None:
    a = torch.tensor([PRESETS[preset]])
    quiet, loud = speech_like(soft), speech_like(loud)
    pq, pl = steady(hl(quiet, a)), steady(hl(loud, a))
    assert (pl >= pq).all()
    assert float(pl.mean()) > float(pq.mean()) + 5.0


def test_thresholds_interpolate_at_audiogram_frequencies(hl: FilterbankHearingLoss) -> None:
    ag = Audiogram.preset("moderate-sloping")
    a = torch.from_numpy(ag.as_array()[None])
    at_freqs = hl.thresholds_db_spl(a, AUDIOGRAM_FREQS_HZ)[0].numpy()
    expected = np.asarray(ag.thresholds_db_hl) + np.asarray(ISO389_7_FREE_FIELD_DB_SPL)
    np.testing.assert_allclose(at_freqs, expected, atol=1e-4)
    # Between and outside the audiogram frequencies: Audiogram.at_frequencies + interpolated RETSPL.
    freqs = np.array([100.0, 350.0, 1500.0, 5000.0, 7000.0, 9000.0])
    retspl = np.interp(np.log2(freqs), np.log2(AUDIOGRAM_FREQS_HZ), ISO389_7_FREE_FIELD_DB_SPL)
    np.testing.assert_allclose(hl.thresholds_db_spl(a, freqs)[0].numpy(), ag.at_frequencies(freqs) + retspl, atol=1e-4)
    # The per-band thresholds are the same interpolation at the band centres.
    bands = hl.band_thresholds_db_spl(a)[0].numpy()
    np.testing.assert_allclose(bands, hl.thresholds_db_spl(a, hl.centre_freqs_hz)[0].numpy(), atol=1e-4)
    # Normal audiogram: the threshold in quiet.
    np.testing.assert_allclose(hl.band_thresholds_db_spl(NORMAL)[0].numpy(), hl.threshold_in_quiet.numpy())


def test_thresholds_capped_below_ucl(hl: FilterbankHearingLoss) -> None:
    a = torch.full((1, 8), 120.0)
    t = hl.band_thresholds_db_spl(a)
    assert float(t.max()) <= hl.config.ucl_db_spl - hl.config.min_dynamic_range_db + 1e-4
    assert torch.isfinite(hl(speech_like(90.0), a)).all()


def test_batch_items_independent(hl: FilterbankHearingLoss) -> None:
    x = torch.cat([speech_like(60.0, seed=1), speech_like(70.0, seed=2), speech_like(50.0, seed=3)])
    a = torch.tensor([PRESETS["normal"], PRESETS["severe-sloping"], PRESETS["noise-notch"]])
    batched = hl(x, a)
    for i in range(3):
        alone = hl(x[i:i + 1], a[i:i + 1])
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-5, atol=1e-4)
    # Changing one item's audiogram leaves the others untouched.
    a2 = a.clone()
    a2[1] = 0.0
    other = hl(x, a2)
    torch.testing.assert_close(other[[0, 2]], batched[[0, 2]])
    assert not torch.allclose(other[1], batched[1])


def test_broadening_spreads_with_loss() -> None:
    hl_b = FilterbankHearingLoss(FilterbankHLConfig(broadening_per_db=0.03))
    x = tone(float(hl_b.centre_freqs_hz[14]), 90.0)
    normal = steady(hl_b.band_levels_db_spl(x))
    # For a normal ear broadening does nothing; for a loss the tone leaks into neighbours.
    torch.testing.assert_close(hl_b(x, NORMAL), FilterbankHearingLoss()(x, NORMAL))
    flat = torch.full((1, 8), 60.0)
    p = steady(hl_b(x, flat))[0]
    p0 = steady(FilterbankHearingLoss()(x, flat))[0]
    assert float(p[10]) > float(p0[10]) + 3.0
    assert normal.shape[1] == hl_b.n_bands


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="no FFT bin"):
        FilterbankHearingLoss(FilterbankHLConfig(n_fft=128, hop=64, n_bands=32))
    with pytest.raises(ValueError, match="threshold_in_quiet"):
        FilterbankHLConfig(threshold_in_quiet_db_spl=(0.0,) * 7)
    with pytest.raises(ValueError, match="unknown"):
        FilterbankHLConfig.from_dict({"bands": 3})
    cfg = FilterbankHLConfig.from_dict(FilterbankHLConfig().to_dict())
    assert cfg == FilterbankHLConfig()
    assert math.isfinite(FilterbankHearingLoss(cfg).floor_power)
