"""The per-process export cache: a reused Keras step graph computes what a fresh one does, the
cache keys tell topologies apart, and torch's thread count is restored."""

from __future__ import annotations

import numpy as np
import torch

from toolchain.audio.audiogram import Audiogram
from toolchain.export import process_cache, tflite
from toolchain.export.pipeline import DEFAULT_CHECKPOINT, load_model


def _graphs():
    model = process_cache.model(DEFAULT_CHECKPOINT, load_model)
    assert process_cache.model(DEFAULT_CHECKPOINT, load_model) is model
    return [model.fit(Audiogram.preset(p).as_array()).streaming() for p in ("moderate-sloping", "severe-sloping")]


def test_reused_step_graph_equals_a_fresh_build():
    process_cache.clear()
    g1, g2 = _graphs()
    saved1, step1 = process_cache.keras_step(g1, 16)
    saved2, step2 = process_cache.keras_step(g2, 16)
    assert saved2 is saved1 and step2 is step1, "same topology: one Keras model per process"
    fresh = tflite.build_keras_step(g2, 16)
    rng = np.random.default_rng(0)
    states = [np.zeros((1, 1, s.frames, s.channels), np.float32) for s in g2.slots]
    fresh_states = list(states)
    for _ in range(8):
        x = (0.2 * rng.standard_normal((1, 1, 16, 1))).astype(np.float32)
        y, states = step2(x, states)
        yf, fresh_states = tflite.run_keras_step(fresh, x, fresh_states)
        np.testing.assert_allclose(y, yf, rtol=0, atol=1e-5)
    for a, b in zip(saved2.model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Another block is another graph.
    assert process_cache.topology_key(g1, 16) == process_cache.topology_key(g2, 16)
    assert process_cache.topology_key(g1, 32) != process_cache.topology_key(g1, 16)
    process_cache.clear()


def test_corpus_copies_and_thread_pin():
    process_cache.clear()
    calls = []
    make = lambda: calls.append(1) or np.ones(4, np.float32)  # noqa: E731
    a = process_cache.corpus(("k",), make)
    a[0] = 5.0
    assert process_cache.corpus(("k",), make)[0] == 1.0 and len(calls) == 1
    before = torch.get_num_threads()
    with process_cache.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    process_cache.clear()
