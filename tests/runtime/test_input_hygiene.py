"""Bad input through both command lines: one line on stderr naming the problem, exit 2, no
traceback, and nothing half-written (an existing output file keeps its bytes, no temp files).

Covers what test_runtime_cli.py and test_cli.py do not: WAV files of a wrong rate, channel count
or bit depth, a huge file, more corrupt headers and non-finite float samples; audiograms with a
wrong count, unit or NaN; board TOMLs with a missing table or field. ``python -m runtime`` runs as
a subprocess (it starts in a second); ``toolchain`` runs its real ``main()`` in this process
(torch is already imported here), with one subprocess per kind as the end-to-end check.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.wavio import MAX_WAV_BYTES
from tests.conftest import REPO, run_toolchain

KEEP = b"an earlier result the failed run must not touch"


def wav_bytes(*, tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16, block_align: int | None = None,
              data: bytes | None = None, frames: int = 1600) -> bytes:
    """A RIFF/WAVE file with exactly the header fields given (no validation: that is the point)."""
    if block_align is None:
        block_align = channels * bits // 8
    if data is None:
        data = bytes((max(1, block_align)) * frames)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def float_wav_with_nan() -> bytes:
    x = np.sin(np.arange(1600) / 10).astype("<f4")
    x[100:103] = np.nan
    x[500] = np.inf
    return wav_bytes(tag=3, bits=32, data=x.tobytes())


def truncated_wav() -> bytes:
    """A header declaring 5 s of 16 kHz PCM 16 (160000 bytes) over 0.03 s of data: a copy cut short."""
    data = bytes(2 * 480)
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 5 * 32000) + data
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + 5 * 32000) + body


def data_before_fmt() -> bytes:
    good = wav_bytes()
    fmt_chunk, data_chunk = good[12:36], good[36:]
    return good[:12] + data_chunk + fmt_chunk


# name -> (file bytes or a writer, words the one error line must contain)
BAD_WAVS = {
    "rate_1hz.wav": (wav_bytes(rate=1), ["sample rate 1 Hz is outside the supported 8000..384000 Hz"]),
    "rate_1mhz.wav": (wav_bytes(rate=1_000_000), ["sample rate 1000000 Hz is outside the supported 8000..384000 Hz"]),
    "rate_0.wav": (wav_bytes(rate=0), ["corrupt WAV header (1 channels, 0 Hz, 16 bits)"]),
    "six_channels.wav": (wav_bytes(channels=6), ["has 6 channels; expected mono"]),
    "zero_channels.wav": (wav_bytes(channels=0, block_align=2), ["corrupt WAV header (0 channels, 16000 Hz, 16 bits)"]),
    "pcm12.wav": (wav_bytes(bits=12, block_align=2), ["unsupported WAV encoding (PCM, 12 bits); use PCM 16/24/32 or float 32"]),
    "pcm64.wav": (wav_bytes(bits=64), ["unsupported WAV encoding (PCM, 64 bits)"]),
    "mulaw.wav": (wav_bytes(tag=7, bits=8), ["unsupported WAV encoding (format tag 0x0007, 8 bits)"]),
    "bad_block_align.wav": (wav_bytes(block_align=3), ["corrupt WAV header (block align 3 for 1 x 16 bits)"]),
    "short_fmt.wav": (b"RIFF\x1c\x00\x00\x00WAVEfmt \x08\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00", ["corrupt WAV header (fmt chunk of 8 bytes)"]),
    "data_before_fmt.wav": (data_before_fmt(), ["corrupt WAV header (data before fmt)"]),
    "no_data.wav": (wav_bytes()[:36], ["corrupt WAV file (no data chunk)"]),
    "nan.wav": (float_wav_with_nan(), ["holds 4 non-finite samples (NaN or inf)"]),
    "empty.wav": (b"", ["not a WAV file (empty file)"]),
    # Issue 17: these were processed without a word.
    "truncated.wav": (truncated_wav(), ["truncated WAV file (the data chunk declares 160000 bytes, the file holds 960)"]),
    "float_x8.wav": (wav_bytes(tag=3, bits=32, data=(8 * np.sin(np.arange(1600) / 10)).astype("<f4").tobytes()),
                     ["float samples reach 8 full scale; more than 2 means a mis-scaled file"]),
}


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad-input")
    for name, (raw, _) in BAD_WAVS.items():
        (d / name).write_bytes(raw)
    # Huge: a valid header on a sparse 600 MiB file (no disk used); refused before it is read.
    huge = d / "huge.wav"
    n = MAX_WAV_BYTES + 88 * 2**20
    with open(huge, "wb") as fh:
        fh.write(wav_bytes(data=b"", frames=0)[:-8] + b"data" + struct.pack("<I", n - 44))
        fh.truncate(n)
    return d


def runtime_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=env)


@pytest.fixture
def tc(capsys):
    """``toolchain ARGS`` through its real main() in this process; returns (exit code, stdout, stderr)."""
    import toolchain.cli as cli

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        rc = cli.main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out, err)

    return run


def one_line_error(r: subprocess.CompletedProcess, prefix: str, *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(prefix + ": error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def untouched(d: Path, name: str = "out.wav") -> bool:
    return (d / name).read_bytes() == KEEP and not [p for p in d.iterdir() if p.name.startswith(f".{name}")]


# --------------------------------------------------------------------------------- wav files
@pytest.mark.parametrize("name", [*BAD_WAVS, "huge.wav"])
def test_bad_wav_through_python_m_runtime(default_bundle, bad_dir, tmp_path, name):
    (tmp_path / "out.wav").write_bytes(KEEP)
    words = BAD_WAVS[name][1] if name in BAD_WAVS else ["MiB is too large; the limit is 512 MiB"]
    r = runtime_cli("run", str(default_bundle), "--input", str(bad_dir / name), "--output", str(tmp_path / "out.wav"))
    line = one_line_error(r, "python -m runtime run", str(bad_dir / name), *words)
    print(line)
    assert untouched(tmp_path)


@pytest.mark.parametrize("name", [*BAD_WAVS, "huge.wav"])
def test_bad_wav_through_toolchain_run(default_bundle, bad_dir, tmp_path, tc, name):
    (tmp_path / "out.wav").write_bytes(KEEP)
    words = BAD_WAVS[name][1] if name in BAD_WAVS else ["MiB is too large; the limit is 512 MiB"]
    r = tc("run", str(default_bundle), "--input", str(bad_dir / name), "--output", str(tmp_path / "out.wav"))
    one_line_error(r, "toolchain run", str(bad_dir / name), *words)
    assert untouched(tmp_path)


def test_bad_wav_in_a_fresh_toolchain_process(default_bundle, bad_dir, tmp_path):
    (tmp_path / "out.wav").write_bytes(KEEP)
    r = run_toolchain("run", str(default_bundle), "--input", str(bad_dir / "rate_1hz.wav"), "--output",
                      str(tmp_path / "out.wav"))
    one_line_error(r, "toolchain run", "sample rate 1 Hz is outside")
    assert untouched(tmp_path)


def test_bench_refuses_a_bad_input_wav(default_bundle, bad_dir, tmp_path):
    r = runtime_cli("bench", str(default_bundle), "--backend", "ckernel", "--seconds", "0.2", "--input",
                    str(bad_dir / "rate_1mhz.wav"), "--json", str(tmp_path / "b.json"))
    one_line_error(r, "python -m runtime bench", "sample rate 1000000 Hz")
    assert list(tmp_path.iterdir()) == []


def test_rates_in_range_are_resampled_not_refused(default_bundle, tmp_path):
    """The bounds are inclusive: 8 kHz (telephone) audio is accepted and resampled."""
    x = (0.1 * np.sin(np.arange(4000) * 2 * np.pi * 300 / 8000) * 32767).astype("<i2")
    (tmp_path / "tel.wav").write_bytes(wav_bytes(rate=8000, data=x.tobytes()))
    r = runtime_cli("run", str(default_bundle), "--input", str(tmp_path / "tel.wav"), "--output", str(tmp_path / "o.wav"),
                    "--backend", "ckernel")
    assert r.returncode == 0, r.stderr
    assert "8000 Hz; resampling" in r.stdout


# --------------------------------------------------------------------------------- audiograms
BAD_AUDIOGRAMS = {
    "seven.json": (json.dumps({"thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60]}),
                   "got 7 thresholds; expected 8 (dB HL at 250, 500, 1000, 2000, 3000, 4000, 6000, 8000 Hz)"),
    # Nine thresholds with no frequencies cannot be paired; the 125 Hz set with its header is accepted (below).
    "nine.json": (json.dumps({"thresholds_db_hl": [30] * 9}), "got 9 thresholds; expected 8"),
    "spl.json": (json.dumps({"units": "dB SPL", "thresholds_db_hl": [20] * 8}), "units are 'dB SPL'; expected 'dB HL'"),
    "spl.csv": ("freq_hz,threshold_db_spl\n" + "".join(f"{f},30\n" for f in (250, 500, 1000, 2000, 3000, 4000, 6000, 8000)),
                "CSV header says units 'threshold_db_spl'; expected dB HL"),
    "nan.json": ('{"thresholds_db_hl": [20, 25, NaN, 45, 50, 55, 60, 65]}',
                 "threshold at 1000 Hz is nan; expected a finite number of dB HL in -10..120"),
    "nan.csv": ("250,20\n500,25\n1000,nan\n2000,45\n3000,50\n4000,55\n6000,60\n8000,65\n",
                "threshold at 1000 Hz is nan; expected a finite number of dB HL in -10..120"),
    "null.json": (json.dumps({"thresholds_db_hl": [20, None, 35, 45, 50, 55, 60, 65]}),
                  "threshold at 500 Hz is None, which is not a number"),
    "freqs.json": (json.dumps({"frequencies_hz": [250, 500, 1000, 1234, 3000, 4000, 6000, 8000],
                               "thresholds_db_hl": [20] * 8}), "do not match the audiogram frequencies (1234 Hz"),
    "khz.csv": ("0.25,20\n0.5,25\n1,35\n2,45\n3,50\n4,55\n6,60\n8,65\n", "do not match the audiogram frequencies"),
    # Issue 17: a mis-cased key was ignored and the preset exported instead.
    "typo_key.json": (json.dumps({"thresholds_db_HL": [20, 25, 35, 45, 50, 55, 60, 65]}),
                      "unknown key 'thresholds_db_HL'; expected only: name, units, frequencies_hz, thresholds_db_hl"),
}


@pytest.mark.parametrize("name", list(BAD_AUDIOGRAMS))
def test_bad_audiogram_is_one_line_and_writes_no_bundle(tmp_path, tc, name):
    text, words = BAD_AUDIOGRAMS[name]
    (tmp_path / name).write_text(text)
    r = tc("export", "--target", "rpi", "--audiogram", str(tmp_path / name), "--out", str(tmp_path / "bundle"))
    line = one_line_error(r, "toolchain export", f"{tmp_path / name}: ", words)
    print(line)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_bad_audiogram_in_a_fresh_toolchain_process(tmp_path):
    text, words = BAD_AUDIOGRAMS["nan.json"]
    (tmp_path / "nan.json").write_text(text)
    r = run_toolchain("export", "--target", "rpi", "--audiogram", str(tmp_path / "nan.json"), "--out", str(tmp_path / "b"))
    one_line_error(r, "toolchain export", words)
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------------- boards
def _board_variants() -> dict[str, tuple[str, str]]:
    good = (REPO / "boards" / "rpi4.toml").read_text()
    table = good.index("[audio]")
    end = good.index("[budget]")
    return {
        "no_audio": (good[:table] + good[end:], "missing table [audio]"),
        "no_limit": (good.replace("output_limit = 0.891\n", ""), "missing field audio.output_limit"),
        "no_backend": (good.replace('backend = "litert"\n', ""), "missing field runtime.backend"),
        "no_name": (good.replace('name = "rpi4"\n', ""), "missing field name"),
        "no_keys": (good.replace("require_signature = false", "require_signature = true"),
                    "runtime.require_signature = true needs runtime.trusted_keys"),
        "bad_limit": (good.replace("output_limit = 0.891", "output_limit = 1.5"),
                      "audio.output_limit must be a number in (0, 1], got 1.5"),
    }


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("boards")
    for stem, (text, _) in _board_variants().items():
        (d / f"{stem}.toml").write_text(text.replace('name = "rpi4"', f'name = "{stem}"'))
    return d


@pytest.mark.parametrize("stem", list(_board_variants()))
def test_broken_board_through_toolchain_export(board_dir, tmp_path, tc, monkeypatch, stem):
    monkeypatch.setenv("HX_BOARDS_DIR", str(board_dir))
    r = tc("export", "--target", stem, "--out", str(tmp_path / "bundle"))
    line = one_line_error(r, "toolchain export", f"{stem}.toml: ", _board_variants()[stem][1])
    print(line)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stem", ["no_limit", "no_keys"])
def test_broken_board_through_python_m_runtime(default_bundle, board_dir, tmp_path, stem):
    (tmp_path / "out.wav").write_bytes(KEEP)
    r = runtime_cli("run", str(default_bundle), "--input", str(REPO / "toolchain" / "assets" / "demo_speech.wav"),
                    "--output", str(tmp_path / "out.wav"), "--board", str(board_dir / f"{stem}.toml"))
    one_line_error(r, "python -m runtime run", f"{stem}.toml: ", _board_variants()[stem][1])
    assert untouched(tmp_path)


def test_broken_board_in_a_fresh_toolchain_process(board_dir, tmp_path):
    env_dir = tmp_path / "boards"
    env_dir.mkdir()
    (env_dir / "no_audio.toml").write_text((board_dir / "no_audio.toml").read_text())
    r = subprocess.run([sys.executable, "-m", "toolchain", "targets"], capture_output=True, text=True, timeout=300,
                       cwd=REPO, env=dict(os.environ, HX_BOARDS_DIR=str(env_dir),
                                          PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")))
    one_line_error(r, "toolchain targets", "no_audio.toml: missing table [audio]")


# --------------------------------------------------------------------------------- issue 17: bad values
def test_float_bound_is_stated_in_help():
    r = runtime_cli("run", "--help")
    assert "float within ±2" in " ".join(r.stdout.split())


def test_a_device_node_as_input_is_refused_at_once(default_bundle, tmp_path):
    """``--input /dev/zero`` used to hang: a node the test makes itself (1:5, what /dev/zero is) is refused
    before it is opened, on run and bench."""
    from tests.conftest import make_char_device

    zero = make_char_device(tmp_path / "zero", 1, 5)
    (tmp_path / "out.wav").write_bytes(KEEP)
    r = runtime_cli("run", str(default_bundle), "--input", str(zero), "--output", str(tmp_path / "out.wav"))
    one_line_error(r, "python -m runtime run", f"{zero}: is a character device, not a regular wav file")
    r = runtime_cli("bench", str(default_bundle), "--input", str(zero), "--seconds", "0.2", "--json", str(tmp_path / "b.json"))
    one_line_error(r, "python -m runtime bench", f"{zero}: is a character device")
    assert untouched(tmp_path) and sorted(p.name for p in tmp_path.iterdir()) == ["out.wav", "zero"]


@pytest.mark.parametrize("cmd", ["run-litert", "run-ckernel", "run-onnx", "bench", "stream"])
def test_negative_threads_are_refused_everywhere(default_bundle, bad_dir, tmp_path, cmd):
    (tmp_path / "out.wav").write_bytes(KEEP)
    wav = str(REPO / "toolchain" / "assets" / "demo_speech.wav")
    name, _, backend = cmd.partition("-")
    args = {"run": ["run", str(default_bundle), "--input", wav, "--output", str(tmp_path / "out.wav"), "--backend", backend],
            "bench": ["bench", str(default_bundle), "--seconds", "0.2", "--json", str(tmp_path / "b.json")],
            "stream": ["stream", str(default_bundle), "--seconds", "0.2"]}[name]
    r = runtime_cli(*args, "--threads", "-1")
    one_line_error(r, f"python -m runtime {name}", "--threads must be 1..64, got -1")
    assert untouched(tmp_path) and sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


def test_negative_threads_through_toolchain_run(default_bundle, tmp_path, tc):
    (tmp_path / "out.wav").write_bytes(KEEP)
    r = tc("run", str(default_bundle), "--input", str(REPO / "toolchain" / "assets" / "demo_speech.wav"),
           "--output", str(tmp_path / "out.wav"), "--backend", "onnx", "--threads", "-1")
    one_line_error(r, "toolchain run", "--threads must be 1..64, got -1")
    assert untouched(tmp_path)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0"])
def test_bench_seconds_must_be_finite_and_positive(default_bundle, tmp_path, value):
    r = runtime_cli("bench", str(default_bundle), f"--seconds={value}", "--json", str(tmp_path / "b.json"))
    shown = {"-1": "-1.0", "0": "0.0"}.get(value, value)
    one_line_error(r, "python -m runtime bench", f"--seconds must be a finite number of seconds > 0, got {shown}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,words", [
    (["--block", "0"], "--block must be 1..4096 samples, got 0"),
    (["--block", "-16"], "--block must be 1..4096 samples, got -16"),
    (["--out", ""], "--out is empty; name the bundle directory"),
])
def test_export_refuses_a_bad_block_or_an_empty_out(tmp_path, tc, monkeypatch, args, words):
    """Issue 17: these fell back to defaults (the board's block, out/bundle-<target>) and exported."""
    monkeypatch.chdir(tmp_path)
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "bundle")]
    r = tc("export", "--target", "rpi", *args)
    one_line_error(r, "toolchain export", words)
    assert list(tmp_path.iterdir()) == []
