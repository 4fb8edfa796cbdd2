"""Tests for audio file reading and resampling (writing: tests/runtime/test_wavio.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolchain.audio.io import AudioFileError, read_wav, resample


def _sine(freq: float, sr: float, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _one_line(exc: pytest.ExceptionInfo[AudioFileError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


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
