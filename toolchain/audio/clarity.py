"""pyclarity adapter shared by training, verification and evaluation: HASPI v2, HASQI, NAL-R, alignment.

Level calibration: pyclarity's ``level1`` is the dB SPL of a signal whose RMS is 1.0. The
project's one calibration lives in :mod:`toolchain.audio.levels` (by default a full-scale sine,
RMS 0.707, is 100 dB SPL, so RMS 1.0 is about 103 dB SPL); :func:`haspi_level1` reads it from
there, so a board with another sensitivity changes HASPI's view of the level too.

pyclarity is an optional import: :func:`clarity_tools` returns ``(None, None, reason)`` when it
is missing or broken, and callers report that instead of inventing numbers. The functions that
take ``haspi_v2`` / ``NALR`` as arguments accept both pyclarity's current API (an ``Audiogram``
object) and the older one (hearing loss at 250..6000 Hz as a plain array), and let tests inject
stand-ins.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
from scipy.signal import oaconvolve

from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ
from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration

NOT_INSTALLED = "pyclarity not installed"
NALR_TAPS = 220  # pyclarity's NAL-R FIR order in its recipes (linear phase, delay NALR_TAPS // 2)
# The six frequencies the older pyclarity API (and HASPI's auditory model) takes the loss at.
_HASPI_FREQS_HZ = (250, 500, 1000, 2000, 4000, 6000)


def clarity_tools() -> tuple[Any, Any, str | None]:
    """``(haspi_v2, NALR, None)`` when pyclarity imports, else ``(None, None, reason)``."""
    try:
        # lazy: pyclarity is optional; callers report it missing instead of failing
        from clarity.enhancer.nalr import NALR
        from clarity.evaluator.haspi import haspi_v2
    except ImportError as e:
        missing = getattr(e, "name", "") or ""
        return None, None, NOT_INSTALLED if missing.split(".")[0] in ("clarity", "") else f"pyclarity: {e}"
    except Exception as e:  # a broken install: say what, do not guess numbers
        return None, None, f"pyclarity failed to import ({type(e).__name__}: {str(e)[:80]})"
    return haspi_v2, NALR, None


def haspi_level1(calibration: LevelCalibration = DEFAULT_CALIBRATION) -> float:
    """pyclarity's ``level1``: the dB SPL of an RMS-1.0 signal under ``calibration``."""
    return float(calibration.rms_to_db_spl(1.0))


def clarity_audiogram(thresholds: Sequence[float], freqs: Sequence[float] = AUDIOGRAM_FREQS_HZ) -> Any:
    """pyclarity's ``Audiogram`` for thresholds (dB HL) at ``freqs`` (Hz)."""
    # lazy: pyclarity is optional; callers report it missing instead of failing
    from clarity.utils.audiogram import Audiogram as ClarityAudiogram

    return ClarityAudiogram(levels=np.asarray(thresholds, np.float64), frequencies=np.asarray(freqs, np.float64))


def nalr_filter(NALR: Any, sample_rate: int, thresholds: Sequence[float],
                freqs: Sequence[float] = AUDIOGRAM_FREQS_HZ) -> np.ndarray:
    """pyclarity's NAL-R prescription for the audiogram: a linear-phase FIR of ``NALR_TAPS + 1`` taps."""
    nalr = NALR(nfir=NALR_TAPS, sample_rate=sample_rate)
    params = list(inspect.signature(nalr.build).parameters)
    if params and params[0] == "audiogram":
        filt, _ = nalr.build(clarity_audiogram(thresholds, freqs))
    else:
        filt, _ = nalr.build(np.asarray(thresholds, np.float64), np.asarray(freqs, np.float64))
    return np.asarray(filt, np.float64)


def nalr_process(NALR: Any, x: np.ndarray, sample_rate: int, thresholds: Sequence[float],
                 freqs: Sequence[float] = AUDIOGRAM_FREQS_HZ) -> np.ndarray:
    """Apply pyclarity's NAL-R prescription for the audiogram; the FIR's linear-phase delay is removed."""
    nalr = NALR(nfir=NALR_TAPS, sample_rate=sample_rate)
    filt = nalr_filter(NALR, sample_rate, thresholds, freqs)
    y = np.asarray(nalr.apply(filt, np.asarray(x, np.float64)), np.float64)
    d = NALR_TAPS // 2
    return y[d:d + len(x)].astype(np.float32)


@contextmanager
def _numpy_global_seed(seed: int | None) -> Iterator[None]:
    """Seed numpy's global generator for the block and put its previous state back afterwards."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextmanager
def fast_envelope_filter() -> Iterator[None]:
    """HASPI's envelope low-pass (``clarity.evaluator.haspi.ebm.env_filter``) by FFT instead of direct 2-D convolution.

    ``env_filter`` convolves every band's envelope (32 x 24 000 samples per second) with a Hann
    FIR of ~1700 taps through ``scipy.signal.convolve2d``: 40 % of a HASPI v2 score. Overlap-add
    along the time axis computes the same sums (scores equal to 1e-12; a test checks) in about
    half the CPU time (1.6 -> 0.9 s for 2 s of speech, measured). Other ``convolve2d`` calls pass through.
    """
    try:
        # lazy: pyclarity is optional; callers report it missing instead of failing
        from clarity.evaluator.haspi import ebm
    except ImportError:  # pyclarity missing: clarity_tools() reports it, nothing to speed up
        yield
        return
    direct = ebm.convolve2d

    def by_fft(a: Any, b: Any, mode: str = "full", *args: Any, **kw: Any) -> Any:
        if mode == "full" and not args and not kw and np.ndim(a) == 2 and np.ndim(b) == 2 and np.shape(b)[1] == 1:
            return oaconvolve(a, b, mode="full", axes=0)
        return direct(a, b, mode, *args, **kw)

    ebm.convolve2d = by_fft
    try:
        yield
    finally:
        ebm.convolve2d = direct


def hasqi_score(reference: np.ndarray, processed: np.ndarray, sample_rate: int, thresholds: Sequence[float],
                freqs: Sequence[float], level1: float, *, seed: int | None = None) -> float:
    """HASQI v2 (pyclarity, quality: nonlinear x linear) of ``processed`` against the clean ``reference``.

    As HASPI: the reference is the clean speech into a normal ear, seeded like
    :func:`haspi_score`; ``equalisation=1`` (pyclarity's default) gives the reference NAL-R, so
    the quality is judged against amplified clean speech.
    """
    # lazy: pyclarity is optional; callers report it missing instead of failing
    from clarity.evaluator.hasqi import hasqi_v2

    with _numpy_global_seed(seed):
        score, _, _, _ = hasqi_v2(np.asarray(reference, np.float64), sample_rate, np.asarray(processed, np.float64),
                                  sample_rate, clarity_audiogram(thresholds, freqs), equalisation=1, level1=level1)
    return float(score)


def score_pair(task: tuple[Any, np.ndarray, np.ndarray, int, Sequence[float], float, int]) -> tuple[Any, float, float]:
    """``(key, HASPI v2, HASQI v2)`` of one processed signal: a plain function, so a process pool can run it.

    ``task = (key, reference, processed, sample_rate, thresholds at AUDIOGRAM_FREQS_HZ, level1, seed)``.
    """
    key, reference, processed, sample_rate, thresholds, level1, seed = task
    haspi_v2, _, why = clarity_tools()
    if haspi_v2 is None:
        raise RuntimeError(f"HASPI v2 needs pyclarity ({why})")
    with fast_envelope_filter():
        hp = haspi_score(haspi_v2, reference, processed, sample_rate, thresholds, AUDIOGRAM_FREQS_HZ, level1, seed=seed)
    hq = hasqi_score(reference, processed, sample_rate, thresholds, AUDIOGRAM_FREQS_HZ, level1, seed=seed)
    return key, hp, hq


def haspi_score(haspi_v2: Any, reference: np.ndarray, processed: np.ndarray, sample_rate: int,
                thresholds: Sequence[float], freqs: Sequence[float], level1: float, *, seed: int | None = None) -> float:
    """HASPI v2 of ``processed`` against the clean ``reference`` for the audiogram (pyclarity's API, old or new).

    HASPI runs the reference through a normal-hearing ear model and ``processed`` through the
    impaired one, so ``reference`` is the unamplified clean speech at its presentation level.
    Its ear model adds threshold noise from numpy's *global* generator (scores of the same pair
    differed by up to 0.016 between runs); with ``seed`` that generator is seeded for the call
    and restored after, so the score is reproducible and independent of call order.
    """
    with _numpy_global_seed(seed):
        return _haspi_score(haspi_v2, reference, processed, sample_rate, thresholds, freqs, level1)


def _haspi_score(haspi_v2: Any, reference: np.ndarray, processed: np.ndarray, sample_rate: int,
                 thresholds: Sequence[float], freqs: Sequence[float], level1: float) -> float:
    params = list(inspect.signature(haspi_v2).parameters)
    if "audiogram" in params:
        score, _ = haspi_v2(reference=np.asarray(reference, np.float64), reference_sample_rate=sample_rate,
                            processed=np.asarray(processed, np.float64), processed_sample_rate=sample_rate,
                            audiogram=clarity_audiogram(thresholds, freqs), level1=level1)
    else:  # older pyclarity: hearing loss at 250, 500, 1000, 2000, 4000, 6000 Hz
        six = np.interp(np.log2(_HASPI_FREQS_HZ), np.log2(np.asarray(freqs, np.float64)),
                        np.asarray(thresholds, np.float64))
        score, _ = haspi_v2(np.asarray(reference, np.float64), sample_rate, np.asarray(processed, np.float64),
                            sample_rate, six, level1)
    return float(score)


def haspi(reference: np.ndarray, processed: np.ndarray, sample_rate: int, thresholds: Sequence[float],
          calibration: LevelCalibration = DEFAULT_CALIBRATION, *, seed: int | None = 0) -> float:
    """HASPI v2 with pyclarity and the project's calibration (seeded: see :func:`haspi_score`).

    Raises RuntimeError when pyclarity is missing.
    """
    haspi_v2, _, why = clarity_tools()
    if haspi_v2 is None:
        raise RuntimeError(f"HASPI v2 needs pyclarity ({why})")
    return haspi_score(haspi_v2, reference, processed, sample_rate, thresholds, AUDIOGRAM_FREQS_HZ,
                       haspi_level1(calibration), seed=seed)


def align(reference: np.ndarray, processed: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """Advance ``processed`` by the lag in 0..max_lag that best matches ``reference`` (zero-padded)."""
    n = min(len(reference), len(processed))
    r, p = np.asarray(reference[:n], np.float64), np.asarray(processed[:n], np.float64)
    max_lag = max(0, min(int(max_lag), n - 1))
    lag = 0
    if n and np.any(p) and max_lag:
        # c[k] = Σ r[i]·p[i+k] for every lag at once by FFT (one dot product per lag goes through BLAS,
        # whose threads spin on a busy machine: 1.7 s instead of 6 ms for 160 lags of 2 s, measured).
        # Zero padding to n + max_lag keeps the circular correlation from wrapping for lags <= max_lag.
        nfft = 1 << int(np.ceil(np.log2(n + max_lag)))
        c = np.fft.irfft(np.conj(np.fft.rfft(r, nfft)) * np.fft.rfft(p, nfft), nfft)[: max_lag + 1]
        lag = int(np.argmax(c))
    out = np.zeros(len(processed), np.float32)
    out[: len(processed) - lag] = processed[lag:]
    return out, lag


__all__ = ["NALR_TAPS", "NOT_INSTALLED", "align", "clarity_audiogram", "clarity_tools", "haspi", "haspi_level1",
           "haspi_score", "nalr_filter", "nalr_process"]
