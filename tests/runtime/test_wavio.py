"""runtime.wavio.write_wav_atomic, the project's one WAV writer (the board's and the toolchain's)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import runtime.wavio as wavio
from runtime.wavio import WavError, read_wav, write_wav_atomic


def _sine(freq: float, sr: float, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _one_line(exc: pytest.ExceptionInfo[WavError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize(("subtype", "tol"), [("PCM_16", 1.5 / 32767), ("PCM_24", 1.5 / 8388607), ("FLOAT", 0.0)])
def test_round_trip_through_both_readers(tmp_path: Path, subtype: str, tol: float) -> None:
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 4000).astype(np.float32)
    p = tmp_path / "out.wav"
    write_wav_atomic(p, x, 16000, subtype)
    y, sr = read_wav(p)
    assert sr == 16000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=tol + 1e-9)
    info = sf.info(str(p))  # libsndfile (the toolchain's reader) sees the same file
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("WAV", subtype, 16000, x.size)
    np.testing.assert_array_equal(sf.read(str(p), dtype="float32")[0], y)
    assert os.listdir(tmp_path) == ["out.wav"]  # no temp files left behind


def test_overwrite_replaces_existing(tmp_path: Path) -> None:
    p = tmp_path / "out.wav"
    write_wav_atomic(p, np.zeros(100, np.float32), 8000)
    write_wav_atomic(p, _sine(100, 16000), 16000)
    y, sr = read_wav(p)
    assert sr == 16000 and y.size == 8000


def test_clipping_is_the_default_and_float_keeps_overrange(tmp_path: Path) -> None:
    x = np.array([0.0, 1.5, -2.0, 0.25], np.float32)
    write_wav_atomic(tmp_path / "c.wav", x, 16000)
    y, _ = read_wav(tmp_path / "c.wav")
    assert y.max() <= 1.0 and y.min() >= -1.0 and y[3] == pytest.approx(0.25, abs=1e-4)
    write_wav_atomic(tmp_path / "f.wav", x, 16000, "FLOAT", clip=False)
    np.testing.assert_array_equal(sf.read(str(tmp_path / "f.wav"), dtype="float32")[0], x)


# ------------------------------------------------------------------ refused writes
def _existing(tmp_path: Path) -> tuple[Path, bytes]:
    p = tmp_path / "keep.wav"
    write_wav_atomic(p, _sine(300, 16000), 16000)
    return p, p.read_bytes()


@pytest.mark.parametrize(
    ("x", "subtype", "words"),
    [
        (np.array([0.1, np.nan, 0.2], np.float32), "PCM_16", ["keep.wav", "1 non-finite"]),
        (np.array([0.1, np.inf, -np.inf], np.float32), "FLOAT", ["keep.wav", "2 non-finite"]),
        (np.array([0.1, 1.5, 0.2], np.float32), "PCM_16", ["keep.wav", "1.5", "clip=True"]),
        (np.zeros((10, 2), np.float32), "PCM_16", ["keep.wav", "shape"]),
        (np.zeros(0, np.float32), "PCM_16", ["keep.wav", "zero samples"]),
        (np.zeros(10, np.float32), "ULAW", ["keep.wav", "'ULAW'", "PCM_16, PCM_24, FLOAT"]),
    ],
)
def test_refused_writes_leave_existing_file(tmp_path: Path, x: np.ndarray, subtype: str, words: list[str]) -> None:
    p, before = _existing(tmp_path)
    with pytest.raises(WavError) as exc:
        write_wav_atomic(p, x, 16000, subtype, clip=False)
    msg = _one_line(exc)
    for w in words:
        assert w in msg, (w, msg)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.wav"]


def test_failure_mid_write_does_not_clobber(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p, before = _existing(tmp_path)

    def broken(fh, data, rate):  # type: ignore[no-untyped-def]
        fh.write(b"RIFF partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(wavio._ENCODERS, "PCM_16", broken)
    with pytest.raises(WavError) as exc:
        write_wav_atomic(p, _sine(500, 16000), 16000)
    assert "No space left" in _one_line(exc)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.wav"]


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for target in (tmp_path / "missing" / "x.wav", blocker / "x.wav"):
        with pytest.raises(WavError) as exc:
            write_wav_atomic(target, _sine(100, 16000), 16000)
        assert "x.wav" in _one_line(exc)


def test_non_integer_sample_rate_refused(tmp_path: Path) -> None:
    with pytest.raises(WavError, match="sample rate"):
        write_wav_atomic(tmp_path / "x.wav", _sine(100, 16000), 24414.0625)  # type: ignore[arg-type]
