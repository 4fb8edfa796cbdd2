"""The classic baselines as processors: NAL-R's gain at the audiogram frequencies, NAL-R + WDRC's level dependence."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, NAMED_AUDIOGRAMS
from toolchain.audio.data import speech_shaped_noise
from toolchain.audio.levels import DEFAULT_CALIBRATION as CAL
from toolchain.fitting.baselines import fit_process, nalr, nalr_wdrc
from toolchain.fitting.prescription import fir_response_db, nalr_response_db

SR = 16000


@pytest.mark.parametrize("name", ["N2", "N4", "S2", "moderate-sloping"])
def test_nalr_path_reproduces_the_prescription_within_1_db(name: str) -> None:
    thr = np.asarray(NAMED_AUDIOGRAMS[name], np.float64)
    imp = np.zeros(2048, np.float32)
    imp[0] = 1.0
    h = nalr(imp, thr, SR).astype(np.float64)
    err = fir_response_db(h, AUDIOGRAM_FREQS_HZ, SR) - nalr_response_db(thr, AUDIOGRAM_FREQS_HZ, SR)
    assert np.max(np.abs(err)) < 1.0
    assert np.argmax(np.abs(h)) < 8  # minimum phase: the energy is at the start, no 110-sample delay


def test_wdrc_gives_soft_speech_more_gain_and_loud_speech_less_than_nalr() -> None:
    thr = np.asarray(NAMED_AUDIOGRAMS["N3"], np.float64)
    noise = speech_shaped_noise(SR * 2, np.random.default_rng(0), SR)
    extra = {}
    for level in (50.0, 65.0, 80.0):
        x = CAL.set_level(noise, level)
        tail = slice(SR // 2, None)
        extra[level] = CAL.level_db_spl(nalr_wdrc(x, thr, SR)[tail]) - CAL.level_db_spl(nalr(x, thr, SR)[tail])
    assert abs(extra[65.0]) < 3.0  # 0 dB compressor gain at the 65 dB speech band levels
    assert extra[50.0] > extra[65.0] + 4 and extra[80.0] < extra[65.0] - 4
    with pytest.raises(ValueError, match="unknown fitting method"):
        fit_process("fig6", noise, thr, SR)
