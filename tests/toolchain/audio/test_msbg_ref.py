"""pyclarity MSBG wrapped for 16 kHz and our calibration, delay removed (seed 003 impulse method)."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.audio.audiogram import Audiogram
from toolchain.audio.levels import level_db_spl, set_level
from toolchain.audio.msbg_ref import MSBGReference


@pytest.fixture(scope="module")
def ref() -> MSBGReference:
    return MSBGReference()


def _tone(f: float, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.sin(2 * np.pi * f * t).astype(np.float32)


def test_normal_hearing_keeps_level_and_length(ref):
    x = set_level(_tone(1000.0), 70.0)
    y = ref.simulate(x, Audiogram.preset("normal"))
    assert y.shape == x.shape and y.dtype == np.float32
    assert abs(level_db_spl(y[4000:-4000]) - 70.0) < 2.0


def test_loss_attenuates_more_at_high_frequencies_for_a_sloping_audiogram(ref):
    a = Audiogram.preset("moderate-sloping")
    lo = ref.simulate(set_level(_tone(500.0), 65.0), a)
    hi = ref.simulate(set_level(_tone(4000.0), 65.0), a)
    assert level_db_spl(lo[4000:-4000]) - level_db_spl(hi[4000:-4000]) > 10.0


def test_delay_is_removed_by_the_impulse_method(ref):
    a = Audiogram.preset("normal")
    assert 900 < ref.delay_samples(a) < 1500  # ~25 ms of FIR stages at 44.1 kHz
    x = np.zeros(16000, np.float32)
    x[8000] = 0.5
    y = ref.simulate(x, a)
    assert abs(int(np.argmax(np.abs(y))) - 8000) <= 2


def test_bad_input(ref):
    with pytest.raises(ValueError, match="mono"):
        ref.simulate(np.zeros((2, 100)), Audiogram.preset("normal"))
    with pytest.raises(ValueError, match="NaN"):
        ref.simulate(np.array([0.0, np.nan]), Audiogram.preset("normal"))
    assert not np.any(ref.simulate(np.zeros(500), Audiogram.preset("normal")))
