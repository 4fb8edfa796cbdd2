"""The classic fittings as complete, causal processors: NAL-R, and NAL-R + WDRC.

``nalr``: the minimum-phase NAL-R FIR of :mod:`toolchain.fitting.prescription` (the magnitude
of pyclarity's 220-tap linear-phase NAL-R without its 6.9 ms delay: what a 1 ms device can do).
``wdrc``: the CAMFIT-fitted multi-band compressor of :mod:`toolchain.fitting.wdrc` followed by
that FIR, the Clarity challenges' "NAL-R + compressor" baseline; the compressor reads its levels
at the input, where CAMFIT's band levels are defined, and is 0 dB for 65 dB SPL speech, so the
two differ only away from conversational level. ``toolchain fit`` and ``toolchain evaluate``
both run these functions, so the evaluated baseline is the one a user gets.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.signal import lfilter

from toolchain.fitting.prescription import nalr_fir
from toolchain.fitting.wdrc import wdrc_for

#: Taps of the NAL-R FIR: pyclarity's order (``NALR(nfir=220)``), here minimum phase.
NALR_FIR_TAPS = 220
METHODS: tuple[str, ...] = ("nalr", "wdrc")
LABELS = {"nalr": "NAL-R", "wdrc": "NAL-R + WDRC"}


def nalr(x: np.ndarray, thresholds_db_hl: np.ndarray, sample_rate: int) -> np.ndarray:
    """NAL-R for the audiogram: the minimum-phase FIR, causal, float32 out."""
    h = nalr_fir(np.asarray(thresholds_db_hl, np.float64), int(sample_rate), NALR_FIR_TAPS)
    return lfilter(h, [1.0], np.asarray(x, np.float64)).astype(np.float32)


def nalr_wdrc(x: np.ndarray, thresholds_db_hl: np.ndarray, sample_rate: int) -> np.ndarray:
    """NAL-R + WDRC for the audiogram: the CAMFIT compressor, then the NAL-R FIR."""
    y = wdrc_for(np.asarray(thresholds_db_hl, np.float64)).process(np.asarray(x, np.float64), int(sample_rate))
    return nalr(y, thresholds_db_hl, sample_rate)


PROCESSORS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {"nalr": nalr, "wdrc": nalr_wdrc}


def fit_process(method: str, x: np.ndarray, thresholds_db_hl: np.ndarray, sample_rate: int) -> np.ndarray:
    """Run the classic fitting ``method`` (``nalr`` or ``wdrc``) for an audiogram on mono audio."""
    if method not in PROCESSORS:
        raise ValueError(f"unknown fitting method {method!r}; expected one of {', '.join(METHODS)}")
    return PROCESSORS[method](x, thresholds_db_hl, sample_rate)
