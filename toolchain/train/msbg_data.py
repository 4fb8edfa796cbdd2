"""Training/held-out pairs for the neural simulator: (clip, audiogram) → pyclarity MSBG output.

Each pair is a synthetic-corpus clip (:mod:`toolchain.audio.data`, noisy speech at a random
level) with an audiogram drawn as the compensator recipes draw them, and the reference MSBG
output for it (:class:`toolchain.audio.msbg_ref.MSBGReference`, delay-aligned as seed 003 does).
MSBG costs ~0.3 s of CPU per second of audio, so a set is generated once, in worker processes,
and cached as one ``.npz`` under ``$HX_CACHE_DIR/msbg-pairs/`` keyed by everything it depends on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np

from runtime.atomic import atomic_write
from runtime.config import cache_dir
from toolchain.audio.audiogram import PRESETS, Audiogram
from toolchain.audio.data import NOISE_TYPES, CorpusConfig, SyntheticCorpus
from toolchain.audio.msbg_ref import MSBGReference

PAIRS_FORMAT = 1  # bump when the generation changes (invalidates caches)


@dataclass(frozen=True)
class PairsConfig:
    """One set of pairs (a recipe's ``[data]`` / ``[eval]`` section)."""

    split: str = "train"
    examples: int = 400
    clip_seconds: float = 2.0
    corpus_seed: int = 0
    audiogram_seed: int = 0
    speech_level_db_spl: tuple[float, float] = (50.0, 85.0)
    snr_db: tuple[float, float] = (0.0, 30.0)
    noise_probability: float = 0.5
    noise_types: tuple[str, ...] = NOISE_TYPES
    preset_probability: float = 0.3
    sample_rate: int = 16000
    workers: int = 2

    def __post_init__(self) -> None:
        if self.examples < 1:
            raise ValueError(f"examples must be >= 1, got {self.examples}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0.0 <= self.preset_probability <= 1.0:
            raise ValueError(f"preset_probability must be in [0, 1], got {self.preset_probability}")
        object.__setattr__(self, "speech_level_db_spl", tuple(float(v) for v in self.speech_level_db_spl))
        object.__setattr__(self, "snr_db", tuple(float(v) for v in self.snr_db))
        object.__setattr__(self, "noise_types", tuple(self.noise_types))
        self.corpus_config()  # validates levels, SNR and noise types

    def corpus_config(self) -> CorpusConfig:
        return CorpusConfig(sample_rate=self.sample_rate, seconds=self.clip_seconds,
                            speech_level_db_spl=self.speech_level_db_spl, snr_db=self.snr_db,
                            noise_types=self.noise_types, noise_probability=self.noise_probability)

    def key(self) -> str:
        # Only the fields of PairsConfig itself (subclasses add evaluation options), and not
        # ``workers``: how many processes made the data does not change it.
        d = {f.name: getattr(self, f.name) for f in fields(PairsConfig) if f.name != "workers"}
        d["format"] = PAIRS_FORMAT
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def draw_audiograms(n: int, seed: int, preset_probability: float) -> np.ndarray:
    """``(n, 8)`` dB HL: a named preset with ``preset_probability``, else ``Audiogram.random``."""
    rng = np.random.default_rng([seed, 8])
    names = sorted(PRESETS)
    out = np.empty((n, 8), np.float32)
    for i in range(n):
        if rng.random() < preset_probability:
            out[i] = PRESETS[names[int(rng.integers(len(names)))]]
        else:
            out[i] = Audiogram.random(rng).as_array()
    return out


def _simulate_chunk(args: tuple[np.ndarray, np.ndarray, int]) -> np.ndarray:
    clips, audiograms, sample_rate = args
    ref = MSBGReference(sample_rate=sample_rate)
    return np.stack([ref.simulate(x, Audiogram(tuple(float(v) for v in a))) for x, a in zip(clips, audiograms)])


def msbg_pairs(cfg: PairsConfig, *, progress: Callable[[int, int], None] | None = None,
               use_cache: bool = True) -> dict[str, np.ndarray]:
    """``{"x": (N, n), "clean": (N, n), "audiogram": (N, 8), "msbg": (N, n)}`` float32 arrays."""
    path = cache_dir("msbg-pairs") / f"{cfg.split}-{cfg.key()}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if use_cache and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    corpus = SyntheticCorpus(cfg.split, cfg.corpus_config(), seed=cfg.corpus_seed, size=cfg.examples)
    x, clean = corpus.batch(range(cfg.examples))
    audiograms = draw_audiograms(cfg.examples, cfg.audiogram_seed, cfg.preset_probability)
    chunk = 8
    # Each chunk's MSBG output is kept as it finishes, so an interrupted generation (MSBG costs
    # minutes) resumes where it stopped.
    parts_dir = path.with_suffix(".parts")
    starts = list(range(0, cfg.examples, chunk))
    outs: dict[int, np.ndarray] = {}
    if use_cache:
        parts_dir.mkdir(parents=True, exist_ok=True)
        for i in starts:
            part = parts_dir / f"{i:06d}.npy"
            if part.exists():
                outs[i] = np.load(part)
    todo = [i for i in starts if i not in outs]
    jobs = [(x[i:i + chunk], audiograms[i:i + chunk], cfg.sample_rate) for i in todo]

    def keep(i: int, out: np.ndarray) -> None:
        outs[i] = out
        if use_cache:
            with atomic_write(parts_dir / f"{i:06d}.npy") as fh:
                np.save(fh, out)
        if progress is not None:
            progress(sum(len(o) for o in outs.values()), cfg.examples)

    if cfg.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            for i, out in zip(todo, pool.map(_simulate_chunk, jobs)):
                keep(i, out)
    else:
        for i, job in zip(todo, jobs):
            keep(i, _simulate_chunk(job))
    data = {"x": x, "clean": clean, "audiogram": audiograms,
            "msbg": np.concatenate([outs[i] for i in starts]).astype(np.float32)}
    if use_cache:
        with atomic_write(path) as fh:
            np.savez(fh, **data)
        shutil.rmtree(parts_dir, ignore_errors=True)
    return data


def describe(cfg: PairsConfig) -> dict[str, Any]:
    return asdict(cfg) | {"cache_key": cfg.key()}
