"""CAMFIT compressive gains: the fitting of the WDRC baseline.

The Cambridge rule for multi-channel compression (Moore, Alcántara, Stone & Glasberg, "Use of a
loudness model for hearing aid fitting: II. Hearing aids with multi-channel compression", Br. J.
Audiol. 33, 1999; its linear insertion gains from Moore & Glasberg, Br. J. Audiol. 32, 1998), as
openMHA's ``gainrule_camfit_compr`` computes it and pyclarity translates it (the Clarity
challenges' hearing-aid baseline): per band, speech at 65 dB SPL has the band level ``Lmid``
(the international long-term average speech spectrum of Byrne et al. 1994, J. Acoust. Soc. Am.
96(4), third-octave levels at 70 dB less 5 dB); its minima, 38 dB lower (``Lmin``), get the gain
``Gmin`` that puts them at the listener's threshold, ``Lmid`` gets the linear CAMFIT insertion
gain, and the compression ratio is whatever joins the two (at least 1). Written here (numpy only)
and tested against pyclarity's function, which stays a test dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ

#: Band centres and edges (Hz): pyclarity's GHA fitting bands (its ``FittingParams``) up to 8 kHz,
#: so the 16 kHz device covers them all; the last edge is the GHA's, used for the LTASS sum only.
CAMFIT_CENTRES_HZ = np.array([177.0, 297.0, 500.0, 841.0, 1414.0, 2378.0, 4000.0, 6727.0])
CAMFIT_EDGES_HZ = np.array([1e-8, 229.2793, 385.3570, 648.4597, 1090.5, 1833.7, 3084.2, 5187.3, 8724.1])
#: Speech minima that must stay audible lie this far below the 65 dB speech band level (CAMFIT).
MINIMA_DISTANCE_DB = 38.0
#: CAMFIT's floor on the output range it maps the 38 dB of speech into (so CR <= 38/13).
MIN_OUTPUT_RANGE_DB = 13.0

# Byrne et al. 1994 LTASS, third-octave centre frequencies (Hz) and levels (dB SPL) at 70 dB overall.
_LTASS_HZ = np.array([63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500,
                      3150, 4000, 5000, 6300, 8000, 10000, 12500, 16000], np.float64)
_LTASS_DB = np.array([38.6, 43.5, 54.4, 57.7, 56.8, 60.2, 60.3, 59.0, 62.1, 62.1, 60.5, 56.8, 53.7, 53.0, 52.0,
                      48.7, 48.1, 46.8, 45.6, 44.5, 44.3, 43.7, 43.4, 41.3, 40.7])
# ISO 226:2003 threshold in quiet (dB SPL, free field) with ISO 389-7 above 12.5 kHz, as openMHA's isothr.
_ISO_HZ = np.array([0, 20, 25, 31.5, 40, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000,
                    1250, 1600, 2000, 2500, 3150, 4000, 5000, 6300, 8000, 10000, 12500, 14000, 16000, 18000, 20000])
_ISO_DB = np.array([80.0, 78.5, 68.7, 59.5, 51.1, 44.0, 37.5, 31.5, 26.5, 22.1, 17.9, 14.4, 11.4, 8.6, 6.2, 4.4,
                    3.0, 2.2, 2.4, 3.5, 1.7, -1.3, -4.2, -6.0, -5.4, -1.5, 6.0, 12.6, 13.9, 12.3, 18.4, 40.2,
                    73.2, 70.0])
# CAMFIT linear-rule intercepts (dB) at these frequencies; the 5 kHz value holds above it.
_INTERCEPT_HZ = np.array([125, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 5005], np.float64)
_INTERCEPT_DB = np.array([-11, -10, -8, -6, 0, -1, 1, -1, 0, 1, 1], np.float64)


def _log_interp(f_new: np.ndarray, f: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Linear in log frequency, the end values held (how audiograms are resampled)."""
    return np.interp(np.log(f_new), np.log(f), v, left=v[0], right=v[-1])


def speech_band_levels_db(edges_hz: np.ndarray = CAMFIT_EDGES_HZ) -> np.ndarray:
    """Band levels (dB SPL) of 65 dB SPL LTASS speech in the bands between ``edges_hz``: each LTASS
    third octave contributes its intensity in proportion to the part of it the band covers."""
    ltass_edges = np.concatenate(([0.0], np.sqrt(_LTASS_HZ[:-1] * _LTASS_HZ[1:]), [16000 * 2 ** (1 / 6)]))
    lo, hi = ltass_edges[:-1], ltass_edges[1:]
    out = []
    for a, b in zip(edges_hz[:-1], edges_hz[1:]):
        covered = np.clip(np.minimum(b, hi) - np.maximum(a, lo), 0.0, None) / (hi - lo)
        out.append(10 * np.log10(np.sum(10 ** (_LTASS_DB / 10) * covered)) - 5.0)
    return np.array(out)


@dataclass(frozen=True)
class CamfitFit:
    """The CAMFIT compressive fitting for one ear, per band (arrays of ``len(centres_hz)``).

    ``gain_db(L) = Gmin + (L - Lmin) * (1/CR - 1)``: ``Lmin`` gets ``Gmin``, a dB more input gets
    1/CR dB more output. ``insertion_gain_db`` is CAMFIT's linear gain, the one ``Lmid`` gets.
    """

    centres_hz: np.ndarray
    thresholds_db_hl: np.ndarray   # the audiogram at the band centres
    lmid_db: np.ndarray            # band level of 65 dB SPL speech
    lmin_db: np.ndarray            # its minima: lmid - 38 dB
    gmin_db: np.ndarray            # gain that puts lmin at threshold
    insertion_gain_db: np.ndarray  # CAMFIT linear insertion gain (for lmid)
    ratio: np.ndarray              # compression ratio, >= 1

    def gain_db(self, levels_db: np.ndarray, max_output_db: float = 100.0) -> np.ndarray:
        """CAMFIT's gain table ``(len(levels), bands)``: floored at 0 dB and capped so no band's
        output exceeds ``max_output_db`` (as pyclarity's ``gainrule_camfit_compr``)."""
        lv = np.asarray(levels_db, np.float64)[:, None]
        g = self.gmin_db + (lv - self.lmin_db) * (1.0 / self.ratio - 1.0)
        g = np.maximum(g, 0.0)
        g = g - np.maximum(g + lv - max_output_db, 0.0)
        return g * float(np.any(self.thresholds_db_hl != 0))


def camfit_fit(thresholds_db_hl: np.ndarray, freqs_hz: np.ndarray = np.asarray(AUDIOGRAM_FREQS_HZ, np.float64),
               centres_hz: np.ndarray = CAMFIT_CENTRES_HZ, edges_hz: np.ndarray = CAMFIT_EDGES_HZ) -> CamfitFit:
    """Fit CAMFIT's compressive rule to an audiogram (dB HL at ``freqs_hz``)."""
    thr = np.asarray(thresholds_db_hl, np.float64)
    freqs = np.asarray(freqs_hz, np.float64)
    centres = np.asarray(centres_hz, np.float64)
    htl = _log_interp(centres, freqs, thr)
    lmid = speech_band_levels_db(np.asarray(edges_hz, np.float64))
    lmin = lmid - MINIMA_DISTANCE_DB
    conv = np.interp(np.maximum(centres, 50.0), _ISO_HZ, _ISO_DB)  # HL -> SPL (free field)
    gmin = htl + conv - lmin
    ig = np.maximum(0.48 * htl + _log_interp(centres, _INTERCEPT_HZ, _INTERCEPT_DB), 0.0) * float(np.any(htl))
    out_range = np.maximum(lmid + ig - lmin - gmin, MIN_OUTPUT_RANGE_DB)
    ratio = np.maximum(MINIMA_DISTANCE_DB / out_range, 1.0)
    return CamfitFit(centres_hz=centres, thresholds_db_hl=htl, lmid_db=lmid, lmin_db=lmin, gmin_db=gmin,
                     insertion_gain_db=ig, ratio=ratio)
