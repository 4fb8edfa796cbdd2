"""CLI: help, targets, the demo path, and one-line errors with exit code 2 for user mistakes."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, run_toolchain

DEMO = REPO / "toolchain" / "assets" / "demo_speech.wav"


def test_help_explains_every_subcommand():
    r = run_toolchain("--help")
    assert r.returncode == 0
    for cmd in ("targets", "export", "inspect", "run"):
        assert cmd in r.stdout
    r = run_toolchain("export", "--help")
    assert r.returncode == 0 and "--audiogram" in r.stdout and "--preset" in r.stdout


def test_targets_lists_the_boards():
    r = run_toolchain("targets")
    assert r.returncode == 0
    for name in ("rpi4", "rpi5", "zero2w", "host"):
        assert name in r.stdout


def test_targets_piped_wraps_at_80_columns_instead_of_cutting():
    """Issue 17: `toolchain targets | cat` used to cut cells at 80 columns ("corte…", "-mflo…"). Now
    every line fits 80 columns, nothing is elided, and every board's values are there in full."""
    import subprocess
    import sys

    from runtime.boards import list_boards

    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "toolchain", "targets"], capture_output=True, text=True, timeout=300,
                       cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in r.stdout and "..." not in r.stdout
    words = r.stdout.split()
    for b in list_boards():
        flags = f"{b.name}: {b.compiler.triple} {' '.join(b.compiler.cflags)}".strip()
        assert flags in " ".join(words), flags
        for cell in (b.name, b.cpu.core, b.runtime.backend, f"{b.audio.output_limit:g}"):
            assert cell in words, (b.name, cell)


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in r.stderr


def _no_bundle_left(parent):
    return not any(p.name.startswith((".", "bundle")) for p in parent.iterdir()) if parent.exists() else True


def test_unknown_target(tmp_path):
    r = run_toolchain("export", "--target", "rpi9", "--out", str(tmp_path / "bundle"))
    _one_line_error(r, "rpi9", "rpi4")
    assert _no_bundle_left(tmp_path)


@pytest.mark.parametrize("content,words", [
    ({"thresholds_db_hl": [20, 30, 40]}, ["8"]),
    ({"thresholds_db_hl": [20, 30, 40, 50, 60, 70, 80, 200]}, ["200"]),
    ({"thresholds_db_hl": [20, 30, "x", 50, 60, 70, 80, 90]}, ["x"]),
])
def test_malformed_audiogram(tmp_path, content, words):
    f = tmp_path / "ag.json"
    f.write_text(json.dumps(content))
    r = run_toolchain("export", "--target", "rpi", "--audiogram", str(f), "--out", str(tmp_path / "bundle"))
    _one_line_error(r, "ag.json", *words)
    assert not (tmp_path / "bundle").exists()


def test_missing_audiogram_file(tmp_path):
    r = run_toolchain("export", "--target", "rpi", "--audiogram", str(tmp_path / "nope.json"), "--out", str(tmp_path / "b"))
    _one_line_error(r, "nope.json")


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    r = run_toolchain("export", "--target", "rpi", "--out", str(blocker / "bundle"))
    _one_line_error(r, "a-file")
    assert blocker.read_text() == "not a directory"


def test_export_target_takes_a_board_toml_path(tmp_path):
    """Issue 17: `export --target` accepts a board TOML path, as `--board` does (a name or an alias too)."""
    good = (REPO / "boards" / "rpi4.toml").read_text().replace('name = "rpi4"', 'name = "mine"')
    (tmp_path / "mine.toml").write_text(good)
    (tmp_path / "bundle").mkdir()
    # The board file is loaded and accepted: the refusal is the next check's, the existing --out.
    r = run_toolchain("export", "--target", str(tmp_path / "mine.toml"), "--out", str(tmp_path / "bundle"))
    _one_line_error(r, "bundle: already exists (pass --overwrite to replace it)")
    (tmp_path / "broken.toml").write_text(good.replace("block = 16\n", ""))
    r = run_toolchain("export", "--target", str(tmp_path / "broken.toml"), "--out", str(tmp_path / "b2"))
    _one_line_error(r, "broken.toml: ", "missing field audio.block")
    r = run_toolchain("export", "--target", str(tmp_path / "absent.toml"), "--out", str(tmp_path / "b2"))
    _one_line_error(r, "absent.toml: board file not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.toml", "bundle", "mine.toml"]
    assert list((tmp_path / "bundle").iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "keep.txt").write_text("mine")
    r = run_toolchain("export", "--target", "rpi", "--out", str(tmp_path / "bundle"))
    _one_line_error(r, "--overwrite")
    assert (tmp_path / "bundle" / "keep.txt").read_text() == "mine"


def test_run_missing_input(default_bundle, tmp_path):
    r = run_toolchain("run", str(default_bundle), "--input", str(tmp_path / "none.wav"), "--output", str(tmp_path / "o.wav"))
    _one_line_error(r, "none.wav")
    assert not (tmp_path / "o.wav").exists()


def test_run_streams_the_demo_file(default_bundle, tmp_path):
    out = tmp_path / "processed.wav"
    r = run_toolchain("run", str(default_bundle), "--input", str(DEMO), "--output", str(out))
    assert r.returncode == 0, r.stderr
    y, sr = sf.read(out)
    x, _ = sf.read(DEMO)
    assert sr == 16000 and len(y) == len(x)
    assert np.isfinite(y).all() and np.max(np.abs(y)) <= 0.891 + 1 / 32768
    assert "dB SPL" in r.stdout
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"


def test_verify_missing_weights_is_a_one_line_error(default_bundle, tmp_path):
    r = run_toolchain("verify", str(default_bundle), "--icnet-weights", str(tmp_path / "w.h5"),
                      "--json", str(tmp_path / "v.json"))
    _one_line_error(r, "w.h5")
    assert not (tmp_path / "v.json").exists()
