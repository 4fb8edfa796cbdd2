"""Quantisation-aware fine-tuning: a torch fake-quant twin of the converted int8 TFLite graph.

:func:`build_fake_quant` turns a fitted float model and its int8 ``.tflite`` into a torch model
whose forward values are the int8 graph's, bit for bit (TFLite's fixed-point requantisation, via
the C kernel's numpy reference ported to int64), and whose gradients are the float fake-quant's
(straight-through). :func:`qat_finetune` trains the float weights through it so that the int8
output matches the original float model on speech: the int8-vs-fp32 figure the manifest reports.
Why integer forward values: a float ``round(acc * s_in * s_w / s_out)`` is one LSB off on a few
percent of each layer's outputs, which 55 layers compound to about 10 LSB.
"""

from __future__ import annotations

import copy
import math
import operator
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import flatbuffers
import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from ai_edge_litert import schema_py_generated as schema
from torch import Tensor, nn

from toolchain.export.ckernel import TARGETS
from toolchain.export.ckernel import numpy_ref as ref
from toolchain.export.layer_map import LayerSite, builtin_interpreter, map_layers, tensor_details
from toolchain.models.compensators.streaming import (
    CausalConv1d,
    CausalConvTranspose1d,
    StepInterpreter,
    StreamingGraph,
    StreamingLeaf,
)


class QATError(ValueError):
    """A model or graph the fake-quant twin cannot mirror (one line)."""


@dataclass(frozen=True)
class QParams:
    """Affine quantisation of one activation tensor: ``real = (q - zero_point) · scale``."""

    scale: float
    zero_point: int
    qmin: int = -128
    qmax: int = 127


# ----------------------------------------------------------------------------- fake quant
def round_half_away(x: Tensor) -> Tensor:
    """``std::round``: halves go away from zero (torch.round sends them to even)."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def fake_quant(x: Tensor, q: QParams) -> Tensor:
    """Quantise-dequantise ``x`` with ``q``; gradient 1 inside the representable range, 0 outside."""
    lo, hi = (q.qmin - q.zero_point) * q.scale, (q.qmax - q.zero_point) * q.scale
    xc = torch.clamp(x, lo, hi)
    y = (torch.clamp(round_half_away(x / q.scale) + q.zero_point, q.qmin, q.qmax) - q.zero_point) * q.scale
    return xc + (y - xc).detach()


def codes(x: Tensor, q: QParams) -> Tensor:
    """The int64 codes of an already fake-quantised activation (exact in float64)."""
    return torch.clamp(round_half_away(x.detach() / q.scale) + q.zero_point, q.qmin, q.qmax).to(torch.int64)


def symmetric_scales(w: Tensor, per_channel: bool = True, levels: int = 127) -> Tensor:
    """TFLite's weight scales in float32: ``max|w| / 127`` per output channel (dim 0), or per tensor."""
    m = _half_range(w, per_channel)
    # an all-zero channel gets scale 1: its weights quantise to 0 either way
    return torch.where(m > 0, m / levels, torch.ones_like(m))


def _half_range(w: Tensor, per_channel: bool) -> Tensor:
    a = w.detach().abs().to(torch.float32)
    return a.flatten(1).amax(dim=1) if per_channel else a.amax()


# The converter's own float32 arithmetic (tensorflow/lite/tools/optimize/quantization_utils.cc),
# not a division in float64: a value that lands within an ulp of a half rounds differently
# otherwise (one bias of 521 in the shipped default did, on a new CI machine's calibration).
def weight_integers(w: Tensor, per_channel: bool = True, levels: int = 127) -> Tensor:
    """int8 weight codes as TFLite computes them: ``round(w · (127 / max|w|))`` in float32."""
    m = _half_range(w, per_channel)
    inv = torch.where(m > 0, levels / m, torch.zeros_like(m))
    inv = inv.reshape(-1, *([1] * (w.dim() - 1))) if per_channel else inv
    return torch.clamp(round_half_away(w.detach().to(torch.float32) * inv), -levels, levels)


def bias_scales(weight_scales: Tensor, input_scale: float) -> Tensor:
    """The bias scales TFLite stores: ``s_in · s_w`` multiplied in float32."""
    return torch.tensor(input_scale, dtype=torch.float32) * weight_scales.detach().to(torch.float32)


def bias_integers(b: Tensor, weight_scales: Tensor, input_scale: float) -> Tensor:
    """int32 bias codes as TFLite computes them: ``round(b · float(1 / (s_in · s_w)))`` in float32."""
    s = bias_scales(weight_scales, input_scale)
    inv = torch.where(s != 0, (1.0 / s.double()).float(), torch.zeros_like(s))
    return torch.clamp(round_half_away(b.detach().to(torch.float32) * inv).double(), -(2 ** 31), 2 ** 31 - 1)


def fake_quant_weight(w: Tensor, per_channel: bool = True, levels: int = 127) -> Tensor:
    """Symmetric int8 (``[-127, 127]``) fake quantisation per output channel (or tensor), STE gradient."""
    s = symmetric_scales(w, per_channel, levels)
    s = s.reshape(-1, *([1] * (w.dim() - 1))) if per_channel else s
    y = weight_integers(w, per_channel, levels).to(w.dtype) * s.to(w.dtype)
    return w + (y - w).detach()


def fake_quant_bias(b: Tensor, weight_scales: Tensor, input_scale: float) -> Tensor:
    """int32 bias with per-channel scale ``s_in · s_w`` (valued in float64 for exact accumulators), STE gradient."""
    y = bias_integers(b, weight_scales, input_scale) * (weight_scales.to(torch.float64) * input_scale)
    return b + (y.to(b.dtype) - b).detach()


def _exact(y_float: Tensor, y_int: Tensor, q: QParams) -> Tensor:
    """Forward value of the integer result, gradient of the float fake-quant."""
    y_fq = fake_quant(y_float, q)
    return y_fq + ((y_int.to(y_fq.dtype) - q.zero_point) * q.scale - y_fq).detach()


# ------------------------------------------------------------- TFLite integer arithmetic (int64)
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(x: Tensor) -> Tensor:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _wrap16(x: Tensor) -> Tensor:
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


def _pow2(e: Tensor) -> Tensor:
    return torch.bitwise_left_shift(torch.ones_like(e), e)


def _srdhm(a: Tensor, b: Tensor) -> Tensor:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    ab = a * b
    nudge = torch.where(ab >= 0, torch.full_like(ab, 1 << 30), torch.full_like(ab, 1 - (1 << 30)))
    q = torch.div(ab + nudge, 1 << 31, rounding_mode="trunc")
    return torch.where((a == _I32_MIN) & (b == _I32_MIN), torch.full_like(q, _I32_MAX), q)


def _rdbpot(x: Tensor, e: Tensor) -> Tensor:
    """gemmlowp RoundingDivideByPOT (ties away from zero)."""
    mask = _pow2(e) - 1
    threshold = (mask >> 1) + (x < 0).to(torch.int64)
    return (x >> e) + ((x & mask) > threshold).to(torch.int64)


def requantize(x: Tensor, multiplier: Tensor, shift: Tensor, mode: str) -> Tensor:
    """:func:`toolchain.export.ckernel.numpy_ref.requantize` on torch int64 tensors (broadcasting)."""
    x, m, s = torch.broadcast_tensors(x, multiplier, shift)
    left, right = torch.clamp(s, min=0), torch.clamp(-s, min=0)
    xs = _wrap32(torch.bitwise_left_shift(x, left))
    if mode == "double_away":
        return _rdbpot(_srdhm(xs, m), right)
    if mode == "double_up":
        t = (xs * m + (1 << 30)) >> 31
        return (t + (_pow2(right) >> 1)) >> right
    if mode == "single_up":
        total = 31 + right
        return (xs * m + _pow2(total - 1)) >> total
    raise QATError(f"unknown rounding mode {mode!r}; expected one of {sorted(ref.ROUNDING_MODES)}")


def _shift_signed(x: Tensor, n: int) -> Tensor:
    return _wrap32(x << n) if n >= 0 else x >> -n


def _add_int(a: Tensor, b: Tensor, qa: QParams, qb: QParams, qo: QParams, mode: str,
             mults: tuple[int, int, int, int, int, int]) -> Tensor:
    """TFLite int8 ADD (:func:`toolchain.export.ckernel.numpy_ref.add_s8`) on ``(B, C, L)`` codes.

    ``mults`` is :func:`toolchain.export.ckernel.numpy_ref.add_multipliers` of the three scales.
    ``"vector16"`` handles each sample's NWC-flattened elements in chunks of 16 with one
    rounding per operand; elements past the last whole chunk take the reference path.
    """
    m1, s1, m2, s2, mo, so = mults
    ls = 20
    t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    va, vb = a - qa.zero_point, b - qb.zero_point
    ra = requantize(_wrap32(va << ls), t(m1), t(s1), "double_away")
    rb = requantize(_wrap32(vb << ls), t(m2), t(s2), "double_away")
    out = torch.clamp(requantize(_wrap32(ra + rb), t(mo), t(so), "double_away") + qo.zero_point, qo.qmin, qo.qmax)
    if mode == "vector16":
        sa = _srdhm(_shift_signed(va, ls + s1), t(m1))
        sb = _srdhm(_shift_signed(vb, ls + s2), t(m2))
        r = requantize(_wrap32(sa + sb), t(mo), t(so), "double_away")
        vec = torch.clamp(_wrap16(_wrap16(r) + qo.zero_point), qo.qmin, qo.qmax)
        _, c, frames = a.shape
        pos = torch.arange(frames)[None, :] * c + torch.arange(c)[:, None]        # NWC index of (c, t)
        out = torch.where(pos < (c * frames) // 16 * 16, vec, out)
    elif mode != "reference":
        raise QATError(f"unknown ADD mode {mode!r}; expected one of {sorted(ref.ADD_MODES)}")
    return out


class FakeQuant(nn.Module):
    """Fake-quantises the graph input with its TFLite parameters (an exact affine quantisation)."""

    def __init__(self, q: QParams) -> None:
        super().__init__()
        self.q = q

    def forward(self, x: Tensor) -> Tensor:
        return fake_quant(x, self.q)


class FakeQuantAdd(nn.Module):
    """TFLite ADD: both operands rescaled to the output scale in fixed point, then summed."""

    def __init__(self, qa: QParams, qb: QParams, out_q: QParams, add_mode: str) -> None:
        super().__init__()
        self.qa, self.qb, self.q, self.add_mode = qa, qb, out_q, add_mode
        self.mults = ref.add_multipliers(qa.scale, qb.scale, out_q.scale)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        y_int = _add_int(codes(a, self.qa), codes(b, self.qb), self.qa, self.qb, self.q, self.add_mode, self.mults)
        return _exact(a + b, y_int, self.q)


class FakeQuantConv(StreamingLeaf):
    """A causal conv (or transposed conv, through its equivalent conv) computed as TFLite's int8 CONV_2D."""

    def __init__(self, inner: CausalConv1d | CausalConvTranspose1d, in_q: QParams, out_q: QParams,
                 history_q: QParams | None, rounding: str) -> None:
        super().__init__()
        self.inner = inner                      # shared: training updates the float model's weights
        self.in_channels = inner.in_channels
        self.in_q, self.out_q, self.history_q, self.rounding = in_q, out_q, history_q, rounding
        self._mult_cache: tuple[bytes, Tensor, Tensor] | None = None

    @property
    def context(self) -> int:
        return self.inner.context

    @property
    def stride_in(self) -> int:
        return self.inner.stride_in

    def float_weights(self) -> tuple[Tensor, Tensor | None, int, int]:
        """``(weight (O, I, K), bias, stride, dilation)`` of the conv the graph holds."""
        if isinstance(self.inner, CausalConvTranspose1d):
            w, b = self.inner.equivalent_conv()
            return w, b, 1, 1
        c = self.inner.conv
        return c.weight, c.bias, c.stride[0], c.dilation[0]

    def weight_scales(self) -> Tensor:
        return symmetric_scales(self.float_weights()[0])

    def _multipliers(self, ws: Tensor) -> tuple[Tensor, Tensor]:
        key = ws.numpy().tobytes()
        if self._mult_cache is None or self._mult_cache[0] != key:
            m, s = ref.conv_multipliers(self.in_q.scale, ws.tolist(), self.out_q.scale)
            self._mult_cache = (key, torch.tensor(m, dtype=torch.int64), torch.tensor(s, dtype=torch.int64))
        return self._mult_cache[1], self._mult_cache[2]

    def _valid(self, full: Tensor, *extra: Any) -> Tensor:
        if extra and extra[0] is not None:
            raise QATError("fake-quant models are built from fitted models (FiLM folded)")
        if self.history_q is not None:
            full = fake_quant(full, self.history_q)
        w, b, stride, dilation = self.float_weights()
        ws = symmetric_scales(w)
        acc_scale = ws.to(torch.float64) * self.in_q.scale
        wq = fake_quant_weight(w)
        bq = None if b is None else fake_quant_bias(b, ws, self.in_q.scale)
        y = F.conv1d(full, wq.to(full.dtype), None if bq is None else bq.to(full.dtype), stride=stride, dilation=dilation)
        with torch.no_grad():
            acc = round_half_away(y.detach().to(torch.float64) / acc_scale[None, :, None]).to(torch.int64)
            m, s = self._multipliers(ws)
            y_int = torch.clamp(requantize(acc, m[None, :, None], s[None, :, None], self.rounding) + self.out_q.zero_point,
                                self.out_q.qmin, self.out_q.qmax)
        y = _exact(y, y_int, self.out_q)
        if isinstance(self.inner, CausalConvTranspose1d):
            bsz, _, frames = y.shape
            st, c = self.inner.stride, self.inner.out_channels
            y = y.reshape(bsz, st, c, frames).permute(0, 2, 3, 1).reshape(bsz, c, frames * st)
        return y


class FakeQuantActivation(nn.Module):
    """PReLU (alpha quantised as TFLite does) or LeakyReLU, as TFLite's int8 PRELU / LEAKY_RELU."""

    def __init__(self, inner: nn.Module, in_q: QParams, out_q: QParams) -> None:
        super().__init__()
        if not isinstance(inner, (nn.PReLU, nn.LeakyReLU)):
            raise QATError(f"{type(inner).__name__}: no int8 fake-quant form (ELU stays float in TFLite)")
        self.inner, self.in_q, self.out_q = inner, in_q, out_q

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.inner, nn.PReLU):
            a = self.inner.weight
            sa = symmetric_scales(a, per_channel=False)
            alpha = fake_quant_weight(a, per_channel=False)
            y = torch.where(x >= 0, x, x * alpha.to(x.dtype).reshape(1, -1, 1))
            a_int = weight_integers(a, per_channel=False).to(torch.int64)
            a_int = a_int.expand(x.shape[1]).reshape(1, -1, 1)
            m1, s1, m2, s2 = ref.prelu_multipliers(self.in_q.scale, float(sa), self.out_q.scale)
        else:
            y = F.leaky_relu(x, self.inner.negative_slope)
            a_int = torch.ones((), dtype=torch.int64)
            m1, s1, m2, s2 = ref.prelu_multipliers(self.in_q.scale, self.inner.negative_slope, self.out_q.scale)
        with torch.no_grad():
            v = codes(x, self.in_q) - self.in_q.zero_point
            t = lambda k: torch.tensor(k, dtype=torch.int64)  # noqa: E731
            pos = requantize(v, t(m1), t(s1), "double_away")
            neg = requantize(v * a_int, t(m2), t(s2), "double_away")
            y_int = torch.clamp(torch.where(v >= 0, pos, neg) + self.out_q.zero_point, self.out_q.qmin, self.out_q.qmax)
        return _exact(y, y_int, self.out_q)


# ------------------------------------------------------------------------------- the model
class FakeQuantModel(nn.Module):
    """The fake-quant twin of a step graph. ``forward(x)`` is offline (zero history, ``(B, 1, n)``);
    :meth:`step` streams one block with explicit state, like :class:`StreamingGraph`."""

    def __init__(self, gm: torch.fx.GraphModule, slots: list[str], sites: dict[str, LayerSite]) -> None:
        super().__init__()
        self.gm = gm
        self.slots = slots
        self.sites = sites

    def forward(self, x: Tensor) -> Tensor:
        return self.gm(x)

    def init_state(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> list[Tensor]:
        return [self.gm.get_submodule(s).init_state(batch, dtype) for s in self.slots]

    def step(self, x: Tensor, states: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if len(states) != len(self.slots):
            raise QATError(f"expected {len(self.slots)} state tensors, got {len(states)}")
        runner = StepInterpreter(self.gm, dict(zip(self.slots, states)))
        y = runner.run(x)
        return y, [runner.new_states[s] for s in self.slots]


def _qparams(details: dict[int, dict], index: int, what: str) -> QParams:
    d = details[index]
    q = d["quantization_parameters"]
    if len(q["scales"]) != 1:
        raise QATError(f"{what}: tensor {d['name']!r} is not quantised per tensor (is this the int8 .tflite?)")
    info = np.iinfo(np.dtype(d["dtype"]))
    return QParams(float(q["scales"][0]), int(q["zero_points"][0]), int(info.min), int(info.max))


def host_target() -> str:
    """The LiteRT build this machine runs (its CONV_2D rounding differs between x86 and ARM)."""
    return "litert-arm" if platform.machine().lower() in ("aarch64", "arm64") else "litert-x86"


def build_fake_quant(graph: StreamingGraph, int8_tflite: bytes, *, target: str | None = None) -> FakeQuantModel:
    """The fake-quant twin of ``graph`` (a fitted model's step graph) with ``int8_tflite``'s parameters.

    The twin shares its float parameters with ``graph.model``: training it fine-tunes that model.
    ``target`` names the LiteRT build whose integer rounding the forward values reproduce
    (:data:`toolchain.export.ckernel.TARGETS`; default: this host's). Raises :class:`QATError` if the graph is not
    int8, or a weight or alpha scale in the .tflite is not the one the scheme below computes
    from the same float weights (a converter that changed its scheme fails loudly here).

    The scheme (TFLite full-integer): activations per-tensor asymmetric with the scale and zero
    point read from the .tflite (input, every layer output, every conv's ``[state, block]``
    history, every add); conv weights per output channel symmetric in [-127, 127]
    (``s_c = max|w_c| / 127``; a transposed conv per channel of its equivalent conv); bias int32
    at ``s_in * s_c``; PReLU alpha per-tensor symmetric, LeakyReLU a folded multiplier;
    requantisation with a 31-bit multiplier and two roundings, ADD rescaled at 2^-20. Forward
    value ``y = y_float + (y_int - y_float).detach()``: exact in float64 (equal to LiteRT's builtin
    kernels), possibly one unit off in a float32 accumulator, which never touches the gradient.
    Weight and alpha scales are recomputed from the current float weights on every forward, as
    the converter will when the fine-tuned weights are exported.
    """
    target = host_target() if target is None else target
    if target not in TARGETS:
        raise QATError(f"target {target!r}; expected one of {sorted(TARGETS)}")
    rounding, add_mode = TARGETS[target]
    it = builtin_interpreter(int8_tflite)
    details = tensor_details(it)
    x_dtype = np.dtype(details[it.get_signature_runner().get_input_details()["x"]["index"]]["dtype"])
    if x_dtype != np.int8:
        raise QATError(f"the fake-quant twin mirrors full-integer int8 graphs; this graph's input is {x_dtype.name}")
    sites = {s.node: s for s in map_layers(graph, it)}
    src = graph.gm
    modules: dict[str, nn.Module] = {}
    new = torch.fx.Graph()
    env: dict[str, torch.fx.Node] = {}
    first = True
    for node in src.graph.nodes:
        if node.op == "placeholder":
            # later placeholders are concrete-None arguments (the folded audiogram): not inputs
            if first:
                modules["fq_x"] = FakeQuant(_qparams(details, sites[node.name].output, "x"))
                env[node.name] = new.call_module("fq_x", (new.placeholder(node.name),))
            first = False
            continue
        if node.op == "call_function" and getattr(node.target, "__name__", "") == "_assert_is_none":
            continue
        args = torch.fx.map_arg(node.args, lambda a: env[a.name])
        if node.op == "output":
            new.output(args[0])
            continue
        site = sites.get(node.name)
        if site is None:
            raise QATError(f"graph node {node.name} has no TFLite counterpart")
        out_q = _qparams(details, site.output, site.layer)
        if node.op == "call_module":
            mod = src.get_submodule(node.target)
            if site.kind in ("conv", "conv_transpose"):
                in_q = _qparams(details, site.inputs[0], site.layer)
                hist_q = None if site.history is None else _qparams(details, site.history, site.layer)
                fq: nn.Module = FakeQuantConv(mod, in_q, out_q, hist_q, rounding)
                _check_weight_scales(it, details, site, fq)
            else:
                fq = FakeQuantActivation(mod, _qparams(details, site.inputs[0], site.layer), out_q)
                if site.kind == "prelu":
                    _check_alpha(it, details, site, mod)
            modules[node.target] = fq
            env[node.name] = new.call_module(node.target, args[:1])
        elif node.op == "call_function" and node.target in (operator.add, torch.add):
            name = f"fq_{node.name}"
            qa, qb = (_qparams(details, i, site.layer) for i in site.inputs)
            modules[name] = FakeQuantAdd(qa, qb, out_q, add_mode)
            env[node.name] = new.call_module(name, tuple(args[:2]))
        else:
            raise QATError(f"graph node {node.op} {node.target} has no fake-quant form")
    gm = torch.fx.GraphModule(modules, new)
    return FakeQuantModel(gm, [s.name for s in graph.slots], sites)


def quantize_into(int8_tflite: bytes, graph: StreamingGraph) -> bytes:
    """``int8_tflite`` with ``graph``'s float weights quantised into it, every activation's scale kept.

    After fine-tuning through the twin, this is the graph the twin computed during training, bit
    for bit on LiteRT's builtin kernels: conv filters and biases (and PReLU slopes) are quantised
    with the scheme in the module docstring, while the activation scales and zero points stay the
    ones the twin was trained with (a re-calibration would move them). A constant whose buffer the
    converter had shared with another gets a buffer of its own, so the two never change together.
    """
    it = builtin_interpreter(int8_tflite)
    details = tensor_details(it)
    m = schema.ModelT.InitFromPackedBuf(bytes(int8_tflite), 0)
    tensors = m.subgraphs[0].tensors
    users: dict[int, int] = {}
    for t in tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    for meta in m.metadata or []:
        users[meta.buffer] = users.get(meta.buffer, 0) + 1

    def put(index: int, data: np.ndarray, scales: Sequence[float]) -> None:
        t = tensors[index]
        if tuple(t.shape) != data.shape:
            raise QATError(f"tensor {details[index]['name']!r}: shape {list(t.shape)} in the .tflite, {list(data.shape)} from torch")
        if users.get(t.buffer, 0) > 1:        # shared with another constant: that one keeps the old bytes
            users[t.buffer] -= 1
            m.buffers.append(schema.BufferT())
            t.buffer = len(m.buffers) - 1
            users[t.buffer] = 1
        m.buffers[t.buffer].data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8).copy()
        t.quantization.scale = [float(v) for v in scales]
        t.quantization.zeroPoint = [0] * len(scales)

    with torch.no_grad():
        for site in map_layers(graph, it):
            if site.kind in ("conv", "conv_transpose"):
                conv = FakeQuantConv(graph.gm.get_submodule(site.layer), _qparams(details, site.inputs[0], site.layer),
                                     _qparams(details, site.output, site.layer), None, "double_up")
                w, b, _, _ = conv.float_weights()
                ws = symmetric_scales(w)
                wq = weight_integers(w)
                put(site.constants[0], wq.permute(0, 2, 1)[:, None].numpy().astype(np.int8), ws.tolist())
                if b is not None:
                    put(site.constants[1], bias_integers(b, ws, conv.in_q.scale).numpy().astype(np.int32),
                        bias_scales(ws, conv.in_q.scale).tolist())
            elif site.kind == "prelu":
                a = graph.gm.get_submodule(site.layer).weight.float()
                sa = symmetric_scales(a, per_channel=False)
                aq = weight_integers(a, per_channel=False).numpy().astype(np.int8)
                shape = tuple(tensors[site.constants[0]].shape)
                put(site.constants[0], np.broadcast_to(aq, (shape[-1],)).reshape(shape).copy(), [float(sa)])
    builder = flatbuffers.Builder(len(int8_tflite) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _check_weight_scales(it: Any, details: dict[int, dict], site: LayerSite, fq: FakeQuantConv) -> None:
    q = details[site.constants[0]]["quantization_parameters"]
    tfl = np.asarray(q["scales"], np.float64)
    ours = fq.weight_scales().numpy().astype(np.float64)
    if tfl.shape != ours.shape or not np.allclose(tfl, ours, rtol=1e-6, atol=0):
        raise QATError(f"{site.layer}: weight scales in the .tflite differ from max|w|/127 per channel "
                       f"(first {tfl[:3].tolist()} vs {ours[:3].tolist()})")


def _check_alpha(it: Any, details: dict[int, dict], site: LayerSite, mod: nn.PReLU) -> None:
    q = details[site.constants[0]]["quantization_parameters"]
    ours = float(symmetric_scales(mod.weight, per_channel=False))
    if len(q["scales"]) != 1 or int(q["zero_points"][0]) != 0 or not math.isclose(float(q["scales"][0]), ours, rel_tol=1e-6):
        raise QATError(f"{site.layer}: PReLU alpha in the .tflite is not per-tensor symmetric with scale "
                       f"max|alpha|/127 = {ours:.6g} (scales {q['scales'][:3].tolist()}, zero points {q['zero_points'][:3].tolist()})")


def quantize_output(y: Tensor, model: FakeQuantModel) -> np.ndarray:
    """The fake-quant model's output as the int8 codes the TFLite graph would emit."""
    q = model.gm.get_submodule(f"fq_{_last_add(model)}").q
    return np.clip(np.round(y.detach().double().numpy() / q.scale) + q.zero_point, q.qmin, q.qmax).astype(np.int64)


def _last_add(model: FakeQuantModel) -> str:
    out = next(n for n in model.gm.graph.nodes if n.op == "output").args[0]
    if out.op != "call_module" or not str(out.target).startswith("fq_"):
        raise QATError("the graph output is not an add (fake-quant output codes need its parameters)")
    return str(out.target)[3:]


# ------------------------------------------------------------------------------ fine-tuning
@dataclass
class QATResult:
    model: FakeQuantModel      # the twin it trained through (shares the fine-tuned weights)
    steps: int
    wall_time_s: float
    initial_loss_db: float     # fake-quant vs float output SNR on the first batches (dB, higher is better)
    final_loss_db: float       # the same over the last batches
    history: list[float]


def snr_loss(y: Tensor, ref: Tensor) -> Tensor:
    """``Σ (y − ref)² / Σ ref²`` over the batch: minimising it maximises the batch SNR."""
    return (y - ref).square().sum() / ref.square().sum().clamp_min(1e-12)


def qat_finetune(graph: StreamingGraph, int8_tflite: bytes, clips: Sequence[np.ndarray], steps: int, *,
                 lr: float = 1e-4, batch: int = 8, segment: int = 4096, seed: int = 0, threads: int = 1,
                 progress: Callable[[int, float], None] | None = None) -> QATResult:
    """Fine-tune ``graph.model``'s float weights in place through the fake-quant twin.

    The target is the *original* float model's output on the same (unquantised) input, so the
    loss is the int8-vs-fp32 error the export reports. ``clips`` are float speech clips; each
    step draws ``batch`` random segments of ``segment`` samples. AdamW, constant ``lr``; PReLU
    slopes train too (their scale follows them). ``threads``: torch CPU threads while training
    (one by default: on a shared 2-core board or CI runner, two contending threads make these
    small convolutions orders of magnitude slower).
    """
    if steps < 1:
        raise QATError(f"qat steps must be >= 1, got {steps}")
    lengths = [len(c) for c in clips]
    if not clips or min(lengths) < segment:
        raise QATError(f"qat needs clips of at least {segment} samples (got {min(lengths, default=0)})")
    reference = copy.deepcopy(graph.gm).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    fq = build_fake_quant(graph, int8_tflite)
    params = [p for p in graph.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    data = [torch.from_numpy(np.asarray(c, np.float32)) for c in clips]
    history: list[float] = []
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        for step in range(steps):
            _train_step(fq, reference, opt, data, rng, batch, segment, history)
            if progress is not None:
                progress(step + 1, history[-1])
    finally:
        torch.set_num_threads(threads_before)
    k = max(1, min(10, steps // 5))
    return QATResult(model=fq, steps=steps, wall_time_s=time.perf_counter() - t0, initial_loss_db=float(np.mean(history[:k])),
                     final_loss_db=float(np.mean(history[-k:])), history=history)


def _train_step(fq: FakeQuantModel, reference: nn.Module, opt: torch.optim.Optimizer, data: list[Tensor],
                rng: np.random.Generator, batch: int, segment: int, history: list[float]) -> None:
    """One AdamW step on ``batch`` random segments; appends the batch's fake-quant SNR (dB) to ``history``."""
    xs = []
    for k in rng.integers(0, len(data), size=batch):
        start = int(rng.integers(0, len(data[k]) - segment + 1))
        xs.append(data[k][start:start + segment])
    x = torch.stack(xs).unsqueeze(1)
    with torch.no_grad():
        ref = reference(x)
    loss = snr_loss(fq(x), ref)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    history.append(-10.0 * math.log10(max(float(loss.detach()), 1e-12)))


__all__ = ["FakeQuant", "FakeQuantActivation", "FakeQuantAdd", "FakeQuantConv", "FakeQuantModel", "QATError", "QATResult",
           "QParams", "build_fake_quant", "host_target", "quantize_into", "fake_quant", "fake_quant_bias", "fake_quant_weight", "qat_finetune",
           "quantize_output", "round_half_away", "snr_loss", "symmetric_scales", "weight_integers", "bias_integers", "bias_scales"]
