"""WAV files on the board: read PCM/float WAV, write PCM 16/24 or float 32 atomically. Standard library + numpy.

The toolchain reads audio through soundfile (libsndfile); a board running ``python -m runtime``
has neither, so this module parses the RIFF container itself (PCM 8/16/24/32-bit, IEEE float
32/64-bit, plain or WAVE_FORMAT_EXTENSIBLE) and writes WAV files for both (PCM with the
standard library's ``wave``, float 32 with its own header). Integer samples read as
``q / 2^(bits-1)``, as libsndfile reads them, so both readers agree; they are written as
``rint(x * (2^(bits-1) - 1))`` after clipping to [-1, 1] (full scale is the largest code).

Every problem raises :class:`WavError`, a ``ValueError`` whose one-line message names the file.
Files above :data:`MAX_WAV_BYTES` are refused before they are read (the reader holds the whole
file in memory, and a Pi Zero 2 W has 512 MB), and :func:`check_rate` bounds the sample rates
the runtime resamples from.
"""

from __future__ import annotations

import os
import stat
import struct
import wave
from pathlib import Path
from typing import IO, Callable, Iterable

import numpy as np

from runtime.atomic import OutputPathError, atomic_write, describe_mode

__all__ = ["MAX_FLOAT_PEAK", "MAX_RATE_HZ", "MAX_WAV_BYTES", "MIN_RATE_HZ", "CHANNELS", "DEFAULT_CHANNEL", "SUBTYPES", "WavError", "check_input_file", "check_rate", "pick_channel", "read_wav", "to_pcm16", "wav_info",
           "write_wav_atomic"]

#: Largest WAV file read: 512 MiB = 4.6 hours of 16-bit mono at 16 kHz, or 46 minutes of 32-bit
#: float at 48 kHz. Decoded to float32 it takes up to 2x that again, which is what a 512 MB board
#: can give an offline run; longer recordings are split, or streamed live.
MAX_WAV_BYTES = 512 * 1024 * 1024
#: Input sample rates run/bench accept (and resample to the model's). Below 8 kHz there is no
#: speech band left to compensate; above 384 kHz no audio interface records (the value is corrupt).
MIN_RATE_HZ = 8000
MAX_RATE_HZ = 384000

#: Largest |sample| a float WAV may hold. Float WAVs are nominally in ±1 but may carry a little
#: intersample or mastering overshoot; beyond 2 (+6 dBFS) the file is mis-scaled (integers or
#: a gain error stored as float), and the limiter would hide that as heavy clipping.
MAX_FLOAT_PEAK = 2.0

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# The first two bytes of the SubFormat GUID of WAVE_FORMAT_EXTENSIBLE carry the format tag;
# the rest is the fixed KSDATAFORMAT suffix.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


class WavError(ValueError):
    """A bad WAV file or a refused write; ``str()`` is one line naming the file."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _parse(p: Path, raw: bytes) -> tuple[int, int, int, int, memoryview]:
    """(format tag, channels, rate, bits, data bytes) of a RIFF/WAVE file."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        what = "empty file" if not raw else "no RIFF/WAVE header"
        raise WavError(f"{p}: not a WAV file ({what})")
    fmt = None
    data = None
    pos = 12
    view = memoryview(raw)
    while pos + 8 <= len(raw):
        cid = bytes(raw[pos:pos + 4])
        (size,) = struct.unpack_from("<I", raw, pos + 4)
        body = view[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise WavError(f"{p}: corrupt WAV header (fmt chunk of {len(body)} bytes)")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body, 0)
            if tag == _EXTENSIBLE:
                if len(body) < 40 or bytes(body[26:40]) != _GUID_TAIL:
                    raise WavError(f"{p}: corrupt WAV header (bad WAVE_FORMAT_EXTENSIBLE sub-format)")
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt = (tag, channels, rate, bits, block_align)
        elif cid == b"data":
            if fmt is None:
                raise WavError(f"{p}: corrupt WAV header (data before fmt)")
            if len(body) < size and size != 0xFFFFFFFF:  # 0xFFFFFFFF: a streaming writer's "to the end"
                # The header promises more than the file holds: a copy cut short, not a recording.
                raise WavError(f"{p}: truncated WAV file (the data chunk declares {size} bytes, the file holds "
                               f"{len(body)}); re-export or re-copy it")
            data = body
            break
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt is None:
        raise WavError(f"{p}: corrupt WAV header (no fmt chunk)")
    if data is None:
        raise WavError(f"{p}: corrupt WAV file (no data chunk)")
    tag, channels, rate, bits, block_align = fmt
    if channels < 1 or rate < 1 or bits < 1:
        raise WavError(f"{p}: corrupt WAV header ({channels} channels, {rate} Hz, {bits} bits)")
    if (tag, bits) not in {(_PCM, 8), (_PCM, 16), (_PCM, 24), (_PCM, 32), (_FLOAT, 32), (_FLOAT, 64)}:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format tag 0x{tag:04x}")
        raise WavError(f"{p}: unsupported WAV encoding ({kind}, {bits} bits); use PCM 16/24/32 or float 32")
    if block_align != channels * bits // 8:
        raise WavError(f"{p}: corrupt WAV header (block align {block_align} for {channels} x {bits} bits)")
    return tag, channels, rate, bits, data


def wav_info(path: str | os.PathLike[str]) -> dict[str, int]:
    """``{"channels", "sample_rate", "bits", "frames"}`` of a WAV file, without decoding it."""
    p = Path(path)
    raw = _read_bytes(p)
    tag, channels, rate, bits, data = _parse(p, raw)
    return {"channels": channels, "sample_rate": rate, "bits": bits, "frames": len(data) // (channels * bits // 8)}


def check_input_file(path: str | os.PathLike[str], what: str = "audio file") -> os.stat_result:
    """The ``stat`` of an input that is an existing regular file, else a one-line WavError.

    A device (``/dev/zero`` never ends), a FIFO, a socket or a directory is refused before it
    is opened.
    """
    p = Path(path)
    if not str(path).strip():
        raise WavError(f"the input path is empty; expected a {what}")
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise WavError(f"{p}: no such file") from None
    except OSError as e:
        raise WavError(f"{p}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise WavError(f"{p}: is {describe_mode(st.st_mode)}, not a regular {what}")
    return st


def _read_bytes(p: Path) -> bytes:
    size = check_input_file(p).st_size
    if size > MAX_WAV_BYTES:
        raise WavError(f"{p}: {size / 2**20:.0f} MiB is too large; the limit is {MAX_WAV_BYTES // 2**20} MiB "
                       "(4.6 hours of 16-bit mono at 16 kHz): split the recording")
    try:
        return p.read_bytes()
    except OSError as e:
        raise WavError(f"{p}: cannot read ({e.strerror or e})") from None


#: ``--channel`` choices for a multi-channel input: the first, the second, or their mean.
CHANNELS = ("left", "right", "mix")
DEFAULT_CHANNEL = "mix"


def pick_channel(x: np.ndarray, channel: str, where: str = "input") -> np.ndarray:
    """Mono float32 from ``(frames, channels)`` audio: ``left``, ``right`` or ``mix`` (the mean)."""
    if channel not in CHANNELS:
        raise WavError(f"{where}: unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    if x.ndim == 1 or x.shape[1] == 1:
        return np.ascontiguousarray(x.reshape(-1), dtype=np.float32)
    if channel == "mix":
        return x.mean(axis=1, dtype=np.float64).astype(np.float32)
    return np.ascontiguousarray(x[:, 0 if channel == "left" else 1], dtype=np.float32)


def read_wav(path: str | os.PathLike[str], *, expect_mono: bool = True,
             channel: str | None = None) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 ``(n,)`` and its sample rate.

    ``channel`` (left, right, mix) picks what a multi-channel file becomes; without it
    ``expect_mono`` makes a multi-channel file an error, and ``expect_mono=False`` mixes.
    """
    p = Path(path)
    raw = _read_bytes(p)
    tag, channels, rate, bits, data = _parse(p, raw)
    width = bits // 8
    frames = len(data) // (channels * width)
    if frames == 0:
        raise WavError(f"{p} has no samples")
    if channels != 1 and expect_mono and channel is None:
        raise WavError(f"{p} has {channels} channels; expected mono (or pass --channel left|right|mix)")
    if channels > 2 and channel is not None:
        raise WavError(f"{p} has {channels} channels; expected mono or stereo (--channel picks left, right or their mix)")
    buf = data[: frames * channels * width]
    if tag == _FLOAT:
        x = np.frombuffer(buf, "<f4" if bits == 32 else "<f8").astype(np.float32)
    elif bits == 8:
        x = (np.frombuffer(buf, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 16:
        x = np.frombuffer(buf, "<i2").astype(np.float32) / np.float32(32768.0)
    elif bits == 24:
        b = np.frombuffer(buf, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = (v.astype(np.float64) / float(1 << 23)).astype(np.float32)
    else:
        x = (np.frombuffer(buf, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    x = x.reshape(frames, channels)
    mono = pick_channel(x, channel or DEFAULT_CHANNEL, str(p))
    if tag == _FLOAT:
        if not np.isfinite(x).all():
            raise WavError(f"{p}: holds {int(np.count_nonzero(~np.isfinite(x)))} non-finite samples (NaN or inf)")
        peak = float(np.max(np.abs(x)))
        if peak > MAX_FLOAT_PEAK:
            raise WavError(f"{p}: float samples reach {peak:.3g} full scale; more than {MAX_FLOAT_PEAK:g} means a "
                           "mis-scaled file (e.g. integers stored as float): scale it to ±1")
    return mono, int(rate)


def check_rate(path: str | os.PathLike[str], rate: int) -> int:
    """``rate`` if the runtime can use (resample) audio at that rate, else a one-line WavError."""
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise WavError(f"{path}: sample rate {rate} Hz is outside the supported {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz "
                       "(input is resampled to the model's rate from any rate in that range)")
    return rate


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """float → int16: clip to [-1, 1], ``rint(x * 32767)`` (+1.0 is the largest code, 32767)."""
    a = np.clip(np.asarray(x, np.float32), -1.0, 1.0)
    return np.rint(a.astype(np.float64) * 32767.0).astype("<i2")


def _encode_pcm(fh: IO[bytes], x: np.ndarray, sample_rate: int, width: int) -> None:
    """PCM WAV of ``width`` bytes per sample with the standard library's ``wave`` (see :func:`to_pcm16`)."""
    if width == 2:
        frames = to_pcm16(x).tobytes()
    else:  # 24 bit: the low three bytes of each little-endian int32
        q = np.rint(np.clip(np.asarray(x, np.float64), -1.0, 1.0) * 8388607.0).astype("<i4")
        frames = q.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    with wave.open(fh, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(int(sample_rate))
        w.writeframes(frames)


def _encode_float(fh: IO[bytes], x: np.ndarray, sample_rate: int) -> None:
    """IEEE float 32 WAV (``wave`` writes PCM only): fmt with cbSize 0 and the fact chunk non-PCM needs."""
    data = np.asarray(x, "<f4").tobytes()
    fmt = struct.pack("<HHIIHHH", _FLOAT, 1, sample_rate, sample_rate * 4, 4, 32, 0)
    fact = struct.pack("<I", len(data) // 4)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
    fh.write(b"RIFF" + struct.pack("<I", len(body) + 8 + len(data)) + body + b"data" + struct.pack("<I", len(data)))
    fh.write(data)


#: Sample formats :func:`write_wav_atomic` writes (soundfile's subtype names): how to encode each.
_ENCODERS: dict[str, Callable[[IO[bytes], np.ndarray, int], None]] = {
    "PCM_16": lambda fh, x, rate: _encode_pcm(fh, x, rate, 2),
    "PCM_24": lambda fh, x, rate: _encode_pcm(fh, x, rate, 3),
    "FLOAT": _encode_float,
}
SUBTYPES = tuple(_ENCODERS)


def write_wav_atomic(path: str | os.PathLike[str], x: np.ndarray, sample_rate: int, subtype: str = "PCM_16", *,
                     clip: bool = True, inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Write mono audio as a WAV file atomically through :func:`runtime.atomic.atomic_write`: the project's one wav writer.

    ``subtype`` is one of :data:`SUBTYPES`. Refuses non-finite samples, zero samples, a bad
    rate and an output that :func:`runtime.atomic.check_output_path` refuses (one of
    ``inputs``, a device, a FIFO, ...). Integer subtypes clip to [-1, 1]; with ``clip=False``
    a sample beyond ±1 is refused instead. An existing file is untouched on any failure.
    """
    p = Path(path)
    if subtype not in _ENCODERS:
        raise WavError(f"{p}: cannot write subtype {subtype!r}; expected one of {', '.join(SUBTYPES)}")
    a = np.asarray(x)
    if a.ndim != 1:
        raise WavError(f"{p}: expected mono audio of shape (n,), got shape {a.shape}")
    if a.size == 0:
        raise WavError(f"{p}: refusing to write zero samples")
    a = a.astype(np.float32, copy=False)
    n_bad = int(np.count_nonzero(~np.isfinite(a)))
    if n_bad:
        raise WavError(f"{p}: refusing to write {n_bad} non-finite samples (NaN or inf)")
    if isinstance(sample_rate, bool) or float(sample_rate) != int(sample_rate) or int(sample_rate) <= 0:
        raise WavError(f"{p}: sample rate {sample_rate!r} cannot be stored; expected a positive integer in Hz")
    if subtype != "FLOAT" and not clip:
        peak = float(np.max(np.abs(a)))
        if peak > 1.0:
            raise WavError(f"{p}: peak |x| is {peak:.4g} > 1, which {subtype} cannot hold; "
                           "scale the signal or pass clip=True")
    try:
        with atomic_write(p, inputs=inputs) as fh:
            _ENCODERS[subtype](fh, a, int(sample_rate))
    except OutputPathError as e:
        raise WavError(str(e)) from None
    except OSError as e:
        raise WavError(f"{p}: cannot write ({e.strerror or e})") from None
