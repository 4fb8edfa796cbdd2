"""Post-conversion pass over a 16x8 ``.tflite``: no requantising op inside, full-scale int16 input.

LiteRT's 16x8 quantiser calibrates every tensor, the input included, on the calibration set. Two
things about what it writes are wrong for a hearing aid (round 2 · 1 of 6):

* the input scale is whatever the loudest calibration block needed (about 0.65 full scale), so a
  louder sound from the microphone would clip at the device's very first tensor;
* an int16 CONCATENATION requires one scale for all its inputs and its output (TFLite's
  concatenation.cc refuses to rescale int16), so the converter inserts an int16→int16
  QUANTIZE in front of every history concat whose fresh block was calibrated to another scale.

:func:`finalize_16x8` fixes both on the flatbuffer. Each QUANTIZE is folded into the op that
produces its input (a CONV_2D, ADD or LEAKY_RELU, all of which requantise to whatever output scale
their tensor declares) or into the graph input, and removed. Then every tensor that must share the
input's scale (the input, the histories it is concatenated with, their slices: one "scale group")
is set to ``input_scale`` (1/32768 by default: the device input *is* the 16-bit PCM code of the
ADC or wav, ±1.0 full scale without clipping) and each CONV_2D reading such a tensor has its int64
bias rescaled to the new input scale. Weights are untouched. The result is checked to hold no
QUANTIZE / DEQUANTIZE and no float tensor on the data path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

#: The device input scale: one int16 code per 16-bit PCM code (full scale ±1.0 → ±32768).
PCM16_SCALE = 1.0 / 32768.0

#: Ops whose int16 kernels need one scale on their (non-constant) inputs and output.
_SAME_SCALE_OPS = ("CONCATENATION", "STRIDED_SLICE", "RESHAPE", "SLICE")
#: Ops that compute their output at whatever scale the output tensor declares.
_RESCALING_OPS = ("CONV_2D", "ADD", "LEAKY_RELU")


class Int16GraphError(ValueError):
    """The 16x8 graph has a shape this pass cannot make requantise-free; one-line message."""


def _op_names(m: Any) -> list[str]:
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    out = []
    for op in m.subgraphs[0].operators:
        code = m.operatorCodes[op.opcodeIndex]
        out.append(names[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return out


def _scale(t: Any) -> float:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        raise Int16GraphError(f"tensor {t.name.decode()!r} has no single activation scale")
    return float(q.scale[0])


def _set_scale(t: Any, s: float) -> None:
    t.quantization.scale = [float(s)]
    t.quantization.zeroPoint = [0]


def finalize_16x8(tflite16: bytes, input_scale: float = PCM16_SCALE, min_output_reach: float = 0.0) -> bytes:
    """``tflite16`` without requantising ops and with its input scale group at ``input_scale``.

    ``min_output_reach``: the audio output's scale is widened, if needed, so that its int16 range
    reaches at least this magnitude (the board's output limit): the limiter, not the graph's
    output grid, decides where a loud sound stops.
    """
    m = schema.ModelT.InitFromPackedBuf(bytes(tflite16), 0)
    g = m.subgraphs[0]
    tensors = g.tensors
    ops = list(g.operators)
    names = _op_names(m)
    int16 = schema.TensorType.INT16
    audio_in = _audio_input(m)
    if tensors[audio_in].type != int16:
        raise Int16GraphError("not a 16x8 graph (its audio input is not int16)")

    def producers() -> dict[int, int]:
        return {o: k for k, op in enumerate(ops) for o in op.outputs}

    def consumers() -> dict[int, list[int]]:
        c: dict[int, list[int]] = defaultdict(list)
        for k, op in enumerate(ops):
            for i in op.inputs:
                if i >= 0:
                    c[i].append(k)
        return c

    # 1. Fold each int16→int16 QUANTIZE into its input's producer.
    prod, cons = producers(), consumers()
    graph_inputs = set(g.inputs)
    drop: set[int] = set()
    rewire: dict[int, int] = {}
    for k, (op, name) in enumerate(zip(ops, names)):
        if name != "QUANTIZE":
            continue
        a, b = op.inputs[0], op.outputs[0]
        if tensors[a].type != int16 or tensors[b].type != int16:
            raise Int16GraphError(f"QUANTIZE from {tensors[a].name.decode()!r} is not int16→int16: float at the graph edge")
        src = prod.get(a)
        if src is None and a not in graph_inputs:
            raise Int16GraphError(f"QUANTIZE reads {tensors[a].name.decode()!r}, which nothing produces")
        if src is not None and names[src] not in _RESCALING_OPS:
            raise Int16GraphError(f"QUANTIZE after {names[src]} ({tensors[a].name.decode()!r}): that op cannot change its output scale")
        others = [names[c] for c in cons.get(a, []) if c != k and names[c] in _SAME_SCALE_OPS]
        if others:
            raise Int16GraphError(f"{tensors[a].name.decode()!r} also feeds {others[0]}, which needs its present scale")
        _set_scale(tensors[a], _scale(tensors[b]))
        drop.add(k)
        rewire[b] = a
    if drop:
        for op in ops:
            op.inputs = [rewire.get(i, i) for i in op.inputs]
        g.outputs = [rewire.get(i, i) for i in g.outputs]
        ops = [op for k, op in enumerate(ops) if k not in drop]
        names = [n for k, n in enumerate(names) if k not in drop]
        g.operators = ops

    # 2. The input's scale group: tensors joined through same-scale ops, and the state tensors
    #    that feed the graph's history concats (a state output is a slice of its concat).
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for op, name in zip(ops, names):
        if name in _SAME_SCALE_OPS:
            members = [i for i in (*op.inputs, *op.outputs) if i >= 0 and tensors[i].type == int16 and not _has_data(m, tensors[i])]
            for i in members[1:]:
                parent[find(i)] = find(members[0])
    root = find(audio_in)
    group = sorted({i for i in list(parent) if find(i) == root} | {audio_in})
    old = {i: _scale(tensors[i]) for i in group}
    if len({round(v, 15) for v in old.values()}) != 1:
        raise Int16GraphError("the input's scale group has several scales after folding; the graph still needs a requantise")
    old_scale = next(iter(old.values()))
    for i in group:
        _set_scale(tensors[i], input_scale)

    # 3. Rescale the int64 (or int32) bias of every conv that reads the group.
    users: dict[int, int] = defaultdict(int)
    for t in tensors:
        users[t.buffer] += 1
    members = set(group)
    for op, name in zip(ops, names):
        if name != "CONV_2D" or op.inputs[0] not in members or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        bt = tensors[op.inputs[2]]
        dtype = {schema.TensorType.INT64: np.int64, schema.TensorType.INT32: np.int32}.get(bt.type)
        if dtype is None:
            raise Int16GraphError(f"bias {bt.name.decode()!r} is neither int64 nor int32")
        bias = np.frombuffer(bytes(m.buffers[bt.buffer].data), dtype).astype(np.float64)
        ratio = old_scale / input_scale
        new = np.round(bias * ratio)
        info = np.iinfo(dtype)
        if np.any(new < info.min) or np.any(new > info.max):
            raise Int16GraphError(f"bias {bt.name.decode()!r} overflows {np.dtype(dtype).name} at input scale {input_scale:g}")
        if users[bt.buffer] > 1:  # a buffer shared with another constant keeps its old bytes there
            users[bt.buffer] -= 1
            m.buffers.append(schema.BufferT())
            bt.buffer = len(m.buffers) - 1
            users[bt.buffer] = 1
        m.buffers[bt.buffer].data = np.frombuffer(new.astype(dtype).tobytes(), np.uint8).copy()
        bt.quantization.scale = [float(s) / ratio for s in bt.quantization.scale]

    # 4. The audio output's reach. Its producer requantises to whatever scale the tensor declares.
    y = _audio_output(m)
    if min_output_reach > 0 and _scale(tensors[y]) * 32767.0 < min_output_reach:
        src = producers().get(y)
        if y in members or src is None or names[src] not in _RESCALING_OPS:
            raise Int16GraphError("the audio output shares a scale group; it cannot be widened to the output limit")
        _set_scale(tensors[y], min_output_reach / 32767.0)

    left = [n for n in names if n in ("QUANTIZE", "DEQUANTIZE")]
    if left:
        raise Int16GraphError(f"{len(left)} {left[0]} op(s) remain in the 16x8 graph")
    builder = flatbuffers.Builder(len(tflite16) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _signature_tensor(m: Any, key: str, outputs: bool) -> int | None:
    """Tensor index of signature entry ``key`` (``x`` / ``y``), if the model has a signature."""
    for sig in m.signatureDefs or []:
        for t in (sig.outputs if outputs else sig.inputs) or []:
            if t.name.decode() == key:
                return int(t.tensorIndex)
    return None


def _audio_output(m: Any) -> int:
    """The block output ``y`` (the step graph's other outputs are its state)."""
    y = _signature_tensor(m, "y", outputs=True)
    if y is None:
        raise Int16GraphError("the graph has no signature output named 'y' (the audio block)")
    return y


def _audio_input(m: Any) -> int:
    """The block input ``x`` (the step graph's other inputs are its state)."""
    x = _signature_tensor(m, "x", outputs=False)
    if x is None:
        raise Int16GraphError("the graph has no signature input named 'x' (the audio block)")
    return x


def _has_data(m: Any, t: Any) -> bool:
    buf = m.buffers[t.buffer] if 0 <= t.buffer < len(m.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


__all__ = ["PCM16_SCALE", "Int16GraphError", "finalize_16x8"]
