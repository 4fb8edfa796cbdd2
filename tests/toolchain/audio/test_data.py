"""Tests for the synthetic speech-in-noise corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolchain.audio.data as data
from toolchain.audio.data import (
    HELDOUT_SPLIT,
    NOISE_TYPES,
    SPLIT_VOICES,
    SPLITS,
    CorpusConfig,
    EspeakNotFoundError,
    SpeechCache,
    SyntheticCorpus,
    heldout_sentences,
    language_consistent,
    load_sentences,
    make_example,
    make_noise,
    mix_at_snr,
    split_sentences,
    synth_speech,
)
from toolchain.audio.levels import DEFAULT_CALIBRATION

SHORT = CorpusConfig(seconds=0.5)


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    c = clean.astype(np.float64)
    return float(10 * np.log10(np.mean(c**2) / np.mean((noisy.astype(np.float64) - c) ** 2)))


@pytest.fixture()
def corpus_cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# ------------------------------------------------------------------ sentences and splits
def test_sentence_file() -> None:
    sentences = load_sentences()
    assert 120 <= len(sentences) <= 200
    assert len(set(sentences)) == len(sentences)
    assert all(0 < len(s) < 100 for s in sentences)


def test_splits_partition_sentences_disjointly() -> None:
    parts = {s: set(split_sentences(s)) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not parts[a] & parts[b], (a, b)
    assert parts["train"] | parts["calib"] | parts["test"] == set(load_sentences())
    assert not parts[HELDOUT_SPLIT] & set(load_sentences())  # a file of its own
    assert all(len(p) >= 10 for p in parts.values())
    with pytest.raises(ValueError, match="unknown split"):
        split_sentences("valid")


def test_split_voices_are_disjoint() -> None:
    combos = {s: {(v, w) for v in SPLIT_VOICES[s].voices for w in SPLIT_VOICES[s].variants}
              for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not set(SPLIT_VOICES[a].voices) & set(SPLIT_VOICES[b].voices)
                assert not set(SPLIT_VOICES[a].variants) & set(SPLIT_VOICES[b].variants)
                assert not combos[a] & combos[b]


def test_heldout_split_shares_no_voice_variant_or_sentence_with_any_other_split() -> None:
    held = SPLIT_VOICES[HELDOUT_SPLIT]
    others = [s for s in SPLITS if s != HELDOUT_SPLIT]
    assert set(held.voices) == set(heldout_sentences())  # every language has its sentences, and a voice
    for s in others:
        assert not set(held.voices) & set(SPLIT_VOICES[s].voices)
        assert not set(held.variants) & set(SPLIT_VOICES[s].variants)
        assert not set(split_sentences(HELDOUT_SPLIT)) & set(split_sentences(s))
    # Each held-out talker reads its own language, also as a babble talker.
    cfg = CorpusConfig(seconds=0.5, noise_probability=0.0)
    calls: list[tuple[str, str]] = []
    def speak(text: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
        calls.append((text, voice))
        return np.ones(4000, np.float32)
    fr = heldout_sentences()["fr"][0]
    language_consistent(HELDOUT_SPLIT, speak)(fr, "de", "Gene", 150, 50)
    assert calls[-1] == (fr, "fr")
    assert language_consistent("train", speak) is speak
    ex = make_example(0, HELDOUT_SPLIT, cfg)
    assert ex.meta["voice"] in held.voices and ex.meta["variant"] in held.variants
    assert all(t in heldout_sentences()[ex.meta["voice"]] for t in ex.meta["sentences"])


def test_every_voice_and_variant_exists_in_espeak() -> None:
    # espeak-ng silently falls back to the base voice for an unknown variant, so compare
    # each variant's audio with what a surely-unknown variant gives.
    text = "The cat sat on the mat."
    all_voices = [v for s in SPLITS for v in SPLIT_VOICES[s].voices]
    per_voice = {v: synth_speech(text, voice=v, variant="m2").tobytes() for v in all_voices}
    assert len(set(per_voice.values())) == len(all_voices)  # no voice is an alias of another
    for split in SPLITS:
        pool = SPLIT_VOICES[split]
        for voice in pool.voices:
            fallback = synth_speech(text, voice=voice, variant="no-such-variant-xyz")
            for variant in pool.variants:
                x = synth_speech(text, voice=voice, variant=variant)
                same = x.shape == fallback.shape and np.array_equal(x, fallback)
                assert not same, f"variant {variant!r} not found by espeak-ng ({voice})"


def test_examples_use_only_their_split(corpus_cache: Path) -> None:
    for split in SPLITS:
        allowed = set(split_sentences(split))
        pool = SPLIT_VOICES[split]
        corpus = SyntheticCorpus(split, SHORT, seed=3, size=8, cache_dir=corpus_cache)
        for ex in corpus:
            assert set(ex.meta["sentences"]) <= allowed
            assert ex.meta["voice"] in pool.voices and ex.meta["variant"] in pool.variants
            assert ex.meta["split"] == split


# ------------------------------------------------------------------ synthesis
def test_synth_speech_basic() -> None:
    x = synth_speech("Hello there, how are you today?")
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0.5 * 16000 < x.size < 4 * 16000
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) > 0.05
    # Trimmed: the first and last 10 ms are not a long stretch of digital silence.
    assert np.max(np.abs(x[:400])) > 0 and np.max(np.abs(x[-400:])) > 0
    y = synth_speech("Hello there, how are you today?", sample_rate=8000)
    assert abs(y.size - x.size / 2) <= 2
    # A sentence that starts with "-" is text, not a command-line option.
    assert synth_speech("-5 degrees outside").size > 0


def test_synth_speech_unknown_voice_is_clear_error() -> None:
    with pytest.raises(data.EspeakError, match="zzqqx"):
        synth_speech("hello", voice="zzqqx")


def test_missing_espeak_is_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(EspeakNotFoundError) as exc:
        synth_speech("hello")
    msg = str(exc.value)
    assert isinstance(exc.value, RuntimeError)
    assert "\n" not in msg and "espeak-ng" in msg and "setup" in msg
    corpus = SyntheticCorpus("test", SHORT, size=2, cache_dir=tmp_path / "c")
    with pytest.raises(EspeakNotFoundError):
        corpus.batch([0, 1])


# ------------------------------------------------------------------ examples
def test_example_shape_level_and_determinism(corpus_cache: Path) -> None:
    cfg = CorpusConfig(seconds=0.75, speech_level_db_spl=(50.0, 80.0))
    a = make_example(5, "train", cfg, seed=11)
    b = make_example(5, "train", cfg, seed=11, cache=SpeechCache(corpus_cache))
    c = make_example(5, "train", cfg, seed=12)
    d = make_example(6, "train", cfg, seed=11)
    for ex in (a, b, c, d):
        assert ex.clean.dtype == np.float32 and ex.noisy.dtype == np.float32
        assert ex.clean.shape == ex.noisy.shape == (12000,)
    np.testing.assert_array_equal(a.clean, b.clean)  # cache gives the same samples
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert a.meta == b.meta
    assert not np.array_equal(a.clean, c.clean)
    assert not np.array_equal(a.clean, d.clean)


def test_same_index_differs_between_splits(corpus_cache: Path) -> None:
    cache = SpeechCache(corpus_cache)
    exs = [make_example(0, s, SHORT, seed=0, cache=cache) for s in SPLITS]
    assert not np.array_equal(exs[0].clean, exs[1].clean)
    assert not np.array_equal(exs[1].clean, exs[2].clean)


def test_levels_and_snr_as_configured(corpus_cache: Path) -> None:
    cfg = CorpusConfig(seconds=0.5, speech_level_db_spl=(58.0, 72.0), snr_db=(-5.0, 20.0),
                       noise_probability=1.0)
    corpus = SyntheticCorpus("calib", cfg, seed=1, size=24, cache_dir=corpus_cache)
    seen = set()
    for ex in corpus:
        m = ex.meta
        level = DEFAULT_CALIBRATION.level_db_spl(ex.clean)
        assert 58.0 <= level <= 72.0
        assert level == pytest.approx(m["level_db_spl"], abs=1e-3)
        assert m["noise_type"] in NOISE_TYPES
        assert -5.0 <= m["snr_db"] <= 20.0
        assert _snr_db(ex.clean, ex.noisy) == pytest.approx(m["snr_db"], abs=0.01)
        assert np.all(np.isfinite(ex.noisy)) and np.max(np.abs(ex.noisy)) < 1.0
        seen.add(m["noise_type"])
    assert len(seen) >= 4  # the noise type really varies


def test_noise_probability_zero_and_restricted_types(corpus_cache: Path) -> None:
    clean_only = CorpusConfig(seconds=0.5, noise_probability=0.0)
    for i in range(4):
        ex = make_example(i, "test", clean_only, seed=2, cache=SpeechCache(corpus_cache))
        np.testing.assert_array_equal(ex.clean, ex.noisy)
        assert ex.meta["noise_type"] == "none" and ex.meta["snr_db"] is None
    hum_only = CorpusConfig(seconds=0.5, noise_types=("hum",), noise_probability=1.0,
                            snr_db=(10.0, 10.0))
    ex = make_example(0, "test", hum_only, seed=2, cache=SpeechCache(corpus_cache))
    assert ex.meta["noise_type"] == "hum"
    assert _snr_db(ex.clean, ex.noisy) == pytest.approx(10.0, abs=0.01)


def test_noise_probability_is_respected_on_average(corpus_cache: Path) -> None:
    cfg = CorpusConfig(seconds=0.25, noise_probability=0.5,
                       noise_types=("white", "pink", "brown", "hum"))
    corpus = SyntheticCorpus("train", cfg, seed=4, size=40, cache_dir=corpus_cache)
    noisy = sum(ex.meta["noise_type"] != "none" for ex in corpus)
    assert 10 <= noisy <= 30


@pytest.mark.parametrize(
    "kwargs",
    [dict(sample_rate=0), dict(seconds=-1.0), dict(speech_level_db_spl=(80.0, 60.0)),
     dict(snr_db=(0.0, float("nan"))), dict(noise_types=("white", "jet-engine")),
     dict(noise_probability=1.5), dict(noise_types=())],
)
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CorpusConfig(**kwargs)


def test_bad_index_split_seed() -> None:
    with pytest.raises(ValueError, match="split"):
        make_example(0, "dev", SHORT)
    with pytest.raises(ValueError, match="index"):
        make_example(-1, "train", SHORT)
    with pytest.raises(ValueError, match="seed"):
        make_example(0, "train", SHORT, seed=-3)


# ------------------------------------------------------------------ corpus and cache
def test_corpus_batch_cache_and_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HX_CACHE_DIR", str(tmp_path / "hx"))
    corpus = SyntheticCorpus("test", SHORT, seed=9, size=6)
    assert corpus.cache is not None and corpus.cache.directory == tmp_path / "hx" / "corpus"
    noisy, clean = corpus.batch([0, 3, 5])
    assert noisy.shape == clean.shape == (3, 8000) and noisy.dtype == np.float32
    files = list((tmp_path / "hx" / "corpus").rglob("*"))
    npys = [f for f in files if f.suffix == ".npy"]
    assert npys and not [f for f in files if f.name.endswith(".tmp")]

    # A warm cache never runs the synthesiser again, and gives identical arrays.
    def no_synth(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("synth_speech called on a warm cache")

    monkeypatch.setattr(data, "synth_speech", no_synth)
    again = SyntheticCorpus("test", SHORT, seed=9, size=6, workers=2)
    noisy2, clean2 = again.batch([0, 3, 5])
    np.testing.assert_array_equal(noisy, noisy2)
    np.testing.assert_array_equal(clean, clean2)
    with pytest.raises(IndexError):
        again[6]


def test_damaged_cache_entry_is_regenerated(corpus_cache: Path) -> None:
    cache = SpeechCache(corpus_cache)
    x = cache.speech("The dog barked.", "en-us", "m1", 160, 50, 16000)
    path = cache.path_for(cache.key("The dog barked.", "en-us", "m1", 160, 50, 16000))
    path.write_bytes(b"garbage")
    y = cache.speech("The dog barked.", "en-us", "m1", 160, 50, 16000)
    np.testing.assert_array_equal(x, y)
    assert np.load(path).shape == x.shape
    # Different parameters → different keys.
    assert cache.key("a", "en-us", "m1", 160, 50, 16000) != cache.key("a", "en-us", "m1", 161, 50, 16000)


def test_parallel_batch_equals_serial(corpus_cache: Path) -> None:
    serial = SyntheticCorpus("train", SHORT, seed=5, size=6, use_cache=False)
    parallel = SyntheticCorpus("train", SHORT, seed=5, size=6, cache_dir=corpus_cache, workers=2)
    a = serial.batch(range(6))
    b = parallel.batch(range(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# ------------------------------------------------------------------ noise
def _band_power_db(x: np.ndarray, sr: float, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1.0 / sr)
    return float(10 * np.log10(np.mean(spec[(f >= lo) & (f < hi)])))


@pytest.mark.parametrize(("kind", "slope_db_per_oct"), [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_coloured_noise_slopes(kind: str, slope_db_per_oct: float) -> None:
    x = make_noise(kind, 64000, np.random.default_rng(0), 16000)
    assert x.dtype == np.float32 and np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    # Average power density per octave, 250 Hz → 4 kHz (4 octaves).
    measured = (_band_power_db(x, 16000, 3500, 4500) - _band_power_db(x, 16000, 220, 280)) / 4.0
    assert measured == pytest.approx(slope_db_per_oct, abs=1.0)


def test_speech_shaped_and_hum_spectra() -> None:
    rng = np.random.default_rng(1)
    ssn = make_noise("speech-shaped", 64000, rng, 16000)
    # LTASS: most energy at 200–600 Hz, far less at 4 kHz, little below 60 Hz.
    low = _band_power_db(ssn, 16000, 300, 600)
    assert low - _band_power_db(ssn, 16000, 3500, 4500) > 15
    assert low - _band_power_db(ssn, 16000, 20, 50) > 15
    hum = make_noise("hum", 32000, rng, 16000)
    spec = np.abs(np.fft.rfft(hum))
    f = np.fft.rfftfreq(hum.size, 1 / 16000)
    top = f[np.argsort(spec)[-3:]]
    assert all(min(abs(t / 50 - round(t / 50)), abs(t / 60 - round(t / 60))) * 50 < 2 for t in top)
    assert _band_power_db(hum, 16000, 40, 400) - _band_power_db(hum, 16000, 4000, 8000) > 20


def test_babble_is_speech_like_and_deterministic(corpus_cache: Path) -> None:
    cache = SpeechCache(corpus_cache)

    def speak(text: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
        return cache.speech(text, voice, variant, rate, pitch, 16000)

    kw = dict(sentences=split_sentences("test"), pool=SPLIT_VOICES["test"], speak=speak)
    a = make_noise("babble", 16000, np.random.default_rng(7), 16000, **kw)
    b = make_noise("babble", 16000, np.random.default_rng(7), 16000, **kw)
    c = make_noise("babble", 16000, np.random.default_rng(8), 16000, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="babble"):
        make_noise("babble", 100, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown noise"):
        make_noise("rain", 100, np.random.default_rng(0))


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=-20.0, max_value=40.0), st.integers(min_value=0, max_value=2**31))
def test_mix_at_snr_is_exact(snr: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    speech = rng.standard_normal(2048).astype(np.float32) * 0.05
    noise = rng.standard_normal(2048).astype(np.float32) * 3.0
    noisy = mix_at_snr(speech, noise, snr)
    assert noisy.dtype == np.float32
    assert _snr_db(speech, noisy) == pytest.approx(snr, abs=0.01)


def test_mix_at_snr_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        mix_at_snr(np.ones(4), np.ones(5), 0.0)
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(np.ones(4), np.zeros(4), 0.0)
