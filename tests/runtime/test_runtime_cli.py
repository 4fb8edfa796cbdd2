"""``toolchain run`` / ``python -m runtime run``: the offline path, and one-line errors (exit 2, no
partial output) for bad wavs, foreign bundles and unknown backends."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import wave

import numpy as np
import pytest

from runtime.bundle import MANIFEST_NAME, manifest_digest
from runtime.wavio import read_wav, write_wav_atomic
from tests.conftest import REPO, run_toolchain

DEMO = REPO / "toolchain" / "assets" / "demo_speech.wav"


def run_runtime(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


def one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def nothing_written(d, name="out.wav"):
    return not (d / name).exists() and not [p for p in d.iterdir() if p.name.startswith(f".{name}")]


def pcm16(path, x, rate=16000, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory):
    x, sr = read_wav(DEMO)
    p = tmp_path_factory.mktemp("wav") / "short.wav"
    write_wav_atomic(p, x[: sr // 2], sr)
    return p


@pytest.fixture(scope="module")
def bad_wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = DEMO.read_bytes()
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt \x02\x00\x00\x00\x01\x00" + bytes(64))
    (d / "garbage.wav").write_bytes(bytes(range(256)) * 4)
    (d / "empty.wav").write_bytes(b"")
    pcm16(d / "nosamples.wav", np.zeros(0))
    # Three channels: --channel picks from a stereo pair, a surround file is refused.
    pcm16(d / "three.wav", np.zeros(3 * 3200), channels=3)
    (d / "truncated_header.wav").write_bytes(good[:30])
    # A fmt chunk claiming 8 channels with a block align for 1: inconsistent.
    raw = bytearray(good)
    struct.pack_into("<H", raw, 22, 8)
    (d / "inconsistent.wav").write_bytes(bytes(raw))
    return d


@pytest.mark.parametrize("name,words", [
    ("corrupt.wav", ["corrupt.wav", "WAV"]),
    ("garbage.wav", ["garbage.wav", "not a WAV"]),
    ("empty.wav", ["empty.wav", "empty"]),
    ("nosamples.wav", ["nosamples.wav", "no samples"]),
    ("three.wav", ["three.wav", "3 channels", "mono or stereo"]),
    ("truncated_header.wav", ["truncated_header.wav"]),
    ("inconsistent.wav", ["inconsistent.wav"]),
    ("missing.wav", ["missing.wav", "no such file"]),
])
def test_toolchain_run_refuses_a_bad_wav(default_bundle, bad_wavs, tmp_path, name, words):
    out = tmp_path / "out.wav"
    r = run_toolchain("run", str(default_bundle), "--input", str(bad_wavs / name), "--output", str(out))
    one_line_error(r, "toolchain run: error:", *words)
    assert nothing_written(tmp_path)


def test_runtime_run_refuses_a_bad_wav_the_same_way(default_bundle, bad_wavs, tmp_path):
    r = run_runtime("run", str(default_bundle), "--input", str(bad_wavs / "three.wav"), "--output", str(tmp_path / "out.wav"))
    one_line_error(r, "python -m runtime run: error:", "three.wav", "mono or stereo")
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("cli", ["toolchain", "runtime"])
def test_run_takes_a_stereo_wav_by_its_channel(default_bundle, tmp_path, cli):
    """Issue 17: a stereo file is mixed by default (as `stream` does); --channel left|right picks one."""
    mono, rate = read_wav(DEMO)
    mono = mono[: rate // 2]
    # Right = -left: the mix is exact digital silence, and each channel is a known mono file.
    pcm16(tmp_path / "st.wav", np.stack([mono, -mono], axis=1).reshape(-1), channels=2)
    pcm16(tmp_path / "left.wav", mono)
    pcm16(tmp_path / "right.wav", -mono)
    pcm16(tmp_path / "zero.wav", np.zeros_like(mono))
    runner = run_toolchain if cli == "toolchain" else run_runtime
    outs = {}
    for name, src, extra in (("st_mix", "st.wav", ()), ("st_left", "st.wav", ("--channel", "left")),
                             ("st_right", "st.wav", ("--channel", "right")), ("left", "left.wav", ()),
                             ("right", "right.wav", ()), ("zero", "zero.wav", ())):
        r = runner("run", str(default_bundle), "--input", str(tmp_path / src), "--output",
                   str(tmp_path / f"{name}.out.wav"), "--backend", "ckernel", *extra)
        assert r.returncode == 0, r.stderr
        outs[name] = read_wav(tmp_path / f"{name}.out.wav")[0]
    np.testing.assert_array_equal(outs["st_left"], outs["left"])
    np.testing.assert_array_equal(outs["st_right"], outs["right"])
    np.testing.assert_array_equal(outs["st_mix"], outs["zero"])


@pytest.fixture(scope="module")
def foreign_bundle(default_bundle, tmp_path_factory):
    """The default bundle as a future toolchain would write it (format_version 2), manifest digest valid."""
    d = tmp_path_factory.mktemp("foreign") / "bundle-v2"
    shutil.copytree(default_bundle, d)
    m = json.loads((d / MANIFEST_NAME).read_text())
    m["format_version"] = 2
    m["manifest_sha256"] = manifest_digest(m)
    (d / MANIFEST_NAME).write_text(json.dumps(m, indent=2))
    return d


@pytest.mark.parametrize("cli", ["toolchain", "runtime"])
def test_run_refuses_a_bundle_from_another_format_version(foreign_bundle, short_wav, tmp_path, cli):
    out = tmp_path / "out.wav"
    args = ("run", str(foreign_bundle), "--input", str(short_wav), "--output", str(out))
    r = run_toolchain(*args) if cli == "toolchain" else run_runtime(*args)
    one_line_error(r, "format_version 2", "expects 1")
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("cli", ["toolchain", "runtime"])
def test_run_refuses_an_unknown_backend(default_bundle, short_wav, tmp_path, cli):
    out = tmp_path / "out.wav"
    args = ("run", str(default_bundle), "--input", str(short_wav), "--output", str(out), "--backend", "tpu")
    r = run_toolchain(*args) if cli == "toolchain" else run_runtime(*args)
    one_line_error(r, "unknown backend 'tpu'", "litert", "ckernel", "onnx")
    assert nothing_written(tmp_path)
    if cli == "toolchain":
        assert "torch" in r.stderr


def test_run_leaves_an_existing_output_alone_on_error(default_bundle, bad_wavs, tmp_path):
    out = tmp_path / "out.wav"
    out.write_bytes(b"keep me")
    r = run_toolchain("run", str(default_bundle), "--input", str(bad_wavs / "corrupt.wav"), "--output", str(out))
    one_line_error(r, "corrupt.wav")
    assert out.read_bytes() == b"keep me"
    r = run_toolchain("run", str(default_bundle), "--input", str(DEMO), "--output", str(tmp_path / "nodir" / "o.wav"))
    one_line_error(r, "nodir")


def test_toolchain_run_is_the_runtime_run_byte_for_byte(default_bundle, short_wav, tmp_path):
    a, b, c = tmp_path / "toolchain.wav", tmp_path / "runtime.wav", tmp_path / "hostblock.wav"
    r = run_toolchain("run", str(default_bundle), "--input", str(short_wav), "--output", str(a))
    assert r.returncode == 0, r.stderr
    assert "dB SPL" in r.stdout
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(b))
    assert r.returncode == 0, r.stderr
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(c), "--host-block", "37")
    assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    y, sr = read_wav(a)
    assert sr == 16000 and len(y) == len(read_wav(short_wav)[0])


@pytest.mark.parametrize("backend", ["ckernel", "onnx", "litert-fp32", "torch"])
def test_toolchain_run_on_every_backend(default_bundle, short_wav, tmp_path, backend):
    out = tmp_path / f"{backend}.wav"
    r = run_toolchain("run", str(default_bundle), "--input", str(short_wav), "--output", str(out), "--backend", backend)
    assert r.returncode == 0, r.stderr
    y, _ = read_wav(out)
    assert np.isfinite(y).all() and np.abs(y).max() <= 0.891 + 1 / 32768 and np.abs(y).max() > 1e-3


def test_toolchain_run_resamples_with_a_notice(default_bundle, tmp_path):
    t = np.arange(int(44100 * 0.5)) / 44100
    src = tmp_path / "cd.wav"
    pcm16(src, 0.3 * np.sin(2 * np.pi * 500 * t), rate=44100)
    out = tmp_path / "o.wav"
    r = run_toolchain("run", str(default_bundle), "--input", str(src), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "44100 Hz" in r.stdout and "resampling" in r.stdout
    y, sr = read_wav(out)
    assert sr == 16000 and len(y) == 8000


def test_help_lists_stream_and_bench():
    r = run_toolchain("--help")
    assert r.returncode == 0
    for cmd in ("run", "stream", "bench"):
        assert cmd in r.stdout
    for cmd in ("stream", "bench"):
        r = run_toolchain(cmd, "--help")
        assert r.returncode == 0 and "--backend" in r.stdout


def test_wav_reader_agrees_with_soundfile(tmp_path):
    """runtime.wavio (stdlib, for boards) reads what soundfile writes, as soundfile reads it."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, 3000)).astype(np.float32)
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"):
        p = tmp_path / f"{subtype}.wav"
        sf.write(p, x, 22050, subtype=subtype)
        ours, sr = read_wav(p)
        theirs, _ = sf.read(p, dtype="float32")
        assert sr == 22050
        np.testing.assert_allclose(ours, theirs, atol=1e-7, err_msg=subtype)
    p = tmp_path / "w.wav"
    write_wav_atomic(p, x, 16000)
    theirs, sr = sf.read(p, dtype="int16")
    assert np.array_equal(theirs, np.rint(np.clip(x, -1, 1).astype(np.float64) * 32767).astype(np.int16))
    sf.write(tmp_path / "ext.wav", np.stack([x, x], 1), 16000, subtype="PCM_24", format="WAV")  # WAVE_FORMAT_EXTENSIBLE
    y, _ = read_wav(tmp_path / "ext.wav", expect_mono=False)
    np.testing.assert_allclose(y, sf.read(tmp_path / "ext.wav", dtype="float32")[0].mean(1), atol=1e-7)
