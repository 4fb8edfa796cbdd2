"""fp32 ONNX step graph ``(x, state_in_00, ...) → (y, state_out_00, ...)`` for onnxruntime.

Layout is torch's NCW: ``x`` is ``(1, 1, block)``, each state ``(1, channels, frames)``.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import Tensor, nn

from toolchain.models.compensators.streaming import StreamingGraph, state_names


class StepModule(nn.Module):
    """Wraps a :class:`StreamingGraph` as a module with flat tensor inputs/outputs for export."""

    def __init__(self, graph: StreamingGraph) -> None:
        super().__init__()
        self.graph = graph
        self.model = graph.model  # registers the weights

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        y, new = self.graph.step(x, list(states))
        return (y, *new)


def export_onnx(graph: StreamingGraph, block: int, opset: int = 17) -> bytes:
    """Export the step graph to ONNX bytes (TorchScript-based exporter: no dynamic shapes needed)."""
    module = StepModule(graph).eval()
    x = torch.zeros(1, 1, block)
    states = graph.init_state(1)
    n = len(states)
    names_in = ["x", *[state_names(i)[0] for i in range(n)]]
    names_out = ["y", *[state_names(i)[1] for i in range(n)]]
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x, *states), buf, input_names=names_in, output_names=names_out,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return buf.getvalue()
