"""The ONNX step graph under onnxruntime equals torch."""

import numpy as np
import torch

from runtime.backends.onnx import OnnxBackend
from runtime.bundle import load_bundle
from runtime.harness.measure import stream
from tests.helpers import MODERATE, randomised_seanet, speech_clip
from toolchain.export.onnx import export_onnx


def test_onnx_step_graph_equals_torch():
    g = randomised_seanet(9).fit(MODERATE).streaming()
    x = speech_clip("test", 0, seconds=1.0)
    x = x[: len(x) // 16 * 16]
    y = stream(OnnxBackend(export_onnx(g, 16)), x)
    with torch.no_grad():
        ref = g.gm(torch.from_numpy(x).reshape(1, 1, -1)).numpy().ravel()
    assert np.max(np.abs(y - ref)) <= 1e-4


def test_bundle_onnx_state_layout(default_bundle):
    b = load_bundle(default_bundle)
    g = b.manifest.graph("onnx")
    assert [t.name for t in g.inputs][0] == "x" and g.inputs[0].shape == (1, 1, 16)
    assert len(g.states) == len(b.manifest.graph("int8").states)
