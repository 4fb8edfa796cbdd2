"""Tests for WAV reading/writing and resampling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import toolchain.audio.io as aio
from toolchain.audio.io import AudioFileError, read_wav, resample, write_wav_atomic


def _sine(freq: float, sr: float, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _one_line(exc: pytest.ExceptionInfo[AudioFileError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize(("subtype", "tol"), [("PCM_16", 1.0 / 32767), ("PCM_24", 1e-6), ("FLOAT", 0.0)])
def test_round_trip(tmp_path: Path, subtype: str, tol: float) -> None:
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 4000).astype(np.float32)
    p = tmp_path / "out.wav"
    write_wav_atomic(p, x, 16000, subtype=subtype)
    y, sr = read_wav(p)
    assert sr == 16000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=tol + 1e-9)
    assert os.listdir(tmp_path) == ["out.wav"]  # no temp files left behind


def test_flac_by_extension(tmp_path: Path) -> None:
    x = _sine(440, 16000)
    write_wav_atomic(tmp_path / "a.flac", x, 16000)
    assert sf.info(str(tmp_path / "a.flac")).format == "FLAC"


def test_overwrite_replaces_existing(tmp_path: Path) -> None:
    p = tmp_path / "out.wav"
    write_wav_atomic(p, np.zeros(100, np.float32), 8000)
    write_wav_atomic(p, _sine(100, 16000), 16000)
    y, sr = read_wav(p)
    assert sr == 16000 and y.size == 8000


# ------------------------------------------------------------------ refused writes
def _existing(tmp_path: Path) -> tuple[Path, bytes]:
    p = tmp_path / "keep.wav"
    write_wav_atomic(p, _sine(300, 16000), 16000)
    return p, p.read_bytes()


@pytest.mark.parametrize(
    ("x", "words"),
    [
        (np.array([0.1, np.nan, 0.2], np.float32), ["keep.wav", "1 non-finite"]),
        (np.array([0.1, np.inf, -np.inf], np.float32), ["keep.wav", "2 non-finite"]),
        (np.array([0.1, 1.5, 0.2], np.float32), ["keep.wav", "1.5", "clip=True"]),
        (np.zeros((10, 2), np.float32), ["keep.wav", "shape"]),
        (np.zeros(0, np.float32), ["keep.wav", "zero samples"]),
    ],
)
def test_refused_writes_leave_existing_file(tmp_path: Path, x: np.ndarray, words: list[str]) -> None:
    p, before = _existing(tmp_path)
    with pytest.raises(AudioFileError) as exc:
        write_wav_atomic(p, x, 16000)
    msg = _one_line(exc)
    for w in words:
        assert w in msg, (w, msg)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.wav"]


def test_clip_true_clips_and_float_subtype_allows_overrange(tmp_path: Path) -> None:
    x = np.array([0.0, 1.5, -2.0, 0.25], np.float32)
    write_wav_atomic(tmp_path / "c.wav", x, 16000, clip=True)
    y, _ = read_wav(tmp_path / "c.wav")
    assert y.max() <= 1.0 and y.min() >= -1.0 and y[3] == pytest.approx(0.25, abs=1e-4)
    write_wav_atomic(tmp_path / "f.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(read_wav(tmp_path / "f.wav")[0], x)


def test_failure_mid_write_does_not_clobber(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, before = _existing(tmp_path)

    def broken_write(fh, data, samplerate, **kwargs):  # type: ignore[no-untyped-def]
        fh.write(b"RIFF partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(aio.sf, "write", broken_write)
    with pytest.raises(AudioFileError) as exc:
        write_wav_atomic(p, _sine(500, 16000), 16000)
    assert "No space left" in _one_line(exc)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.wav"]


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for target in (tmp_path / "missing" / "x.wav", blocker / "x.wav"):
        with pytest.raises(AudioFileError) as exc:
            write_wav_atomic(target, _sine(100, 16000), 16000)
        assert "x.wav" in _one_line(exc)


def test_non_integer_sample_rate_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="sample rate"):
        write_wav_atomic(tmp_path / "x.wav", _sine(100, 16000), 24414.0625)  # type: ignore[arg-type]


# ------------------------------------------------------------------ bad inputs
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError) as exc:
        read_wav(tmp_path / "input.wav")
    assert "input.wav" in _one_line(exc) and "no such file" in str(exc.value)


def test_corrupt_header(tmp_path: Path) -> None:
    p = tmp_path / "input.wav"
    p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunkjunk" + bytes(100))
    with pytest.raises(AudioFileError) as exc:
        read_wav(p)
    msg = _one_line(exc)
    assert "input.wav" in msg and "corrupt or unknown header" in msg
    q = tmp_path / "text.wav"
    q.write_text("hello, I am not audio")
    with pytest.raises(AudioFileError, match="text.wav"):
        read_wav(q)


def test_empty_file_and_zero_samples(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty.wav"):
        read_wav(empty)
    zero = tmp_path / "zero.wav"
    sf.write(str(zero), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    with pytest.raises(AudioFileError) as exc:
        read_wav(zero)
    assert "zero.wav has no samples" in _one_line(exc)


def test_stereo_refused_or_averaged(tmp_path: Path) -> None:
    p = tmp_path / "input.wav"
    st = np.stack([np.full(100, 0.5), np.full(100, -0.25)], axis=1).astype(np.float32)
    sf.write(str(p), st, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError) as exc:
        read_wav(p)
    assert _one_line(exc).endswith("input.wav has 2 channels; expected mono")
    y, sr = read_wav(p, expect_mono=False)
    assert y.shape == (100,) and sr == 16000
    np.testing.assert_allclose(y, 0.125)


def test_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="directory"):
        read_wav(tmp_path)


# ------------------------------------------------------------------ resampling
def _peak_freq(x: np.ndarray, sr: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / sr)[np.argmax(spec)])


@pytest.mark.parametrize(("sr_in", "sr_out"), [(16000, 24414.0625), (22050, 16000), (48000, 16000),
                                               (24414.0625, 16000), (16000, 44100)])
def test_resample_length_and_frequency(sr_in: float, sr_out: float) -> None:
    x = _sine(1000.0, sr_in, seconds=1.0)
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32
    assert abs(y.size - x.size * sr_out / sr_in) <= 1
    res = sr_out / y.size
    assert abs(_peak_freq(y, sr_out) - 1000.0) <= res
    # Amplitude is preserved away from the edges.
    mid = y[y.size // 4: 3 * y.size // 4]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resample_identity_and_batch() -> None:
    x = _sine(300.0, 16000)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    batch = np.stack([x, 0.5 * x])
    y = resample(batch, 16000, 8000)
    assert y.shape == (2, 4000)
    np.testing.assert_allclose(y[0], resample(x, 16000, 8000), atol=1e-6)
    np.testing.assert_allclose(y[1], 0.5 * y[0], atol=1e-6)


@pytest.mark.parametrize("bad", [0, -16000, float("nan"), float("inf")])
def test_resample_rejects_bad_rates(bad: float) -> None:
    with pytest.raises(ValueError):
        resample(np.zeros(10, np.float32), bad, 16000)
