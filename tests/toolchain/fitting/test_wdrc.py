"""The CAMFIT-fitted WDRC: its measured static input/output curve is the fitted ratios and thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.audio.audiogram import NAMED_AUDIOGRAMS
from toolchain.audio.levels import DEFAULT_CALIBRATION as CAL
from toolchain.fitting.camfit import MINIMA_DISTANCE_DB, camfit_fit
from toolchain.fitting.wdrc import WDRC, CrossoverBank, wdrc_for

SR = 16000


def _steady_band_levels(w: WDRC, band: int, level_db: float) -> tuple[float, float]:
    """(band input level, band output level) in dB SPL over the last half of 0.6 s of a tone at the band centre."""
    t = np.arange(int(0.6 * SR)) / SR
    x = CAL.set_level(np.sin(2 * np.pi * w.centres_hz[band] * t), level_db)
    _, bands, gains = w.process(x, SR, return_bands=True)
    tail = slice(len(t) // 2, None)
    return float(CAL.level_db_spl(bands[band][tail])), float(CAL.level_db_spl((bands[band] * gains[band])[tail]))


@pytest.mark.parametrize("name", ["N3", "S3"])
def test_static_io_curve_matches_fitted_ratios_and_thresholds(name: str) -> None:
    fit = camfit_fit(np.asarray(NAMED_AUDIOGRAMS[name]))
    w = WDRC.from_camfit(fit)
    np.testing.assert_array_equal(w.ratio, fit.ratio)
    np.testing.assert_allclose(w.threshold_db, fit.lmid_db - MINIMA_DISTANCE_DB)
    for band in (2, 4, 6):
        ct, cr, ref = w.threshold_db[band], w.ratio[band], w.reference_db[band]
        above = [_steady_band_levels(w, band, ct + d) for d in (20.0, 45.0)]  # tone level; the band reads ~5 dB less
        (i1, o1), (i2, o2) = above
        assert i1 > ct + 3 and i2 > i1 + 20
        assert (o2 - o1) / (i2 - i1) == pytest.approx(1 / cr, abs=0.01)           # slope 1/CR above threshold
        assert o1 - i1 == pytest.approx((1 / cr - 1) * (i1 - ref), abs=0.2)       # 0 dB gain at Lmid
        below = [_steady_band_levels(w, band, ct + d) for d in (-15.0, -5.0)]
        (j1, p1), (j2, p2) = below
        assert j2 < ct and (p2 - p1) / (j2 - j1) == pytest.approx(1.0, abs=0.01)  # linear below threshold
        assert p1 - j1 == pytest.approx((1 / cr - 1) * (ct - ref), abs=0.2)       # the gain at threshold


def test_crossover_bands_sum_flat_and_the_compressor_is_causal() -> None:
    w = wdrc_for(np.asarray(NAMED_AUDIOGRAMS["N4"]))
    imp = np.zeros(4096)
    imp[0] = 1.0
    h = CrossoverBank(w.crossovers_hz, SR).split(imp).sum(axis=0)
    assert np.max(np.abs(20 * np.log10(np.abs(np.fft.rfft(h))))) < 0.01
    rng = np.random.default_rng(0)
    x = CAL.set_level(rng.standard_normal(8000), 65.0)
    y = w.process(x, SR)
    x2 = x.copy()
    x2[5000:] = CAL.set_level(rng.standard_normal(3000), 90.0)  # a loud future changes nothing before it
    y2 = w.process(x2, SR)
    np.testing.assert_array_equal(y[:5000], y2[:5000])
    assert not np.allclose(y[5000:], y2[5000:])


def test_bad_parameters_are_refused() -> None:
    w = wdrc_for(np.asarray(NAMED_AUDIOGRAMS["N2"]))
    with pytest.raises(ValueError, match="ratios"):
        WDRC(w.crossovers_hz, w.centres_hz, np.full(8, 0.5), w.threshold_db, w.reference_db)
    with pytest.raises(ValueError, match="one value per band"):
        WDRC(w.crossovers_hz, w.centres_hz[:3], w.ratio, w.threshold_db, w.reference_db)
    with pytest.raises(ValueError, match="crossovers"):
        CrossoverBank(np.array([1000.0, 500.0]), SR)
