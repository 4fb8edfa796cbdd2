"""pyclarity wrappers: HASPI v2 at the project's level calibration, NAL-R, alignment."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.audio import clarity
from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, PRESETS
from toolchain.audio.clarity import align, clarity_tools, haspi, haspi_level1, nalr_filter, nalr_process
from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration

FS = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """One second of held-out synthetic speech at a conversational 65 dB SPL."""
    from toolchain.audio.data import CorpusConfig, SyntheticCorpus

    cfg = CorpusConfig(sample_rate=FS, seconds=1.0, speech_level_db_spl=(65.0, 65.0), noise_probability=0.0)
    x = SyntheticCorpus("test", cfg, seed=0, size=1)[0].clean
    assert DEFAULT_CALIBRATION.level_db_spl(x) == pytest.approx(65.0, abs=0.01)
    return x


def test_haspi_of_identical_signals_with_normal_hearing_is_one(speech):
    # Measured 0.999986 (pyclarity 0.9.0): HASPI's ceiling; anything lower means the wrapper
    # changed the signals (dtype, rate, scaling) on the way in.
    assert haspi(speech, speech, FS, PRESETS["normal"]) == pytest.approx(1.0, abs=1e-4)


def test_level1_is_the_projects_calibration():
    # pyclarity's level1 is the dB SPL of RMS 1.0: a full-scale sine (RMS 1/√2) at 100 dB SPL → 103.01.
    assert haspi_level1() == pytest.approx(100.0 + 20 * np.log10(np.sqrt(2.0)), abs=1e-9)
    assert haspi_level1(LevelCalibration(full_scale_sine_db_spl=110.0)) == pytest.approx(113.0103, abs=1e-4)


def test_severe_loss_at_conversational_level_is_calibrated(speech):
    """Identical signals through a severe loss: how much is audible decides the score, so a level
    calibration 20 dB off either way lands far outside the band (measured 0.008 and 0.92)."""
    severe = PRESETS["severe-sloping"]
    s = haspi(speech, speech, FS, severe)
    assert 0.05 < s < 0.5, s
    louder = haspi(speech, speech, FS, severe, LevelCalibration(full_scale_sine_db_spl=120.0))
    assert louder > s + 0.4, (s, louder)
    assert haspi(speech, speech, FS, PRESETS["moderate-sloping"]) > s + 0.4


def test_seeded_haspi_is_reproducible_and_leaves_numpy_alone(speech):
    """pyclarity's ear model draws threshold noise from numpy's global generator: the seed pins it."""
    _, _, why = clarity_tools()
    severe = PRESETS["severe-sloping"]  # near threshold, where that noise matters
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = haspi(speech, 1.5 * speech, FS, severe, seed=7)
    assert np.array_equal(np.random.get_state()[1], before), why  # the caller's stream is untouched
    np.random.standard_normal(10)  # a different global state must not change the seeded score
    assert haspi(speech, 1.5 * speech, FS, severe, seed=7) == a


def test_haspi_decreases_with_added_noise(speech):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(speech)).astype(np.float32)
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2))
    normal = PRESETS["normal"]
    clean = haspi(speech, speech, FS, normal)
    s10 = haspi(speech, speech + noise * 10 ** (-10 / 20), FS, normal)
    s0 = haspi(speech, speech + noise, FS, normal)
    assert clean > s10 > s0, (clean, s10, s0)


def _gain_db(h: np.ndarray, freq_hz: float) -> float:
    n = 1 << 14
    spectrum = np.abs(np.fft.rfft(h, n))
    return float(20 * np.log10(spectrum[int(round(freq_hz * n / FS))]))


def test_nalr_gain_rises_with_the_threshold_at_high_frequencies():
    _, NALR, why = clarity_tools()
    assert NALR is not None, why
    gains = {name: _gain_db(nalr_filter(NALR, FS, PRESETS[name]), 4000.0)
             for name in ("normal", "mild-flat", "moderate-sloping", "severe-sloping")}
    assert abs(gains["normal"]) < 0.1, gains  # no loss, no gain: a pure delay
    assert gains["normal"] < gains["mild-flat"] < gains["moderate-sloping"] < gains["severe-sloping"], gains
    # A sloping loss gets more gain at 4 kHz than at 250 Hz.
    h = nalr_filter(NALR, FS, PRESETS["moderate-sloping"])
    assert _gain_db(h, 4000.0) > _gain_db(h, 250.0) + 10


def test_nalr_process_removes_the_filter_delay():
    _, NALR, _ = clarity_tools()
    x = np.random.default_rng(1).standard_normal(4000).astype(np.float32) * 0.05
    y = nalr_process(NALR, x, FS, PRESETS["normal"])
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1e-6)  # normal hearing: NAL-R is a pure delay, removed


def test_align_finds_the_delay():
    x = np.random.default_rng(2).standard_normal(2000).astype(np.float32)
    delayed = np.concatenate([np.zeros(7, np.float32), x[:-7]])
    y, lag = align(x, delayed, max_lag=40)
    assert lag == 7
    np.testing.assert_array_equal(y[:-7], x[:-7])
    assert not y[-7:].any()
    # The same lag as one dot product per lag (the definition), on noise with an echo.
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(3000)
    proc = 0.5 * np.roll(ref, 23) + 0.3 * np.roll(ref, 5) + 0.1 * rng.standard_normal(3000)
    brute = int(np.argmax([np.dot(ref[: 3000 - k], proc[k:]) for k in range(41)]))
    assert align(ref, proc, 40)[1] == brute == 23
    assert align(x, np.zeros_like(x), 40)[1] == 0


def test_haspi_without_pyclarity_says_so(monkeypatch):
    monkeypatch.setattr(clarity, "clarity_tools", lambda: (None, None, clarity.NOT_INSTALLED))
    with pytest.raises(RuntimeError, match="pyclarity not installed"):
        haspi(np.ones(100), np.ones(100), FS, [0.0] * len(AUDIOGRAM_FREQS_HZ))


def test_fft_envelope_filter_gives_the_same_haspi_and_hasqi_is_seeded(speech):
    from clarity.evaluator.haspi import ebm

    thr = PRESETS["moderate-sloping"]
    x = speech[:8000]
    noisy = x + 0.3 * np.random.default_rng(1).standard_normal(len(x)).astype(np.float32) * np.std(x)
    haspi_v2, _, _ = clarity_tools()
    lv1 = haspi_level1()
    direct = clarity.haspi_score(haspi_v2, x, noisy * 2, 16000, thr, AUDIOGRAM_FREQS_HZ, lv1, seed=3)
    original = ebm.convolve2d
    with clarity.fast_envelope_filter():
        assert ebm.convolve2d is not original
        fast = clarity.haspi_score(haspi_v2, x, noisy * 2, 16000, thr, AUDIOGRAM_FREQS_HZ, lv1, seed=3)
    assert ebm.convolve2d is original  # restored
    assert fast == pytest.approx(direct, abs=1e-9) and 0 < fast < 1
    key, hp, hq = clarity.score_pair(("k", x, noisy * 2, 16000, thr, lv1, 3))
    assert key == "k" and hp == pytest.approx(direct, abs=1e-9)
    assert hq == clarity.hasqi_score(x, noisy * 2, 16000, thr, AUDIOGRAM_FREQS_HZ, lv1, seed=3) and 0 < hq < 1
    assert clarity.hasqi_score(x, x, 16000, [0.0] * 8, AUDIOGRAM_FREQS_HZ, lv1, seed=3) > hq
