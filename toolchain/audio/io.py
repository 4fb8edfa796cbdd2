"""Audio file I/O (soundfile) and resampling (soxr).

Audio is float32 mono ``(n,)``. Every file problem raises :class:`AudioFileError` with a
one-line message that names the file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from runtime.wavio import WavError, check_input_file
from runtime.wavio import write_wav_atomic as runtime_write_wav

# soundfile subtypes whose samples are integers: values beyond ±1 would wrap or clip there.
_INTEGER_SUBTYPE_PREFIXES = ("PCM_", "ULAW", "ALAW", "DPCM_", "DWVW_", "IMA_ADPCM", "MS_ADPCM",
                             "G721", "G723", "VOX_ADPCM", "NMS_ADPCM")


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


def _is_integer_subtype(subtype: str) -> bool:
    return subtype.upper().startswith(_INTEGER_SUBTYPE_PREFIXES)


def write_wav_atomic(
    path: str | os.PathLike[str],
    x: npt.ArrayLike,
    sample_rate: int,
    subtype: str = "PCM_16",
    *,
    clip: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Write mono audio atomically through :func:`runtime.wavio.write_wav_atomic` (one writer for both).

    Refuses non-finite samples, and samples beyond ±1 for integer formats unless
    ``clip=True`` (then they are clipped). An existing file is untouched on any failure.
    The container format follows the extension (``.wav`` → WAV, ``.flac`` → FLAC, ...).
    """
    p = Path(path)
    a = np.asarray(x)
    if a.ndim != 1:
        raise AudioFileError(f"{p}: expected mono audio of shape (n,), got shape {a.shape}")
    if a.size == 0:
        raise AudioFileError(f"{p}: refusing to write zero samples")
    a = a.astype(np.float32, copy=False)
    n_bad = int(np.count_nonzero(~np.isfinite(a)))
    if n_bad:
        raise AudioFileError(f"{p}: refusing to write {n_bad} non-finite samples (NaN or inf)")
    if isinstance(sample_rate, bool) or float(sample_rate) != int(sample_rate) or int(sample_rate) <= 0:
        raise AudioFileError(
            f"{p}: sample rate {sample_rate!r} cannot be stored; expected a positive integer in Hz"
        )
    if _is_integer_subtype(subtype):
        peak = float(np.max(np.abs(a)))
        if peak > 1.0:
            if not clip:
                raise AudioFileError(
                    f"{p}: peak |x| is {peak:.4g} > 1, which {subtype} cannot hold; "
                    "scale the signal or pass clip=True"
                )
            a = np.clip(a, -1.0, 1.0)
    fmt = p.suffix.lstrip(".").upper() or "WAV"
    if fmt not in sf.available_formats():
        raise AudioFileError(f"{p}: unknown audio container {p.suffix!r}; use .wav or .flac")
    if not sf.check_format(fmt, subtype):
        raise AudioFileError(f"{p}: subtype {subtype!r} is not valid for {fmt}")


    def encode(fh: Any, samples: np.ndarray, rate: int) -> None:
        sf.write(fh, samples, rate, subtype=subtype, format=fmt)

    try:  # the runtime's writer: path checks, atomic rename; soundfile only encodes
        runtime_write_wav(p, a, int(sample_rate), inputs=inputs, encode=encode)
    except WavError as exc:
        raise AudioFileError(str(exc)) from None
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(f"{p}: cannot write ({exc})") from None


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
