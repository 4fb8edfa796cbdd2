"""MSBG training pairs: shapes, determinism, the cache and its key, resuming an interrupted run."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.train.msbg_data import PairsConfig, draw_audiograms, msbg_pairs

TINY = PairsConfig(split="test", examples=3, clip_seconds=0.3, workers=1, noise_probability=0.0)


def test_pairs_shapes_cache_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HX_CACHE_DIR", str(tmp_path))
    d = msbg_pairs(TINY)
    assert d["x"].shape == d["msbg"].shape == d["clean"].shape == (3, 4800)
    assert d["audiogram"].shape == (3, 8) and np.all(np.isfinite(d["msbg"]))
    files = list((tmp_path / "msbg-pairs").glob("*.npz"))
    assert len(files) == 1 and not list((tmp_path / "msbg-pairs").glob("*.parts"))
    again = msbg_pairs(TINY)
    assert all(np.array_equal(d[k], again[k]) for k in d)
    assert PairsConfig(split="test", examples=3, clip_seconds=0.3, workers=2, noise_probability=0.0).key() == TINY.key()
    assert PairsConfig(split="test", examples=4, clip_seconds=0.3, noise_probability=0.0).key() != TINY.key()


def test_interrupted_generation_resumes_from_its_parts(tmp_path, monkeypatch):
    monkeypatch.setenv("HX_CACHE_DIR", str(tmp_path))
    cfg = PairsConfig(split="test", examples=10, clip_seconds=0.2, workers=1, noise_probability=0.0)
    calls = []

    def stop_after_first_chunk(done: int, total: int) -> None:
        calls.append(done)
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        msbg_pairs(cfg, progress=stop_after_first_chunk)
    seen = []
    d = msbg_pairs(cfg, progress=lambda done, total: seen.append(done))
    assert seen == [10]  # only the second chunk was simulated again
    fresh = msbg_pairs(cfg, use_cache=False)
    assert np.array_equal(d["msbg"], fresh["msbg"])


def test_audiograms_are_seeded_and_valid():
    a = draw_audiograms(50, 3, 0.3)
    assert np.array_equal(a, draw_audiograms(50, 3, 0.3))
    assert a.shape == (50, 8) and a.min() >= -10 and a.max() <= 120


def test_bad_config():
    with pytest.raises(ValueError, match="examples"):
        PairsConfig(examples=0)
    with pytest.raises(ValueError, match="noise"):
        PairsConfig(noise_types=("rain",))
