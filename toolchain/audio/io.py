"""Audio file reading (soundfile: any container libsndfile knows) and resampling (soxr).

Audio is float32 mono ``(n,)``. Every file problem raises :class:`AudioFileError` with a
one-line message that names the file. Writing goes through the runtime's one writer,
:func:`runtime.wavio.write_wav_atomic`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from runtime.wavio import WavError, check_input_file


class AudioFileError(ValueError):
    """A bad audio file or a refused write; ``str()`` is one line naming the file."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def read_wav(
    path: str | os.PathLike[str], *, expect_mono: bool = True
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``(n,)`` and its sample rate.

    With ``expect_mono`` a multi-channel file is an error; otherwise channels are averaged.
    """
    p = Path(path)
    try:
        check_input_file(p)
    except WavError as exc:
        raise AudioFileError(str(exc)) from None
    try:
        data, sample_rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        # libsndfile's own text is informative ("Format not recognised", ...), keep it.
        raise AudioFileError(f"{p}: cannot read audio, corrupt or unknown header ({exc})") from None
    except OSError as exc:
        raise AudioFileError(f"{p}: cannot read audio ({exc.strerror or exc})") from None
    n, channels = data.shape
    if n == 0:
        raise AudioFileError(f"{p} has no samples")
    if channels != 1:
        if expect_mono:
            raise AudioFileError(f"{p} has {channels} channels; expected mono")
        mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)
    else:
        mono = np.ascontiguousarray(data[:, 0])
    return mono, int(sample_rate)


def resample(x: npt.ArrayLike, sr_in: float, sr_out: float) -> np.ndarray:
    """Resample float32 audio ``(n,)`` or ``(batch, n)`` from ``sr_in`` to ``sr_out`` (soxr HQ).

    Rates may be non-integer (ICNet runs at 24414.0625 Hz). Equal rates return the input
    as float32 unchanged.
    """
    for name, rate in (("sr_in", sr_in), ("sr_out", sr_out)):
        if isinstance(rate, bool) or not math.isfinite(float(rate)) or float(rate) <= 0:
            raise ValueError(f"{name} must be a positive finite rate in Hz, got {rate!r}")
    a = np.asarray(x, dtype=np.float32)
    if a.ndim not in (1, 2):
        raise ValueError(f"expected audio of shape (n,) or (batch, n), got shape {a.shape}")
    if float(sr_in) == float(sr_out):
        return a
    if a.ndim == 1:
        return np.asarray(soxr.resample(a, float(sr_in), float(sr_out), quality="HQ"), dtype=np.float32)
    # soxr reads 2-D input as (frames, channels); our batches are (batch, n), so transpose.
    out = soxr.resample(np.ascontiguousarray(a.T), float(sr_in), float(sr_out), quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)
