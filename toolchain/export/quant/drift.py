"""Per-layer drift of a quantised step graph from its fp32 twin: where the int8 error comes from.

The fp32 and the quantised (int8 or 16x8) ``.tflite`` graphs are streamed side by side over
the same held-out speech, block by block, each feeding its own state back, exactly as a device
runs them. After every block the output tensor of every layer (found by
:func:`toolchain.export.layer_map.map_layers`, so both graphs are paired by structure, not by
name) is read from both interpreters (``experimental_preserve_all_tensors``, TFLite's builtin
kernels so no delegate hides intermediate tensors), the quantised one dequantised, and

``snr_db``   10·log10(Σ fp32² / Σ (fp32 − dequantised)²) over all blocks: the error *accumulated*
             up to that layer;
``drop_db``  how many dB the layer itself loses: the lowest SNR among its inputs minus its own
             (0 for the input ``x``, whose SNR is the input quantisation itself).

The report names the three layers with the lowest SNR (where the signal is worst) and the three
with the largest drop (where to spend bits: a wider type, QAT, or a different scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from runtime.backends.base import quantize
from toolchain.export.layer_map import LayerSite, builtin_interpreter, map_layers, signature_tensors, tensor_details
from toolchain.models.compensators.streaming import StreamingGraph


@dataclass(frozen=True)
class LayerDrift:
    """Drift of one layer's output (see the module docstring)."""

    layer: str
    op: str
    snr_db: float
    drop_db: float

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "op": self.op, "snr_db": _r(self.snr_db), "drop_db": _r(self.drop_db)}


def _r(v: float) -> float | str:
    """JSON has no infinity: an exact layer (no error at all) is written as the string "inf"."""
    return round(v, 2) if math.isfinite(v) else ("inf" if v > 0 else "-inf")


@dataclass(frozen=True)
class DriftReport:
    layers: list[LayerDrift]
    blocks: int
    quant_dtype: str

    def worst(self, n: int = 3) -> list[LayerDrift]:
        """The ``n`` layers with the lowest SNR, worst first."""
        return sorted(self.layers, key=lambda d: d.snr_db)[:n]

    def largest_drops(self, n: int = 3) -> list[LayerDrift]:
        """The ``n`` layers that lose the most dB themselves, largest first."""
        return sorted(self.layers, key=lambda d: -d.drop_db if math.isfinite(d.drop_db) else 0.0)[:n]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``extra.drift`` section."""
        return {"quant_dtype": self.quant_dtype, "blocks": self.blocks,
                "worst": [d.to_dict() for d in self.worst()],
                "largest_drops": [d.to_dict() for d in self.largest_drops()],
                "layers": [d.to_dict() for d in self.layers]}

    def metrics(self, prefix: str = "drift") -> dict[str, Any]:
        """Flat manifest metrics: the worst layer, its SNR, and the worst three as one string."""
        w = self.worst()
        return {f"{prefix}_worst_layer": w[0].layer, f"{prefix}_worst_layer_snr_db": _r(w[0].snr_db),
                f"{prefix}_worst_layers": ", ".join(f"{d.layer} {d.snr_db:.1f} dB" for d in w),
                f"{prefix}_largest_drop_layer": self.largest_drops(1)[0].layer,
                f"{prefix}_largest_drop_db": _r(self.largest_drops(1)[0].drop_db)}

    def format(self) -> str:
        """A plain-text table, one layer per line in graph order."""
        lines = [f"{'layer':<58}{'op':<12}{'SNR dB':>8}{'drop dB':>9}"]
        lines += [f"{d.layer:<58}{d.op:<12}{d.snr_db:>8.1f}{d.drop_db:>9.1f}" for d in self.layers]
        return "\n".join(lines)


class _Stepper:
    """One interpreter streaming the step graph with its state fed back, every tensor readable."""

    def __init__(self, model: bytes) -> None:
        self.it = builtin_interpreter(model, preserve=True)
        ins, outs = signature_tensors(self.it)
        self.details = tensor_details(self.it)
        self.x = ins["x"]
        names = sorted(k for k in ins if k.startswith("state_in_"))
        self.pairs = [(ins[k], outs[k.replace("_in_", "_out_")]) for k in names]
        xd = self.details[self.x]
        self.dtype = np.dtype(xd["dtype"])
        self.integer = np.issubdtype(self.dtype, np.integer)

    def qparams(self, index: int) -> tuple[float, int]:
        q = self.details[index]["quantization_parameters"]
        if not len(q["scales"]):
            return 1.0, 0
        return float(q["scales"][0]), int(q["zero_points"][0])

    def reset(self) -> None:
        for si, _ in self.pairs:
            d = self.details[si]
            self.it.set_tensor(si, np.full(d["shape"], self.qparams(si)[1] if self.integer else 0, dtype=d["dtype"]))

    def step(self, x: np.ndarray) -> None:
        d = self.details[self.x]
        xv = quantize(x, *self.qparams(self.x), self.dtype) if self.integer else x.astype(np.float32)
        self.it.set_tensor(self.x, xv.reshape(d["shape"]))
        self.it.invoke()
        for si, so in self.pairs:
            self.it.set_tensor(si, self.it.get_tensor(so))

    def read(self, index: int) -> np.ndarray:
        v = self.it.get_tensor(index)
        if self.integer:
            s, z = self.qparams(index)
            return (v.astype(np.float64) - z) * s
        return v.astype(np.float64)


def layer_drift(graph: StreamingGraph, fp32_tflite: bytes, quant_tflite: bytes,
                clips: Sequence[np.ndarray], block: int) -> DriftReport:
    """Stream ``clips`` through both graphs and measure every layer's drift (module docstring)."""
    if not clips:
        raise ValueError("layer_drift needs at least one clip")
    ref, q = _Stepper(fp32_tflite), _Stepper(quant_tflite)
    if not q.integer:
        raise ValueError("the quantised graph has a float input; pass the int8 or 16x8 .tflite")
    sites_f: list[LayerSite] = map_layers(graph, ref.it)
    sites_q: list[LayerSite] = map_layers(graph, q.it)
    sig = np.zeros(len(sites_f))
    err = np.zeros(len(sites_f))
    blocks = 0
    for clip in clips:
        n = len(clip) // block * block
        ref.reset()
        q.reset()
        for i in range(0, n, block):
            xb = np.asarray(clip[i:i + block], np.float32)
            ref.step(xb)
            q.step(xb)
            for k, (sf, sq) in enumerate(zip(sites_f, sites_q)):
                a = ref.read(sf.output)
                d = a - q.read(sq.output)
                sig[k] += float(np.dot(a.ravel(), a.ravel()))
                err[k] += float(np.dot(d.ravel(), d.ravel()))
            blocks += 1
    snr = {s.layer: (math.inf if e == 0 else 10.0 * math.log10(max(p, 1e-300) / e))
           for s, p, e in zip(sites_f, sig, err)}
    layers = []
    for s in sites_f:
        drop = min(snr[src] for src in s.sources) - snr[s.layer] if s.sources else 0.0
        layers.append(LayerDrift(s.label, s.op, snr[s.layer], 0.0 if math.isnan(drop) else drop))
    return DriftReport(layers=layers, blocks=blocks, quant_dtype=q.dtype.name)


__all__ = ["DriftReport", "LayerDrift", "layer_drift"]
