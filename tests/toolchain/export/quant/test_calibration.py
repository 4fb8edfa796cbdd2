"""The calibration set: seeded random blocks of the calibration clips with the streaming state held there."""

from __future__ import annotations

import numpy as np
import torch

from tests.helpers import MODERATE, randomised_seanet, speech_clip
from toolchain.export.quant.calibration import calibration_reps, with_headroom

BLOCK = 16


def _graph():
    return randomised_seanet(3).fit(MODERATE).streaming()


def test_reps_are_seeded_blocks_with_the_state_streaming_holds_there():
    graph = _graph()
    calib = np.stack([speech_clip("calib", i, seconds=0.25) for i in range(2)])
    reps = calibration_reps(graph, calib, BLOCK, n_blocks=10, seed=7)
    assert len(reps) == 10                                   # 5 blocks from each of the 2 clips
    assert all(len(r) == 1 + len(graph.slots) for r in reps)
    assert reps[0][0].shape == (1, 1, BLOCK, 1) and reps[0][0].dtype == np.float32
    again = calibration_reps(graph, calib, BLOCK, n_blocks=10, seed=7)
    assert all(np.array_equal(a, b) for r, s in zip(reps, again) for a, b in zip(r, s))
    other = calibration_reps(graph, calib, BLOCK, n_blocks=10, seed=8)
    assert not all(np.array_equal(r[0], s[0]) for r, s in zip(reps, other))
    # The first rep of clip 0 is some block of it; streaming up to that block gives the same state.
    x = torch.from_numpy(calib[0])
    k = next(i for i in range(len(calib[0]) // BLOCK) if np.array_equal(x[i * BLOCK:(i + 1) * BLOCK].numpy(), reps[0][0].ravel()))
    state = graph.init_state()
    with torch.no_grad():
        for i in range(k):
            _, state = graph.step(x[i * BLOCK:(i + 1) * BLOCK].reshape(1, 1, BLOCK), state)
    for got, want in zip(reps[0][1:], state):
        assert np.allclose(got, want.permute(0, 2, 1).unsqueeze(1).numpy(), atol=1e-5)


def test_headroom_appends_every_sample_louder():
    reps = [[np.full((1, 1, 4, 1), 0.5, np.float32), np.full((1, 1, 3, 2), -0.25, np.float32)]]
    out = with_headroom(reps, 20.0)
    assert len(out) == 2 and out[0] is reps[0]
    assert np.allclose(out[1][0], 5.0) and np.allclose(out[1][1], -2.5) and out[1][0].dtype == np.float32
