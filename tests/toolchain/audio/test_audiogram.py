"""Tests for audiogram validation, files, presets, interpolation and random draws."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.audio.audiogram import (
    AUDIOGRAM_FREQS_HZ,
    PRESETS,
    STANDARD_AUDIOGRAMS,
    Audiogram,
    AudiogramError,
)

GOOD = [20, 25, 35, 45, 50, 55, 60, 65]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _one_line(exc: pytest.ExceptionInfo[AudiogramError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ construction
def test_valid_audiogram_normalises_to_float_tuple() -> None:
    a = Audiogram(GOOD, name="x")  # type: ignore[arg-type]
    assert a.thresholds_db_hl == tuple(float(v) for v in GOOD)
    assert a.as_array().dtype == np.float32 and a.as_array().shape == (8,)
    np.testing.assert_allclose(a.normalised(), np.array(GOOD) / 100.0, rtol=1e-6)
    assert a.normalised().dtype == np.float32


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (GOOD[:7], ["7 thresholds", "expected 8"]),
        (GOOD + [70], ["9 thresholds", "expected 8"]),
        ([20, 25, 35, 45, 130, 55, 60, 65], ["3000 Hz", "130", "-10..120"]),
        ([20, 25, -15, 45, 50, 55, 60, 65], ["1000 Hz", "-15", "-10..120"]),
        ([20, 25, 35, float("nan"), 50, 55, 60, 65], ["2000 Hz", "nan"]),
        ([20, 25, 35, 45, 50, float("inf"), 60, 65], ["4000 Hz", "inf"]),
        ([20, "x", 35, 45, 50, 55, 60, 65], ["500 Hz", "'x'", "not a number"]),
        ([True, 25, 35, 45, 50, 55, 60, 65], ["250 Hz", "True", "not a number"]),
        ([None, 25, 35, 45, 50, 55, 60, 65], ["250 Hz", "None"]),
        ("2025354550556065", ["sequence"]),
    ],
)
def test_invalid_thresholds(values: object, words: list[str]) -> None:
    with pytest.raises(AudiogramError) as exc:
        Audiogram(values)  # type: ignore[arg-type]
    msg = _one_line(exc)
    for w in words:
        assert w in msg, (w, msg)


def test_audiogram_error_is_value_error() -> None:
    assert issubclass(AudiogramError, ValueError)


def test_range_limits_are_inclusive() -> None:
    Audiogram((-10, 0, 0, 0, 0, 0, 0, 120))


# ------------------------------------------------------------------ presets
def test_presets_exist_and_are_valid() -> None:
    for name in ("normal", "mild-flat", "moderate-sloping", "severe-sloping"):
        a = Audiogram.preset(name)
        assert a.name == name
        assert a.thresholds_db_hl == PRESETS[name]
    assert max(Audiogram.preset("normal").thresholds_db_hl) <= 5
    assert all(25 <= v <= 30 for v in Audiogram.preset("mild-flat").thresholds_db_hl)
    mod, sev = Audiogram.preset("moderate-sloping"), Audiogram.preset("severe-sloping")
    assert np.all(np.diff(mod.as_array()) >= 0) and np.all(sev.as_array() > mod.as_array())


def test_bisgaard_standard_audiograms_are_presets_and_not_training_presets() -> None:
    # Bisgaard et al. 2010, Tables 2 and 4 at 250, 375, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000 Hz.
    paper_hz = [250, 375, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000]
    paper = {"N3": [35, 35, 35, 35, 40, 45, 50, 55, 60, 65], "N4": [55, 55, 55, 55, 55, 60, 65, 70, 75, 80],
             "S2": [20, 20, 20, 22.5, 25, 35, 55, 75, 95, 95], "S3": [30, 30, 35, 47.5, 60, 70, 75, 80, 80, 85]}
    for name, row in paper.items():
        a = Audiogram.preset(name)
        want = [row[paper_hz.index(f)] for f in AUDIOGRAM_FREQS_HZ[:-1]] + [row[-1]]  # 8 kHz holds 6 kHz
        assert a.name == name and list(a.thresholds_db_hl) == want
    assert sorted(STANDARD_AUDIOGRAMS) == [*(f"N{i}" for i in range(1, 8)), "S1", "S2", "S3"]
    assert not set(STANDARD_AUDIOGRAMS) & set(PRESETS)  # training draws from PRESETS only
    # Severity grows N1 -> N7 at every frequency.
    n = np.array([STANDARD_AUDIOGRAMS[f"N{i}"] for i in range(1, 8)])
    assert np.all(np.diff(n, axis=0) >= 0)


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(AudiogramError) as exc:
        Audiogram.preset("terrible")
    msg = _one_line(exc)
    assert "terrible" in msg
    for name in PRESETS:
        assert name in msg


# ------------------------------------------------------------------ JSON files
def test_json_object_and_bare_list(tmp_path: Path) -> None:
    p1 = _write(tmp_path / "a.json", json.dumps(
        {"thresholds_db_hl": GOOD, "frequencies_hz": list(AUDIOGRAM_FREQS_HZ), "units": "dB HL"}))
    p2 = _write(tmp_path / "b.json", json.dumps(GOOD))
    assert Audiogram.from_file(p1).thresholds_db_hl == tuple(map(float, GOOD))
    assert Audiogram.from_file(p2).thresholds_db_hl == tuple(map(float, GOOD))
    assert Audiogram.from_file(p1).name == "a"


def test_json_round_trip_is_atomic(tmp_path: Path) -> None:
    a = Audiogram.preset("severe-sloping")
    out = tmp_path / "out.json"
    a.to_json(out)
    assert Audiogram.from_file(out) == a
    assert sorted(os.listdir(tmp_path)) == ["out.json"]
    data = json.loads(out.read_text())
    assert data["frequencies_hz"] == list(AUDIOGRAM_FREQS_HZ) and data["units"] == "dB HL"


def test_to_json_unwritable_directory(tmp_path: Path) -> None:
    with pytest.raises(AudiogramError) as exc:
        Audiogram.preset("normal").to_json(tmp_path / "missing-dir" / "x.json")
    assert "x.json" in _one_line(exc)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"thresholds_db_hl": [20, 25, 35]}', ["bad.json", "3 thresholds", "expected 8"]),
        ('{"thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 200]}', ["bad.json", "8000 Hz", "200", "-10..120"]),
        ('{"thresholds_db_hl": [20, 25, "loud", 45, 50, 55, 60, 65]}', ["bad.json", "1000 Hz", "not a number"]),
        ('{"thresholds_db_hl": [20, 25, NaN, 45, 50, 55, 60, 65]}', ["bad.json", "1000 Hz", "nan"]),
        ('{"thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65',  ["bad.json", "invalid JSON"]),
        ('{"thresholds": [20, 25, 35, 45, 50, 55, 60, 65]}', ["bad.json", "thresholds_db_hl"]),
        ('{"thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65], "units": "dB SPL"}', ["bad.json", "dB SPL", "dB HL"]),
        ('{"thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65], '
         '"frequencies_hz": [250, 500, 1000, 2000, 3000, 4000, 6000, 7000]}',
         ["bad.json", "7000", "250, 500, 1000, 2000, 3000, 4000, 6000, 8000"]),
        ('{"thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65], '
         '"frequencies_hz": [500, 250, 1000, 2000, 3000, 4000, 6000, 8000]}',
         ["bad.json", "not strictly increasing", "500, 250"]),
        ('"hello"', ["bad.json", "str"]),
        ("", ["bad.json", "empty"]),
    ],
)
def test_bad_json_files(tmp_path: Path, content: str, words: list[str]) -> None:
    p = _write(tmp_path / "bad.json", content)
    with pytest.raises(AudiogramError) as exc:
        Audiogram.from_file(p)
    msg = _one_line(exc)
    for w in words:
        assert w in msg, (w, msg)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudiogramError) as exc:
        Audiogram.from_file(tmp_path / "nope.json")
    msg = _one_line(exc)
    assert "nope.json" in msg and "not found" in msg


def test_directory_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(AudiogramError, match="directory"):
        Audiogram.from_file(tmp_path)
    p = tmp_path / "bin.json"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(AudiogramError, match="bin.json"):
        Audiogram.from_file(p)


# ------------------------------------------------------------------ CSV files
def _csv(freqs: tuple[int, ...] | list[int], values: list[object], header: str | None = None) -> str:
    lines = [header] if header else []
    lines += [f"{f},{v}" for f, v in zip(freqs, values)]
    return "\n".join(lines) + "\n"


def test_csv_with_and_without_header(tmp_path: Path) -> None:
    p1 = _write(tmp_path / "a.csv", _csv(AUDIOGRAM_FREQS_HZ, GOOD, "freq_hz,threshold_db_hl"))
    p2 = _write(tmp_path / "b.csv", _csv(AUDIOGRAM_FREQS_HZ, GOOD))
    p3 = _write(tmp_path / "c.txt", "# my audiogram\n\n" + _csv(AUDIOGRAM_FREQS_HZ, GOOD))
    for p in (p1, p2, p3):
        assert Audiogram.from_file(p).thresholds_db_hl == tuple(map(float, GOOD))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (_csv(AUDIOGRAM_FREQS_HZ[:6], GOOD[:6]), ["bad.csv", "do not span 250..8000 Hz", "not extrapolated"]),
        (_csv(AUDIOGRAM_FREQS_HZ, [20, 25, 35, 45, 50, 55, 60, 125]), ["bad.csv", "8000 Hz", "125"]),
        (_csv(AUDIOGRAM_FREQS_HZ, [20, 25, 35, "abc", 50, 55, 60, 65]), ["bad.csv", "'abc'", "not a number"]),
        (_csv(AUDIOGRAM_FREQS_HZ, [20, 25, 35, "nan", 50, 55, 60, 65]), ["bad.csv", "2000 Hz", "nan"]),
        (_csv((250, 500, 700, 1000, 2000, 4000, 6000, 8000), GOOD), ["bad.csv", "700 Hz is not a clinical one",
                                                                     "expected [250"]),
        (_csv((250, 1000, 2000, 4000, 8000), GOOD[:5]), ["bad.csv", "gap of 2 octaves between 250 and 1000 Hz"]),
        (_csv((8000, 6000, 4000, 3000, 2000, 1000, 500, 250), GOOD), ["bad.csv", "not strictly increasing"]),
        ("250,20,5\n", ["bad.csv", "3 fields"]),
        (_csv(AUDIOGRAM_FREQS_HZ, GOOD, "freq_hz,threshold_db_spl"), ["bad.csv", "dB HL"]),
    ],
)
def test_bad_csv_files(tmp_path: Path, content: str, words: list[str]) -> None:
    p = _write(tmp_path / "bad.csv", content)
    with pytest.raises(AudiogramError) as exc:
        Audiogram.from_file(p)
    msg = _one_line(exc)
    for w in words:
        assert w in msg, (w, msg)


# ------------------------------------------------------------------ interpolation
def test_interpolation_hits_thresholds_at_audiogram_freqs() -> None:
    a = Audiogram.preset("moderate-sloping")
    np.testing.assert_allclose(a.at_frequencies(AUDIOGRAM_FREQS_HZ), a.thresholds_db_hl)


def test_interpolation_is_log_frequency_and_flat_outside() -> None:
    a = Audiogram((0, 10, 20, 30, 40, 50, 60, 70))
    # Geometric mean of 250 and 500 Hz lies half-way in log frequency.
    assert a.at_frequencies([np.sqrt(250 * 500)])[0] == pytest.approx(5.0)
    # 2000..3000 Hz: log2 interpolation, not linear in Hz.
    f = 2000 * 2 ** (0.5 * np.log2(1.5))
    assert a.at_frequencies([f])[0] == pytest.approx(35.0)
    np.testing.assert_allclose(a.at_frequencies([20, 100, 10000, 20000]), [0, 0, 70, 70])
    with pytest.raises(AudiogramError):
        a.at_frequencies([0.0])


# ------------------------------------------------------------------ random draws
def test_random_audiograms_are_valid_varied_and_deterministic() -> None:
    rng = np.random.default_rng(123)
    draws = [Audiogram.random(rng) for _ in range(300)]
    arr = np.stack([d.as_array() for d in draws])
    assert arr.min() >= 0 and arr.max() <= 100
    shapes = {d.name for d in draws}
    assert {"random-normal", "random-flat", "random-sloping", "random-notch"} <= shapes
    assert arr.mean(axis=1).std() > 10  # a real spread of severities
    # On average thresholds rise with frequency (monotone-ish population).
    assert np.mean(arr[:, -1] - arr[:, 0]) > 5
    again = [Audiogram.random(np.random.default_rng(123)) for _ in range(1)]
    assert again[0] == draws[0]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_random_always_validates(seed: int) -> None:
    a = Audiogram.random(np.random.default_rng(seed))
    assert len(a.thresholds_db_hl) == 8
    assert all(0.0 <= v <= 100.0 for v in a.thresholds_db_hl)


# ------------------------------------------------------------------ clinical frequency sets
SIX = (250, 500, 1000, 2000, 4000, 8000)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_six_frequency_audiogram_is_interpolated_with_one_notice(tmp_path: Path, fmt: str) -> None:
    """The usual clinical six: 3 and 6 kHz are interpolated in dB over log frequency, with one notice."""
    vals = [20, 25, 35, 45, 55, 65]
    text = (_csv(SIX, vals, "freq_hz,threshold_db_hl") if fmt == "csv"
            else json.dumps({"frequencies_hz": list(SIX), "thresholds_db_hl": vals}))
    p = _write(tmp_path / f"six.{fmt}", text)
    notes: list[str] = []
    ag = Audiogram.from_file(p, notice=notes.append)
    want3 = 45 + (55 - 45) * math.log2(3000 / 2000)  # one octave 2k..4k, 3k at log2(1.5) of it
    want6 = 55 + (65 - 55) * math.log2(6000 / 4000)
    assert ag.thresholds_db_hl == (20, 25, 35, 45, round(want3, 1), 55, round(want6, 1), 65)
    assert len(notes) == 1 and "\n" not in notes[0]
    assert f"{p}: interpolated 3000 Hz {round(want3, 1):g}, 6000 Hz {round(want6, 1):g} dB HL" in notes[0]


def test_half_octave_and_125_hz_sets_are_accepted(tmp_path: Path) -> None:
    """125 Hz and the 750/1500 Hz half-octaves: measured standard values kept, missing ones interpolated."""
    freqs = (125, 250, 500, 750, 1000, 1500, 2000, 4000, 8000)
    vals = [10, 20, 25, 30, 35, 40, 45, 55, 65]
    notes: list[str] = []
    ag = Audiogram.from_file(_write(tmp_path / "h.csv", _csv(freqs, vals)), notice=notes.append)
    assert ag.thresholds_db_hl[:4] == (20, 25, 35, 45) and ag.thresholds_db_hl[5] == 55 and ag.thresholds_db_hl[7] == 65
    assert len(notes) == 1 and "3000 Hz" in notes[0] and "6000 Hz" in notes[0] and "125, 750, 1500 Hz" in notes[0]


def test_standard_set_gives_no_notice(tmp_path: Path) -> None:
    notes: list[str] = []
    Audiogram.from_file(_write(tmp_path / "s.csv", _csv(AUDIOGRAM_FREQS_HZ, GOOD)), notice=notes.append)
    assert notes == []


def test_unknown_json_key_is_refused(tmp_path: Path) -> None:
    """A typo'd key (``thresholds_db_HL``) was ignored; now it is one line naming it."""
    p = _write(tmp_path / "typo.json", json.dumps({"thresholds_db_hl": GOOD, "thresholds_db_HL": GOOD}))
    with pytest.raises(AudiogramError) as exc:
        Audiogram.from_file(p)
    assert "unknown key 'thresholds_db_HL'" in _one_line(exc)


@pytest.mark.parametrize("name, text", [
    ("header_only.csv", "frequency_hz,threshold_db_hl\n"),
    ("empty_lists.json", '{"frequencies_hz": [], "thresholds_db_hl": []}'),
])
def test_an_audiogram_without_frequencies_is_one_clear_error(tmp_path: Path, name: str, text: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(AudiogramError, match=rf"{name}: frequencies_hz is empty; expected \[250, 500"):
        Audiogram.from_file(p)
