"""A deterministic synthetic speech-in-noise corpus (espeak-ng speech + generated noise).

Nothing is downloaded: training, calibration and test audio are synthesised. The train, calib
and test splits use disjoint sentences (a fixed partition of ``sentences.txt`` by line index) and
disjoint espeak-ng voices and variants, so the test split is audio that neither training nor int8
calibration has heard. Training code still looks at ``test`` (its validation and checkpoint
choice), so ``heldout`` is the split that only ``toolchain evaluate`` reads: other languages
(German, French, Spanish, Italian, Dutch: ``heldout_sentences.txt``, sentences in no other
split), read by espeak-ng voices and variants that no other split uses.

Determinism: an example depends only on ``(index, split, seed, config)`` (and the installed
espeak-ng, whose version is part of the speech-cache key). Its random generator is seeded from
``(seed, split, index)``, and every draw is made in a fixed order whether or not the speech
comes from the cache.

Speech cache: each synthesised utterance is stored as ``.npy`` under
``$HX_CACHE_DIR/corpus`` (default ``~/.cache/hx/corpus``), keyed by a SHA-256 of every
parameter that produced it; files are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from runtime.atomic import atomic_write
from runtime.config import cache_dir
from toolchain.audio.io import resample
from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration

SPLITS: tuple[str, ...] = ("train", "calib", "test", "heldout")
#: The evaluation-only split (``toolchain evaluate``); no training, calibration or validation reads it.
HELDOUT_SPLIT = "heldout"
NOISE_TYPES: tuple[str, ...] = ("white", "pink", "brown", "speech-shaped", "babble", "hum")

# Bump when synthesis, trimming or the cache file layout changes, so stale cache entries
# are never mistaken for current ones.
CORPUS_FORMAT_VERSION = 1

_SPLIT_IDS = {"train": 0, "calib": 1, "test": 2, "heldout": 3}
# Sentence partition: line index modulo 10 → test 0, calib 5, train the other eight.
_SENTENCE_MODULUS = 10
_SENTENCE_RESIDUES = {"test": (0,), "calib": (5,), "train": (1, 2, 3, 4, 6, 7, 8, 9)}

_ESPEAK = "espeak-ng"
_RATE_WPM_RANGE = (135, 185)  # inclusive, words per minute
_PITCH_RANGE = (30, 70)  # inclusive, espeak 0..99 scale
_PAUSE_S = (0.15, 0.4)  # silence between concatenated sentences
_BABBLE_TALKERS = (4, 6)  # inclusive


@dataclass(frozen=True)
class VoicePool:
    """espeak-ng voices (accents) and variants (speaker timbres) a split may use."""

    voices: tuple[str, ...]
    variants: tuple[str, ...]


# Disjoint across splits. Variant names are file names in espeak-ng-data/voices/!v and are
# case-sensitive (an unknown one silently falls back to the base voice; a test checks them).
SPLIT_VOICES: dict[str, VoicePool] = {
    "train": VoicePool(
        # "en" is British English; spelled "en-gb" espeak-ng ignores the +variant suffix.
        voices=("en-us", "en", "en-gb-x-rp", "en-029"),
        variants=("m1", "m2", "m4", "m5", "m7", "f1", "f3", "f4", "klatt", "klatt3",
                  "adam", "Andy", "Annie", "belinda", "david", "linda", "max", "paul",
                  "quincy", "rob"),
    ),
    "calib": VoicePool(
        voices=("en-gb-x-gbclan", "en-us-nyc"),
        variants=("m3", "f2", "klatt2", "edward", "steph", "Alex"),
    ),
    "test": VoicePool(
        voices=("en-gb-scotland", "en-gb-x-gbcwmd"),
        variants=("m6", "m8", "f5", "klatt4", "john", "Alicia", "benjamin"),
    ),
    # Languages none of the other splits speak; each voice reads its own language's sentences.
    "heldout": VoicePool(
        voices=("de", "fr", "es", "it", "nl"),
        variants=("Michael", "aunty", "Gene", "iven", "klatt5", "grandpa"),
    ),
}


class EspeakError(RuntimeError):
    """espeak-ng failed or produced no audio."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class EspeakNotFoundError(EspeakError):
    """The espeak-ng program is not installed / not on PATH."""


def _find_espeak() -> str:
    # Looked up on every call (not at import) so PATH changes are honoured.
    exe = shutil.which(_ESPEAK)
    if exe is None:
        raise EspeakNotFoundError(
            "espeak-ng was not found on PATH; it generates the synthetic speech corpus. "
            "Run the project's setup (`make test` or `make demo` installs it), "
            "or `apt-get install espeak-ng`"
        )
    return exe


def espeak_version() -> str:
    """The installed espeak-ng version line (part of the cache key)."""
    exe = _find_espeak()
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EspeakError(f"`espeak-ng --version` failed with exit code {proc.returncode}")
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/..." — the data path is not part of
    # the audio, so keep only the version.
    return proc.stdout.split("Data at:")[0].strip()


def _trim_silence(x: np.ndarray, sample_rate: int, *, rel_threshold: float = 1e-3,
                  margin_s: float = 0.01) -> np.ndarray:
    """Drop leading/trailing samples below ``rel_threshold`` × peak, keeping a small margin."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x[:0]
    active = np.flatnonzero(np.abs(x) > rel_threshold * peak)
    margin = int(round(margin_s * sample_rate))
    start = max(int(active[0]) - margin, 0)
    stop = min(int(active[-1]) + 1 + margin, x.size)
    return x[start:stop]


def synth_speech(
    text: str,
    *,
    voice: str = "en-us",
    variant: str = "m3",
    rate_wpm: int = 160,
    pitch: int = 50,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng; float32 mono at ``sample_rate``, silence trimmed.

    Raises EspeakNotFoundError (a RuntimeError) when espeak-ng is missing, EspeakError when it
    fails (e.g. an unknown voice) or produces only silence.
    """
    if not text or not text.strip():
        raise ValueError("text to synthesise is empty")
    exe = _find_espeak()
    spec = f"{voice}+{variant}" if variant else voice
    # "--" ends the options so a sentence starting with "-" is text. (Not --stdin: with it
    # espeak-ng silently falls back to a default voice when the voice is unknown.)
    cmd = [exe, "-v", spec, "-s", str(int(rate_wpm)), "-p", str(int(pitch)), "--stdout", "--", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip() or f"exit code {proc.returncode}"
        raise EspeakError(f"espeak-ng -v {spec} failed: {err}")
    try:
        x, sr_native = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise EspeakError(f"espeak-ng -v {spec} produced unreadable audio ({exc})") from None
    if x.ndim != 1:
        x = x.mean(axis=1).astype(np.float32)
    x = _trim_silence(x, int(sr_native))
    if x.size == 0:
        raise EspeakError(f"espeak-ng -v {spec} produced only silence for {text!r}")
    return np.ascontiguousarray(resample(x, sr_native, sample_rate), dtype=np.float32)


# ---------------------------------------------------------------------------- sentences
@lru_cache(maxsize=1)
def load_sentences() -> tuple[str, ...]:
    """All corpus sentences, in file order (the order defines the split partition)."""
    text = resources.files("toolchain.audio").joinpath("sentences.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=1)
def heldout_sentences() -> dict[str, tuple[str, ...]]:
    """The held-out split's sentences by espeak-ng language: ``{"de": (...), "fr": (...), ...}``."""
    text = resources.files("toolchain.audio").joinpath("heldout_sentences.txt").read_text(encoding="utf-8")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip():
            lang, sentence = line.split("\t", 1)
            out.setdefault(lang.strip(), []).append(sentence.strip())
    return {k: tuple(v) for k, v in out.items()}


def _heldout_language(text: str) -> str:
    for lang, sentences in heldout_sentences().items():
        if text in sentences:
            return lang
    raise ValueError(f"{text!r} is not a held-out sentence")


def language_consistent(split: str, speak: SpeakFn) -> SpeakFn:
    """``speak`` for ``split``; for the held-out split each sentence is read in its own language
    (babble draws a sentence and a voice independently, which would have German read by French)."""
    if split != HELDOUT_SPLIT:
        return speak

    def in_language(text: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
        return speak(text, _heldout_language(text), variant, rate, pitch)

    return in_language


def _check_split(split: str) -> None:
    if split not in _SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def split_sentences(split: str, sentences: Sequence[str] | None = None) -> tuple[str, ...]:
    """The sentences of ``split``: a fixed partition of the sentence list by index mod 10; for the
    held-out split every held-out sentence (``sentences`` is then ignored)."""
    _check_split(split)
    if split == HELDOUT_SPLIT:
        return tuple(s for group in heldout_sentences().values() for s in group)
    pool = load_sentences() if sentences is None else tuple(sentences)
    residues = _SENTENCE_RESIDUES[split]
    return tuple(s for i, s in enumerate(pool) if i % _SENTENCE_MODULUS in residues)


# ---------------------------------------------------------------------------- noise
def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms == 0.0:
        raise ValueError("generated noise is silent")
    return (x / rms).astype(np.float32)


def _spectrally_shaped(n: int, rng: np.random.Generator, sample_rate: float,
                       amplitude: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White Gaussian noise shaped in the frequency domain by ``amplitude(freqs_hz)``."""
    if n <= 0:
        raise ValueError(f"noise length must be positive, got {n}")
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, d=1.0 / sample_rate)
    gain = amplitude(freqs)
    gain[0] = 0.0  # no DC offset in any noise
    return _unit_rms(np.fft.irfft(spec * gain, n=n))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise, float32, unit RMS."""
    if n <= 0:
        raise ValueError(f"noise length must be positive, got {n}")
    return _unit_rms(rng.standard_normal(n))


def pink_noise(n: int, rng: np.random.Generator, sample_rate: float = 16000) -> np.ndarray:
    """1/f (pink) noise, float32, unit RMS; flat below 20 Hz so short clips do not drift."""
    return _spectrally_shaped(n, rng, sample_rate, lambda f: 1.0 / np.sqrt(np.maximum(f, 20.0)))


def brown_noise(n: int, rng: np.random.Generator, sample_rate: float = 16000) -> np.ndarray:
    """1/f² (brown) noise, float32, unit RMS; flat below 20 Hz so short clips do not drift."""
    return _spectrally_shaped(n, rng, sample_rate, lambda f: 1.0 / np.maximum(f, 20.0))


# Long-term average speech spectrum, 1/3-octave band levels in dB (approximately Byrne et al.
# 1994, male+female average), with steep roll-offs added at both ends.
_LTASS_FREQS_HZ = np.array([20, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000,
                            1250, 1600, 2000, 2500, 3150, 4000, 5000, 6300, 8000, 10000, 20000],
                           dtype=np.float64)
_LTASS_BAND_DB = np.array([10.0, 38.6, 43.5, 54.4, 57.7, 56.8, 58.2, 59.8, 60.1, 59.2, 58.5, 56.7,
                           53.7, 51.6, 51.0, 49.3, 47.0, 46.2, 45.6, 44.3, 43.1, 41.8, 40.5, 38.0,
                           20.0], dtype=np.float64)


def speech_shaped_noise(n: int, rng: np.random.Generator, sample_rate: float = 16000) -> np.ndarray:
    """Gaussian noise with the long-term average speech spectrum, float32, unit RMS."""

    def amplitude(f: np.ndarray) -> np.ndarray:
        fl = np.log2(np.maximum(f, 1.0))
        band_db = np.interp(fl, np.log2(_LTASS_FREQS_HZ), _LTASS_BAND_DB)
        # 1/3-octave bands widen ∝ f, so the density per Hz is band level − 10·log10(f).
        density_db = band_db - 10.0 * np.log10(np.maximum(f, 1.0))
        return 10.0 ** (density_db / 20.0)

    return _spectrally_shaped(n, rng, sample_rate, amplitude)


def hum_noise(n: int, rng: np.random.Generator, sample_rate: float = 16000) -> np.ndarray:
    """Mains hum: 50 or 60 Hz plus harmonics with random levels/phases, a faint hiss floor."""
    if n <= 0:
        raise ValueError(f"noise length must be positive, got {n}")
    f0 = float(rng.choice([50.0, 60.0])) * (1.0 + rng.uniform(-0.005, 0.005))
    t = np.arange(n, dtype=np.float64) / sample_rate
    decay = rng.uniform(0.5, 1.5)
    odd_boost = rng.uniform(1.0, 3.0)  # rectifier buzz favours odd harmonics
    x = np.zeros(n, dtype=np.float64)
    n_harm = int(min(20, (sample_rate / 2 - 1) // f0))
    for k in range(1, n_harm + 1):
        amp = k ** (-decay) * (odd_boost if k % 2 else 1.0) * rng.lognormal(0.0, 0.3)
        x += amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    x = x / np.sqrt(np.mean(x**2))
    x += 0.01 * rng.standard_normal(n)  # −40 dB hiss so the spectrum is never purely discrete
    return _unit_rms(x)


SpeakFn = Callable[[str, str, str, int, int], np.ndarray]


def _default_speak(sample_rate: int) -> SpeakFn:
    def speak(text: str, voice: str, variant: str, rate_wpm: int, pitch: int) -> np.ndarray:
        return synth_speech(text, voice=voice, variant=variant, rate_wpm=rate_wpm, pitch=pitch,
                            sample_rate=sample_rate)
    return speak


def babble_noise(
    n: int,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    *,
    sentences: Sequence[str],
    pool: VoicePool,
    speak: SpeakFn | None = None,
) -> np.ndarray:
    """Babble: 4–6 espeak talkers (different sentences/voices) at equal level, unit RMS."""
    if n <= 0:
        raise ValueError(f"noise length must be positive, got {n}")
    speak = speak or _default_speak(sample_rate)
    talkers = int(rng.integers(_BABBLE_TALKERS[0], _BABBLE_TALKERS[1] + 1))
    out = np.zeros(n, dtype=np.float64)
    for _ in range(talkers):
        text = sentences[int(rng.integers(len(sentences)))]
        voice = pool.voices[int(rng.integers(len(pool.voices)))]
        variant = pool.variants[int(rng.integers(len(pool.variants)))]
        rate = int(rng.integers(_RATE_WPM_RANGE[0], _RATE_WPM_RANGE[1] + 1))
        pitch = int(rng.integers(_PITCH_RANGE[0], _PITCH_RANGE[1] + 1))
        shift = float(rng.random())
        s = speak(text, voice, variant, rate, pitch).astype(np.float64)
        # Loop the utterance to cover the clip and start each talker at a random point, so
        # the talkers' pauses do not line up.
        tiled = np.tile(s, int(math.ceil(n / s.size)) + 1)
        start = int(shift * s.size)
        seg = tiled[start:start + n]
        out += seg / np.sqrt(np.mean(seg**2) + 1e-20)
    return _unit_rms(out)


def make_noise(
    kind: str,
    n: int,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    *,
    sentences: Sequence[str] = (),
    pool: VoicePool | None = None,
    speak: SpeakFn | None = None,
) -> np.ndarray:
    """Noise of ``kind`` (one of NOISE_TYPES), float32, unit RMS; babble needs sentences+pool."""
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng, sample_rate)
    if kind == "brown":
        return brown_noise(n, rng, sample_rate)
    if kind == "speech-shaped":
        return speech_shaped_noise(n, rng, sample_rate)
    if kind == "hum":
        return hum_noise(n, rng, sample_rate)
    if kind == "babble":
        if not sentences or pool is None:
            raise ValueError("babble noise needs sentences and a voice pool")
        return babble_noise(n, rng, sample_rate, sentences=sentences, pool=pool, speak=speak)
    raise ValueError(f"unknown noise type {kind!r}; expected one of {', '.join(NOISE_TYPES)}")


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Return ``speech + g·noise`` (float32) with g chosen so the mixture has SNR ``snr_db``.

    SNR is the ratio of mean-square speech to mean-square scaled noise over the whole clip.
    """
    s = np.asarray(speech, dtype=np.float64)
    v = np.asarray(noise, dtype=np.float64)
    if s.shape != v.shape:
        raise ValueError(f"speech shape {s.shape} and noise shape {v.shape} differ")
    if not math.isfinite(float(snr_db)):
        raise ValueError(f"snr_db must be finite, got {snr_db!r}")
    ps, pn = float(np.mean(s**2)), float(np.mean(v**2))
    if ps == 0.0 or pn == 0.0:
        raise ValueError("cannot mix at an SNR when speech or noise is silent")
    gain = math.sqrt(ps / (pn * 10.0 ** (float(snr_db) / 10.0)))
    return (s + gain * v).astype(np.float32)


# ---------------------------------------------------------------------------- config / examples
@dataclass(frozen=True)
class CorpusConfig:
    """What the synthetic corpus generates. Levels use ``calibration`` (the project default)."""

    sample_rate: int = 16000
    seconds: float = 2.0  # length of each clip
    speech_level_db_spl: tuple[float, float] = (55.0, 75.0)
    snr_db: tuple[float, float] = (0.0, 30.0)
    noise_types: tuple[str, ...] = NOISE_TYPES
    noise_probability: float = 0.7
    calibration: LevelCalibration = field(default=DEFAULT_CALIBRATION)

    def __post_init__(self) -> None:
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) \
                or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {self.sample_rate!r}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds must be positive, got {self.seconds!r}")
        if self.num_samples < 1:
            raise ValueError(f"seconds={self.seconds} gives no samples at {self.sample_rate} Hz")
        for name in ("speech_level_db_spl", "snr_db"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name} must be a finite (low, high) range, got {(lo, hi)!r}")
            object.__setattr__(self, name, (float(lo), float(hi)))
        object.__setattr__(self, "noise_types", tuple(self.noise_types))
        unknown = [t for t in self.noise_types if t not in NOISE_TYPES]
        if unknown:
            raise ValueError(f"unknown noise types {unknown}; expected some of {list(NOISE_TYPES)}")
        if not 0.0 <= self.noise_probability <= 1.0:
            raise ValueError(f"noise_probability must be in [0, 1], got {self.noise_probability!r}")
        if self.noise_probability > 0 and not self.noise_types:
            raise ValueError("noise_probability > 0 needs at least one noise type")

    @property
    def num_samples(self) -> int:
        """Samples per clip: round(seconds × sample_rate)."""
        return int(round(self.seconds * self.sample_rate))


@dataclass(frozen=True, eq=False)
class Example:
    """One clip: ``clean`` speech and ``noisy`` = clean + noise (float32, equal length)."""

    clean: np.ndarray
    noisy: np.ndarray
    meta: dict[str, Any]


class SpeechCache:
    """On-disk cache of synthesised utterances, one ``.npy`` per parameter set."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else self.default_directory()
        self._espeak_version: str | None = None

    @staticmethod
    def default_directory() -> Path:
        """``$HX_CACHE_DIR/corpus``, or ``~/.cache/hx/corpus`` when HX_CACHE_DIR is unset."""
        return cache_dir("corpus")

    def key(self, text: str, voice: str, variant: str, rate_wpm: int, pitch: int,
            sample_rate: int) -> str:
        """SHA-256 over every parameter that determines the utterance's samples."""
        if self._espeak_version is None:
            self._espeak_version = espeak_version()
        params = {"text": text, "voice": voice, "variant": variant, "rate_wpm": int(rate_wpm),
                  "pitch": int(pitch), "sample_rate": int(sample_rate),
                  "espeak": self._espeak_version, "format": CORPUS_FORMAT_VERSION}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()

    def path_for(self, key: str) -> Path:
        """Cache file for ``key`` (two-character fan-out keeps directories small)."""
        return self.directory / key[:2] / f"{key}.npy"

    def speech(self, text: str, voice: str, variant: str, rate_wpm: int, pitch: int,
               sample_rate: int) -> np.ndarray:
        """The utterance from the cache, synthesising and storing it on a miss."""
        path = self.path_for(self.key(text, voice, variant, rate_wpm, pitch, sample_rate))
        try:
            x = np.load(path, allow_pickle=False)
            if x.dtype == np.float32 and x.ndim == 1 and x.size > 0:
                return x
        except (OSError, ValueError, EOFError):
            pass  # missing or damaged entry: regenerate it below
        x = synth_speech(text, voice=voice, variant=variant, rate_wpm=rate_wpm, pitch=pitch,
                         sample_rate=sample_rate)
        self._store(path, x)
        return x

    def _store(self, path: Path, x: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as fh:
            np.save(fh, x, allow_pickle=False)


def _rng_for(index: int, split: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index)])


def make_example(
    index: int,
    split: str = "train",
    config: CorpusConfig = CorpusConfig(),
    seed: int = 0,
    *,
    cache: SpeechCache | None = None,
) -> Example:
    """Generate example ``index`` of ``split`` deterministically.

    One talker (voice, variant, rate, pitch) reads split sentences, concatenated with short
    pauses until the clip is filled, cropped at a random offset and set to a level drawn from
    ``config.speech_level_db_spl``. With probability ``config.noise_probability`` a noise of a
    random type is added at an SNR drawn from ``config.snr_db``; otherwise noisy == clean.
    """
    _check_split(split)
    if isinstance(index, bool) or int(index) != index or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    sr, n = config.sample_rate, config.num_samples
    rng = _rng_for(index, split, seed)
    sentences = split_sentences(split)
    pool = SPLIT_VOICES[split]
    if cache is not None:
        def speak(text: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
            return cache.speech(text, voice, variant, rate, pitch, sr)
    else:
        speak = _default_speak(sr)

    voice = pool.voices[int(rng.integers(len(pool.voices)))]
    variant = pool.variants[int(rng.integers(len(pool.variants)))]
    rate = int(rng.integers(_RATE_WPM_RANGE[0], _RATE_WPM_RANGE[1] + 1))
    pitch = int(rng.integers(_PITCH_RANGE[0], _PITCH_RANGE[1] + 1))
    if split == HELDOUT_SPLIT:  # the talker reads its own language (no draw: other splits' streams unchanged)
        sentences = heldout_sentences()[voice]

    pieces: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    while total < n:
        if pieces:
            pause = np.zeros(int(rng.uniform(*_PAUSE_S) * sr), dtype=np.float32)
            pieces.append(pause)
            total += pause.size
        text = sentences[int(rng.integers(len(sentences)))]
        s = speak(text, voice, variant, rate, pitch)
        pieces.append(s)
        texts.append(text)
        total += s.size
    track = np.concatenate(pieces)
    offset = int(rng.integers(0, track.size - n + 1))
    clip = track[offset:offset + n]
    if not np.any(clip):
        # Only possible when a clip is shorter than a pause; the first sentence is never silent.
        offset, clip = 0, track[:n]
    level = float(rng.uniform(*config.speech_level_db_spl))
    clean = config.calibration.set_level(clip, level)

    noise_type = "none"
    snr: float | None = None
    if config.noise_types and rng.random() < config.noise_probability:
        noise_type = config.noise_types[int(rng.integers(len(config.noise_types)))]
        snr = float(rng.uniform(*config.snr_db))
        noise = make_noise(noise_type, n, rng, sr, sentences=split_sentences(split), pool=pool,
                           speak=language_consistent(split, speak))
        noisy = mix_at_snr(clean, noise, snr)
    else:
        noisy = clean.copy()

    meta: dict[str, Any] = {
        "index": int(index), "split": split, "seed": int(seed),
        "text": " ".join(texts), "sentences": texts, "voice": voice, "variant": variant,
        "rate_wpm": rate, "pitch": pitch, "offset": offset,
        "level_db_spl": level, "noise_type": noise_type, "snr_db": snr,
    }
    return Example(clean=clean, noisy=noisy, meta=meta)


class SyntheticCorpus:
    """``size`` examples of one split, with the synthesised speech cached on disk.

    ``cache_dir`` overrides the cache location (default ``SpeechCache.default_directory()``);
    ``use_cache=False`` synthesises every time. ``workers`` > 1 generates a batch with that
    many threads (each runs its own espeak-ng processes); keep it small on small machines.
    """

    def __init__(
        self,
        split: str = "train",
        config: CorpusConfig = CorpusConfig(),
        seed: int = 0,
        *,
        size: int = 1000,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        workers: int = 1,
    ) -> None:
        _check_split(split)
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.split = split
        self.config = config
        self.seed = int(seed)
        self.size = int(size)
        self.workers = int(workers)
        self.cache: SpeechCache | None = SpeechCache(cache_dir) if use_cache else None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a corpus of {self.size} examples")
        return make_example(index, self.split, self.config, self.seed, cache=self.cache)

    def __iter__(self) -> Iterator[Example]:
        for i in range(self.size):
            yield self[i]

    def batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(noisy, clean)`` float32 arrays of shape ``(len(indices), num_samples)``."""
        idx = [int(i) for i in indices]
        if self.workers > 1 and len(idx) > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                examples = list(pool.map(self.__getitem__, idx))
        else:
            examples = [self[i] for i in idx]
        n = self.config.num_samples
        noisy = np.empty((len(idx), n), dtype=np.float32)
        clean = np.empty((len(idx), n), dtype=np.float32)
        for row, ex in enumerate(examples):
            noisy[row] = ex.noisy
            clean[row] = ex.clean
        return noisy, clean
