"""CAMFIT compressive fitting: our numpy version equals pyclarity's ``gainrule_camfit_compr``."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, NAMED_AUDIOGRAMS
from toolchain.fitting.camfit import CAMFIT_CENTRES_HZ, CAMFIT_EDGES_HZ, MINIMA_DISTANCE_DB, camfit_fit


@pytest.mark.parametrize("name", ["N2", "N3", "N4", "N5", "S2", "S3", "mild-flat", "normal"])
def test_gain_table_matches_pyclarity(name: str) -> None:
    from clarity.enhancer.gha.gainrule_camfit import gainrule_camfit_compr
    from clarity.utils.audiogram import Audiogram as ClarityAudiogram

    thr = np.asarray(NAMED_AUDIOGRAMS[name], np.float64)
    levels = np.arange(-10, 111).astype(np.float64)
    ear = ClarityAudiogram(levels=thr, frequencies=np.asarray(AUDIOGRAM_FREQS_HZ, np.float64))
    want, _, _ = gainrule_camfit_compr(ear, ear, {"frequencies": CAMFIT_CENTRES_HZ,
                                                  "edge_frequencies": CAMFIT_EDGES_HZ, "levels": levels})
    fit = camfit_fit(thr)
    np.testing.assert_allclose(fit.gain_db(levels), want[:, :, 0], atol=1e-9)


def test_ratios_grow_with_the_loss_and_join_minima_to_threshold() -> None:
    mild, severe = camfit_fit(np.asarray(NAMED_AUDIOGRAMS["N2"])), camfit_fit(np.asarray(NAMED_AUDIOGRAMS["N4"]))
    assert np.all(severe.ratio >= mild.ratio) and np.all(mild.ratio >= 1) and np.all(severe.ratio <= 38 / 13 + 1e-12)
    # Where the ratio is not clamped, lmid gets the linear insertion gain and lmin the gain to threshold.
    f = severe
    free = (f.ratio > 1) & (f.ratio < MINIMA_DISTANCE_DB / 13 - 1e-9)
    assert free.any()
    g_mid = f.gmin_db + (f.lmid_db - f.lmin_db) * (1 / f.ratio - 1)
    np.testing.assert_allclose(g_mid[free], f.insertion_gain_db[free], atol=1e-9)
