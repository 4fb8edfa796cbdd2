"""Audiograms: hearing thresholds in dB HL at the 8 standard frequencies.

The 8 frequencies are the ones Neuro-MSBG conditions on. Files are JSON
(``{"thresholds_db_hl": [...]}`` with optional ``frequencies_hz``, ``units``, ``name``; or a bare
list of 8 numbers) or CSV (``freq_hz,threshold_db_hl`` lines, optional header). Every problem
raises :class:`AudiogramError` with a one-line message; an unknown JSON key (a typo such as
``thresholds_db_HL``) is one of them.

A file with frequencies may give any increasing set of the clinical ones
(:data:`CLINICAL_FREQS_HZ`: 125..8000 Hz with the 750/1500 Hz half-octaves) that spans
250..8000 Hz with no gap wider than an octave, e.g. the usual six (250, 500, 1k, 2k, 4k, 8k):
the standard frequencies it lacks are interpolated in dB over log frequency (as
:meth:`Audiogram.at_frequencies` does) and reported in one notice line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.atomic import atomic_write

AUDIOGRAM_FREQS_HZ: tuple[int, ...] = (250, 500, 1000, 2000, 3000, 4000, 6000, 8000)
MIN_DB_HL = -10.0
MAX_DB_HL = 120.0

#: Frequencies a clinical audiometer tests (ISO 8253-1 air conduction: octaves 125..8000 Hz and
#: the 750, 1500, 3000, 6000 Hz half-octaves); a file may give any spanning subset of them.
CLINICAL_FREQS_HZ: tuple[int, ...] = (125, 250, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000)
#: Widest gap between two given frequencies across which a missing one is interpolated (1 octave).
MAX_GAP_OCTAVES = 1.0
#: Keys an audiogram JSON object may have; anything else is refused (a typo must not be ignored).
JSON_KEYS = ("name", "units", "frequencies_hz", "thresholds_db_hl", "comment")

_FREQS_TEXT = ", ".join(str(f) for f in AUDIOGRAM_FREQS_HZ)
_UNITS_ACCEPTED = {"dbhl", "db hl", "db_hl", "db-hl"}


class AudiogramError(ValueError):
    """A bad audiogram value or file; ``str()`` is a single line naming the problem."""

    def __init__(self, message: str) -> None:
        # Keep messages on one line so they read well in CLI errors and logs.
        super().__init__(" ".join(str(message).split()))


def _fmt_list(values: Iterable[Any]) -> str:
    return "[" + ", ".join(_fmt_num(v) for v in values) + "]"


def _fmt_num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


def _is_number(v: Any) -> bool:
    # bool is an int subclass, but True as a threshold is always a mistake.
    if isinstance(v, (bool, np.bool_)):
        return False
    return isinstance(v, (int, float, np.integer, np.floating))


def _validate_thresholds(values: Any) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise AudiogramError(
            f"thresholds must be a sequence of {len(AUDIOGRAM_FREQS_HZ)} numbers "
            f"(dB HL at {_FREQS_TEXT} Hz), got {type(values).__name__}"
        )
    values = list(np.asarray(values).tolist()) if isinstance(values, np.ndarray) else list(values)
    if len(values) != len(AUDIOGRAM_FREQS_HZ):
        raise AudiogramError(
            f"got {len(values)} thresholds; expected {len(AUDIOGRAM_FREQS_HZ)} "
            f"(dB HL at {_FREQS_TEXT} Hz)"
        )
    return _validate_thresholds_at(AUDIOGRAM_FREQS_HZ, values)


def _validate_thresholds_at(freqs: Sequence[float], values: Sequence[Any]) -> tuple[float, ...]:
    out: list[float] = []
    for freq, v in zip(freqs, values):
        freq = _fmt_num(float(freq))
        if not _is_number(v):
            raise AudiogramError(
                f"threshold at {freq} Hz is {v!r}, which is not a number; "
                f"expected a number of dB HL in {MIN_DB_HL:g}..{MAX_DB_HL:g}"
            )
        fv = float(v)
        if not math.isfinite(fv):
            raise AudiogramError(
                f"threshold at {freq} Hz is {fv}; expected a finite number of dB HL "
                f"in {MIN_DB_HL:g}..{MAX_DB_HL:g}"
            )
        if not MIN_DB_HL <= fv <= MAX_DB_HL:
            raise AudiogramError(
                f"threshold at {freq} Hz is {fv:g} dB HL, out of range; "
                f"expected {MIN_DB_HL:g}..{MAX_DB_HL:g} dB HL"
            )
        out.append(fv)
    return tuple(out)


def _check_frequencies(freqs: Any) -> list[float]:
    """A file's frequencies as floats: increasing clinical ones spanning 250..8000 Hz, gaps <= 1 octave."""
    clinical = ", ".join(str(f) for f in CLINICAL_FREQS_HZ)
    if isinstance(freqs, (str, bytes)) or not isinstance(freqs, Sequence):
        raise AudiogramError(f"frequencies_hz must be a list; expected [{_FREQS_TEXT}]")
    if not all(_is_number(f) and math.isfinite(float(f)) for f in freqs):
        raise AudiogramError(
            f"frequencies_hz {_fmt_list(freqs)} are not all numbers; expected [{_FREQS_TEXT}]"
        )
    fl = [float(f) for f in freqs]
    if not fl:
        raise AudiogramError(f"frequencies_hz is empty; expected [{_FREQS_TEXT}]")
    if any(b <= a for a, b in zip(fl, fl[1:])):
        raise AudiogramError(
            f"frequencies_hz {_fmt_list(freqs)} are not strictly increasing; "
            f"expected [{_FREQS_TEXT}]"
        )
    odd = [f for f in fl if f not in {float(c) for c in CLINICAL_FREQS_HZ}]
    if odd:
        raise AudiogramError(
            f"frequencies_hz {_fmt_list(freqs)} do not match the audiogram frequencies ({_fmt_num(odd[0])} Hz is not "
            f"a clinical one); expected [{_FREQS_TEXT}] or another increasing set of [{clinical}] Hz"
        )
    if fl[0] > AUDIOGRAM_FREQS_HZ[0] or fl[-1] < AUDIOGRAM_FREQS_HZ[-1]:
        raise AudiogramError(
            f"frequencies_hz {_fmt_list(freqs)} do not span {AUDIOGRAM_FREQS_HZ[0]}..{AUDIOGRAM_FREQS_HZ[-1]} Hz; "
            "thresholds outside the measured range are not extrapolated"
        )
    for a, b in zip(fl, fl[1:]):
        if math.log2(b / a) > MAX_GAP_OCTAVES + 1e-9:
            raise AudiogramError(
                f"frequencies_hz {_fmt_list(freqs)} leave a gap of {math.log2(b / a):.2g} octaves between "
                f"{_fmt_num(a)} and {_fmt_num(b)} Hz; at most {MAX_GAP_OCTAVES:g} is interpolated"
            )
    return fl


PRESETS: dict[str, tuple[float, ...]] = {
    "normal": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "mild-flat": (25.0, 25.0, 25.0, 30.0, 30.0, 30.0, 30.0, 30.0),
    "moderate-sloping": (20.0, 25.0, 35.0, 45.0, 50.0, 55.0, 60.0, 65.0),
    "severe-sloping": (50.0, 55.0, 65.0, 75.0, 80.0, 85.0, 90.0, 95.0),
    # Noise-induced loss: the classic notch around 4 kHz with recovery at 8 kHz.
    "noise-notch": (5.0, 5.0, 10.0, 20.0, 40.0, 50.0, 40.0, 25.0),
    # Age-related (presbycusis), typical of a 70-year-old.
    "presbycusis": (15.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0),
}

#: The standard audiograms of Bisgaard, Vlaming & Dahlquist, "Standard audiograms for the IEC
#: 60118-15 measurement procedure", Trends in Amplification 14(2):113-120, 2010: Table 2 (N1-N7,
#: flat and moderately sloping, very mild to profound) and Table 4 (S1-S3, steep high-frequency
#: losses), read at our frequencies from the paper's 250..6000 Hz columns. The paper stops at
#: 6 kHz, so 8 kHz repeats the 6 kHz value. They are evaluation audiograms: kept apart from
#: :data:`PRESETS`, the set training draws from, so adding them changed no training distribution.
STANDARD_AUDIOGRAMS: dict[str, tuple[float, ...]] = {
    "N1": (10.0, 10.0, 10.0, 15.0, 20.0, 30.0, 40.0, 40.0),
    "N2": (20.0, 20.0, 25.0, 35.0, 40.0, 45.0, 50.0, 50.0),
    "N3": (35.0, 35.0, 40.0, 50.0, 55.0, 60.0, 65.0, 65.0),
    "N4": (55.0, 55.0, 55.0, 65.0, 70.0, 75.0, 80.0, 80.0),
    "N5": (65.0, 70.0, 75.0, 80.0, 80.0, 80.0, 80.0, 80.0),
    "N6": (75.0, 80.0, 85.0, 90.0, 95.0, 100.0, 100.0, 100.0),
    "N7": (90.0, 95.0, 105.0, 105.0, 105.0, 105.0, 105.0, 105.0),
    "S1": (10.0, 10.0, 10.0, 15.0, 30.0, 55.0, 70.0, 70.0),
    "S2": (20.0, 20.0, 25.0, 55.0, 75.0, 95.0, 95.0, 95.0),
    "S3": (30.0, 35.0, 60.0, 75.0, 80.0, 80.0, 85.0, 85.0),
}
#: Every name :meth:`Audiogram.preset` accepts.
NAMED_AUDIOGRAMS: dict[str, tuple[float, ...]] = {**PRESETS, **STANDARD_AUDIOGRAMS}


@dataclass(frozen=True)
class Audiogram:
    """Hearing thresholds (dB HL) at :data:`AUDIOGRAM_FREQS_HZ`, validated on construction."""

    thresholds_db_hl: tuple[float, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise AudiogramError(f"audiogram name must be a string, got {self.name!r}")
        object.__setattr__(self, "thresholds_db_hl", _validate_thresholds(self.thresholds_db_hl))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def preset(cls, name: str) -> Audiogram:
        """One of :data:`NAMED_AUDIOGRAMS` (the presets and the standard audiograms) by name; an
        unknown name lists the valid ones."""
        if name not in NAMED_AUDIOGRAMS:
            raise AudiogramError(
                f"unknown audiogram preset {name!r}; valid presets: {', '.join(sorted(NAMED_AUDIOGRAMS))}"
            )
        return cls(NAMED_AUDIOGRAMS[name], name=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], notice: Callable[[str], None] | None = None) -> Audiogram:
        """Read a JSON or CSV audiogram; any problem → AudiogramError naming the file.

        When the file's frequencies lack some standard ones they are interpolated and ``notice``
        gets one line saying which, with the values used.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AudiogramError(f"{p}: audiogram file not found") from None
        except IsADirectoryError:
            raise AudiogramError(f"{p}: is a directory, not an audiogram file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AudiogramError(f"{p}: cannot read audiogram file ({exc})") from None
        if not text.strip():
            raise AudiogramError(f"{p}: audiogram file is empty")
        suffix = p.suffix.lower()
        # Sniff the format when the extension does not say: JSON starts with { or [.
        is_json = suffix == ".json" or (suffix != ".csv" and text.lstrip()[:1] in "{[")
        try:
            if is_json:
                freqs, thresholds, name = _parse_json(text)
            else:
                freqs, thresholds, name = _parse_csv(text)
            std, note = _to_standard(freqs, thresholds)
            ag = cls(std, name=name if name is not None else p.stem)
        except AudiogramError as exc:
            raise AudiogramError(f"{p}: {exc}") from None
        if note and notice is not None:
            notice(f"note: {p}: {note}")
        return ag

    @classmethod
    def random(cls, rng: np.random.Generator) -> Audiogram:
        """Draw a plausible audiogram for training over a distribution of hearing losses.

        A mixture of shapes: normal-ish, flat, gently/steeply sloping, precipitous
        (ski-slope) and noise notch; thresholds are monotone-ish (sloping ones are made
        non-decreasing before a small per-frequency jitter) and clipped to 0..100 dB HL.
        """
        x = np.log2(np.asarray(AUDIOGRAM_FREQS_HZ, dtype=np.float64) / 250.0)  # octaves, 0..5
        shapes = ("normal", "flat", "sloping", "precipitous", "notch")
        weights = np.array([0.15, 0.2, 0.35, 0.15, 0.15])
        shape = shapes[int(rng.choice(len(shapes), p=weights))]
        if shape == "normal":
            base = rng.uniform(-5.0, 15.0) + rng.normal(0.0, 3.0, size=x.shape)
            t = base
        elif shape == "flat":
            t = np.full(x.shape, rng.uniform(20.0, 75.0))
        elif shape == "sloping":
            start = rng.uniform(0.0, 45.0)
            slope = rng.uniform(4.0, 18.0)  # dB per octave
            t = np.maximum.accumulate(start + slope * x + rng.normal(0.0, 3.0, size=x.shape))
        elif shape == "precipitous":
            start = rng.uniform(0.0, 30.0)
            corner = rng.uniform(1.5, 4.0)  # octaves above 250 Hz (≈700 Hz..4 kHz)
            steep = rng.uniform(20.0, 40.0)
            t = start + steep * np.clip(x - corner, 0.0, None)
            t = np.maximum.accumulate(t + rng.normal(0.0, 3.0, size=x.shape))
        else:  # notch
            base = rng.uniform(0.0, 25.0) + 3.0 * x
            centre = rng.uniform(np.log2(3000 / 250), np.log2(6000 / 250))
            depth = rng.uniform(15.0, 45.0)
            t = base + depth * np.exp(-0.5 * ((x - centre) / 0.45) ** 2)
        t = np.clip(t + rng.normal(0.0, 2.0, size=x.shape), 0.0, 100.0)
        return cls(tuple(float(v) for v in np.round(t, 1)), name=f"random-{shape}")

    # ------------------------------------------------------------------ outputs
    def as_array(self) -> np.ndarray:
        """Thresholds as float32 array of shape (8,)."""
        return np.asarray(self.thresholds_db_hl, dtype=np.float32)

    def normalised(self) -> np.ndarray:
        """Thresholds / 100 as float32 (8,), the network input scale."""
        return (np.asarray(self.thresholds_db_hl, dtype=np.float64) / 100.0).astype(np.float32)

    def at_frequencies(self, freqs_hz: npt.ArrayLike) -> np.ndarray:
        """Thresholds interpolated linearly in dB vs log2(frequency); flat outside 250..8000 Hz."""
        f = np.asarray(freqs_hz, dtype=np.float64)
        if np.any(~np.isfinite(f)) or np.any(f <= 0):
            raise AudiogramError("frequencies must be finite and > 0 Hz for interpolation")
        # np.interp holds the end values outside the range, which is the flat extension we want.
        return np.interp(
            np.log2(f), np.log2(np.asarray(AUDIOGRAM_FREQS_HZ, dtype=np.float64)),
            np.asarray(self.thresholds_db_hl, dtype=np.float64),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written by :meth:`to_json`."""
        return {
            "name": self.name,
            "units": "dB HL",
            "frequencies_hz": list(AUDIOGRAM_FREQS_HZ),
            "thresholds_db_hl": list(self.thresholds_db_hl),
        }

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write JSON atomically (temp file in the same directory, then os.replace)."""
        p = Path(path)
        payload = json.dumps(self.to_dict(), indent=2) + "\n"
        try:
            with atomic_write(p, "w", encoding="utf-8") as fh:
                fh.write(payload)
        except OSError as exc:
            raise AudiogramError(f"{p}: cannot write audiogram file ({exc.strerror or exc})") from None


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AudiogramError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if isinstance(data, list):
        return None, data, None
    if not isinstance(data, dict):
        raise AudiogramError(
            f"JSON must be an object with thresholds_db_hl or a list of "
            f"{len(AUDIOGRAM_FREQS_HZ)} numbers, got {type(data).__name__}"
        )
    unknown = [k for k in data if k not in JSON_KEYS]
    if unknown:
        raise AudiogramError(f"unknown key {unknown[0]!r}; expected only: {', '.join(JSON_KEYS)} "
                             "(keys are case-sensitive)")
    if "units" in data:
        units = data["units"]
        if not isinstance(units, str) or units.strip().lower() not in _UNITS_ACCEPTED:
            raise AudiogramError(f"units are {units!r}; expected 'dB HL'")
    if "thresholds_db_hl" not in data:
        raise AudiogramError(
            f"missing key 'thresholds_db_hl' (expected {len(AUDIOGRAM_FREQS_HZ)} numbers, "
            f"dB HL at {_FREQS_TEXT} Hz)"
        )
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise AudiogramError(f"name must be a string, got {name!r}")
    return data.get("frequencies_hz"), data["thresholds_db_hl"], name


def _parse_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _parse_csv(text: str) -> tuple[list[float], list[float], None]:
    rows = [
        [c.strip() for c in row]
        for row in csv.reader(io.StringIO(text))
        if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
    ]
    if not rows:
        raise AudiogramError("CSV has no data lines")
    # An optional header: a first line whose first cell is not a number.
    if _parse_number(rows[0][0]) is None:
        header = [c.lower() for c in rows[0]]
        if len(header) >= 2 and "db" in header[1] and "hl" not in header[1].replace("_", " "):
            raise AudiogramError(f"CSV header says units {rows[0][1]!r}; expected dB HL")
        rows = rows[1:]
    freqs: list[float] = []
    thresholds: list[float] = []
    for lineno, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise AudiogramError(
                f"CSV data line {lineno} has {len(row)} fields; expected 'freq_hz,threshold_db_hl'"
            )
        f, t = _parse_number(row[0]), _parse_number(row[1])
        if f is None:
            raise AudiogramError(f"CSV data line {lineno}: frequency {row[0]!r} is not a number")
        if t is None:
            raise AudiogramError(
                f"CSV data line {lineno}: threshold {row[1]!r} is not a number; "
                f"expected dB HL in {MIN_DB_HL:g}..{MAX_DB_HL:g}"
            )
        freqs.append(f)
        thresholds.append(t)
    return freqs, thresholds, None


def _to_standard(freqs: Any, thresholds: Any) -> tuple[Any, str]:
    """Thresholds at AUDIOGRAM_FREQS_HZ from a file's (frequencies, thresholds), and a notice.

    Without frequencies the thresholds must be the 8 standard ones. With them, the missing
    standard frequencies are interpolated linearly in dB over log2 frequency between their
    measured neighbours (never extrapolated, never across more than an octave); the notice names
    them with the values used, or is empty when nothing was interpolated.
    """
    if freqs is None:
        if isinstance(thresholds, Sequence) and not isinstance(thresholds, (str, bytes)) \
                and len(thresholds) != len(AUDIOGRAM_FREQS_HZ):
            raise AudiogramError(f"got {len(thresholds)} thresholds; expected {len(AUDIOGRAM_FREQS_HZ)} (dB HL at "
                                 f"{_FREQS_TEXT} Hz), or give frequencies_hz for another clinical set (e.g. 250, "
                                 "500, 1000, 2000, 4000, 8000)")
        return thresholds, ""
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence):
        return thresholds, ""  # _validate_thresholds gives the message
    fl = _check_frequencies(freqs)
    if len(thresholds) != len(fl):
        raise AudiogramError(f"got {len(thresholds)} thresholds for {len(fl)} frequencies_hz; they must pair up")
    vals = [_check_threshold(f, v) for f, v in zip(fl, thresholds)]
    if fl == [float(f) for f in AUDIOGRAM_FREQS_HZ]:
        return vals, ""
    std = np.interp(np.log2(np.asarray(AUDIOGRAM_FREQS_HZ, np.float64)), np.log2(np.asarray(fl)), np.asarray(vals))
    given = set(fl)
    filled = [(f, round(float(v), 1)) for f, v in zip(AUDIOGRAM_FREQS_HZ, std) if float(f) not in given]
    extra = [f for f in fl if f not in {float(s) for s in AUDIOGRAM_FREQS_HZ}]
    parts = []
    if filled:
        parts.append("interpolated " + ", ".join(f"{f} Hz {v:g}" for f, v in filled)
                     + " dB HL (dB over log frequency between the measured neighbours)")
    if extra:
        parts.append(", ".join(f"{f:g}" for f in extra) + " Hz: not a standard frequency, "
                     + ("used only for that" if filled else "not used"))
    note = "; ".join(parts)
    return [round(float(v), 1) if float(f) not in given else float(v)
            for f, v in zip(AUDIOGRAM_FREQS_HZ, std)], note


def _check_threshold(freq: float, v: Any) -> float:
    """One threshold, validated as :func:`_validate_thresholds` does (named by its frequency)."""
    (fv,) = _validate_thresholds_at((freq,), [v])
    return fv
