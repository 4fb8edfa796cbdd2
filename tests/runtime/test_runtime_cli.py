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
from tests.conftest import REPO, make_char_device, run_toolchain

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


# ------------------------------------------------------------------ issue 17: the board is applied
def _board(tmp_path, name: str, **changes: str):
    """boards/rpi4.toml with ``key = value`` lines replaced (``output_limit="0.25"``), saved as NAME.toml."""
    text = (REPO / "boards" / "rpi4.toml").read_text().replace('name = "rpi4"', f'name = "{name}"')
    for key, value in changes.items():
        lines = text.splitlines()
        i = next(k for k, line in enumerate(lines) if line.split("=")[0].strip() == key)
        lines[i] = f"{key} = {value}"
        text = "\n".join(lines) + "\n"
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def loud_wav(tmp_path_factory):
    """A loud 4 kHz tone: the fitted gain drives the bundle's output to its clip level (0.37 full scale)."""
    p = tmp_path_factory.mktemp("loud") / "loud.wav"
    t = np.arange(8000) / 16000
    pcm16(p, 0.9 * np.sin(2 * np.pi * 4000 * t))
    return p


def test_board_output_limit_is_applied_no_sample_above_it(default_bundle, loud_wav, tmp_path):
    """Issue 17: the stricter of the bundle's and the board's output_limit; no output sample above it."""
    board = _board(tmp_path, "quiet", output_limit="0.25")
    r = run_runtime("run", str(default_bundle), "--input", str(loud_wav), "--output", str(tmp_path / "free.wav"))
    assert r.returncode == 0, r.stderr
    free = read_wav(tmp_path / "free.wav")[0]
    assert np.max(np.abs(free)) > 0.3  # without the board the output goes well above 0.25
    r = run_runtime("run", str(default_bundle), "--input", str(loud_wav), "--output", str(tmp_path / "board.wav"),
                    "--board", str(board))
    assert r.returncode == 0, r.stderr
    assert "board quiet: backend litert, 1 thread(s), output limit 0.25" in r.stdout
    y = read_wav(tmp_path / "board.wav")[0]
    assert np.max(np.abs(y)) <= 0.25 + 1 / 32767, np.max(np.abs(y))  # one PCM-16 step of rounding
    assert "(limit 0.25)" in r.stdout


def test_board_backend_and_threads_apply_unless_named(default_bundle, short_wav, tmp_path):
    """The cortex-m55 board runs the C kernel; a board's threads apply; --backend/--threads still win."""
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(tmp_path / "m55.wav"),
                    "--board", "cortex-m55")
    assert r.returncode == 0, r.stderr
    assert "board cortex-m55: backend ckernel, 1 thread(s)" in r.stdout and "through ckernel" in r.stdout
    two = _board(tmp_path, "two", threads="2", backend='"onnx"')
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(tmp_path / "two.wav"),
                    "--board", str(two))
    assert r.returncode == 0, r.stderr
    assert "board two: backend onnx, 2 thread(s)" in r.stdout and "through onnx" in r.stdout
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(tmp_path / "mine.wav"),
                    "--board", str(two), "--backend", "ckernel", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "board two: backend ckernel, 1 thread(s)" in r.stdout and "through ckernel" in r.stdout


@pytest.mark.parametrize("cmd", ["run", "bench"])
def test_board_of_another_rate_refuses_the_bundle(default_bundle, short_wav, tmp_path, cmd):
    """A 48 kHz board and a 16 kHz bundle: one line naming both, exit 2, nothing written."""
    board = _board(tmp_path, "r48", sample_rate="48000")
    (tmp_path / "out.wav").write_bytes(b"keep")
    args = (["run", str(default_bundle), "--input", str(short_wav), "--output", str(tmp_path / "out.wav")] if cmd == "run"
            else ["bench", str(default_bundle), "--seconds", "0.2", "--json", str(tmp_path / "b.json")])
    r = run_runtime(*args, "--board", str(board))
    one_line_error(r, f"python -m runtime {cmd}: error:", "made for 16000 Hz, block 16; board r48 runs 48000 Hz, block 16",
                   f"export it with --target {board}")
    assert (tmp_path / "out.wav").read_bytes() == b"keep" and not (tmp_path / "b.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "r48.toml"]


# ---------------------------------------------- issue 17: never destroy what is not ours (outputs)
def _output_cases(tmp_path, short_wav):
    """name -> (output path, words of the refusal, a check that it is unchanged)."""
    src = tmp_path / "in.wav"
    shutil.copy(short_wav, src)
    before = src.read_bytes()
    os.link(src, tmp_path / "hard.wav")
    os.symlink("in.wav", tmp_path / "link.wav")
    make_char_device(tmp_path / "null")
    os.mkfifo(tmp_path / "fifo")
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    (tmp_path / "dir").mkdir()
    import stat

    def kind(p, test):
        return lambda: test(os.lstat(p).st_mode)

    same = lambda: src.read_bytes() == before  # noqa: E731
    return src, sock, {
        "input": (src, ["is the input file; refusing to overwrite it"], same),
        "hard_link": (tmp_path / "hard.wav", ["is the same file as the input", "refusing to overwrite it"], same),
        "symlink_to_input": (tmp_path / "link.wav", ["is the same file as the input"],
                             lambda: same() and os.path.islink(tmp_path / "link.wav")),
        "device": (tmp_path / "null", ["is a character device; refusing to replace it"], kind(tmp_path / "null", stat.S_ISCHR)),
        "fifo": (tmp_path / "fifo", ["is a FIFO (named pipe); refusing to replace it"], kind(tmp_path / "fifo", stat.S_ISFIFO)),
        "socket": (tmp_path / "sock", ["is a socket; refusing to replace it"], kind(tmp_path / "sock", stat.S_ISSOCK)),
        "directory": (tmp_path / "dir", ["is a directory"], kind(tmp_path / "dir", stat.S_ISDIR)),
        "long_name": (tmp_path / ("x" * 300 + ".wav"), ["file name is 304 bytes long; the file system allows at most 255"],
                      lambda: not (tmp_path / ("x" * 20)).exists()),
    }


@pytest.mark.parametrize("case", ["input", "hard_link", "symlink_to_input", "device", "fifo", "socket", "directory",
                                  "long_name"])
def test_run_refuses_an_output_that_is_not_ours(default_bundle, short_wav, tmp_path, case):
    """Issue 17: one line, exit 2, before any work; the input, node, FIFO, socket or directory is unchanged."""
    src, sock, cases = _output_cases(tmp_path, short_wav)
    out, words, unchanged = cases[case]
    listing = sorted(p.name for p in tmp_path.iterdir())
    try:
        r = run_runtime("run", str(default_bundle), "--input", str(src), "--output", str(out), timeout=60)
    finally:
        sock.close()
    one_line_error(r, "python -m runtime run: error:", *words)
    assert unchanged()
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no temp file, nothing new


def test_output_symlink_to_a_regular_file_is_written_through(default_bundle, short_wav, tmp_path):
    """The link stays a link, its target gets the result (as --help says)."""
    (tmp_path / "target.wav").write_bytes(b"old contents")
    os.symlink("target.wav", tmp_path / "out.wav")
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(tmp_path / "out.wav"),
                    "--backend", "ckernel")
    assert r.returncode == 0, r.stderr
    assert os.path.islink(tmp_path / "out.wav") and os.readlink(tmp_path / "out.wav") == "target.wav"
    y, sr = read_wav(tmp_path / "target.wav")
    assert sr == 16000 and len(y) == len(read_wav(short_wav)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "target.wav"]
    r = run_runtime("run", "--help")
    assert "A symlink to a regular file is written through" in " ".join(r.stdout.split())


def test_a_250_character_output_name_works(default_bundle, short_wav, tmp_path):
    """A legal long name is not broken by the temporary file's suffix."""
    out = tmp_path / ("y" * 246 + ".wav")
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(out), "--backend", "ckernel")
    assert r.returncode == 0, r.stderr
    assert read_wav(out)[1] == 16000 and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_bench_refuses_a_report_path_before_it_starts(default_bundle, tmp_path, flag):
    """An unwritable (or not-ours) --json/--plot fails in one line before any timing is done."""
    make_char_device(tmp_path / "null")
    r = run_runtime("bench", str(default_bundle), "--seconds", "30", flag, str(tmp_path / "null"), timeout=60)
    one_line_error(r, "python -m runtime bench: error:", "null: is a character device; refusing to replace it with the report")
    assert "timing" not in r.stdout + r.stderr and r.stdout == ""
    r = run_runtime("bench", str(default_bundle), "--seconds", "30", flag, str(tmp_path / "none" / "r.out"), timeout=60)
    one_line_error(r, "python -m runtime bench: error:", "cannot write there", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


# ------------------------------------------------------- issue 17: native chatter, --channel default
def test_run_keeps_litert_chatter_off_the_terminal_and_verbose_shows_it(default_bundle, short_wav, tmp_path):
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(tmp_path / "a.wav"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = run_runtime("run", str(default_bundle), "--input", str(short_wav), "--output", str(tmp_path / "b.wav"), "--verbose")
    assert r.returncode == 0
    assert "[litert] INFO: Created TensorFlow Lite XNNPACK delegate" in r.stderr, r.stderr
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_channel_option_is_the_same_on_run_stream_and_bench():
    """--channel left|right|mix with the same default (mix) on every command that reads audio."""
    from runtime.cli import build_parser

    p = build_parser()
    defaults = {}
    for cmd, extra in (("run", ["--input", "a.wav", "--output", "b.wav"]), ("stream", []), ("bench", [])):
        defaults[cmd] = p.parse_args([cmd, "B", *extra]).channel
        assert p.parse_args([cmd, "B", *extra, "--channel", "right"]).channel == "right"
    assert set(defaults.values()) == {"mix"}, defaults
