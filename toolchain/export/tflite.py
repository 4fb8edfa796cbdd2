"""Torch step graph → Keras (NWC) step graph → fp32 and full-integer int8 TFLite.

The only module that imports TensorFlow. The Keras graph is generated from the torch model's
own traced graph (:class:`toolchain.models.compensators.streaming.StreamingGraph`): one translator per layer
type in :data:`MODULE_TRANSLATORS` / :data:`FUNCTION_TRANSLATORS`, weights copied from torch.
Layout is NHWC with H = 1: the block is ``x: (1, 1, block, 1)`` and each stateful leaf becomes
a state input ``state_in_NN`` (its last ``context`` input frames, ``(1, 1, frames, channels)``) and a state output ``state_out_NN`` computed inside the graph, so the
step function ``y, state' = f(x, state)`` is explicit in the file.
"""

from __future__ import annotations

import copy
import operator
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import flatbuffers  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert import schema_py_generated as schema  # noqa: E402

from runtime.native_log import native_chatter  # noqa: E402
from toolchain.models.compensators.streaming import (  # noqa: E402
    CausalConv1d,
    CausalConvTranspose1d,
    StreamingGraph,
    StreamingLeaf,
    state_names,
)


class _StateBook:
    """Creates the state inputs/outputs while the graph is translated, in slot order."""

    def __init__(self, graph: StreamingGraph) -> None:
        self.index = {s.name: i for i, s in enumerate(graph.slots)}
        self.inputs: dict[int, Any] = {}
        self.outputs: dict[int, Any] = {}
        for i, s in enumerate(graph.slots):
            self.inputs[i] = keras.Input(shape=(1, s.frames, s.channels), batch_size=1, name=state_names(i)[0])

    def ordered_inputs(self) -> list[Any]:
        return [self.inputs[i] for i in sorted(self.inputs)]


def _with_history(name: str, leaf: StreamingLeaf, h: Any, book: _StateBook) -> Any:
    """Concatenate the state in front of the block and emit the new state (last ``context`` frames)."""
    if leaf.context == 0:
        return h
    i = book.index[name]
    full = keras.layers.Concatenate(axis=2, name=f"{name}.history")([book.inputs[i], h])
    book.outputs[i] = full[:, :, -leaf.context:, :]
    return full


def _conv_layer(name: str, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, dilation: int) -> keras.layers.Conv2D:
    # Conv2D over (1, 1, time, channels): TFLite has no 1-D conv, and a Keras Conv1D's
    # expand/squeeze pair trips the converter's bias-add fusion; one layout end to end is simpler.
    out_ch, in_ch, k = weight.shape
    layer = keras.layers.Conv2D(out_ch, (1, k), strides=(1, stride), dilation_rate=(1, dilation), padding="valid",
                                use_bias=bias is not None, name=name)
    layer.build((1, 1, None, in_ch))
    layer.set_weights(_conv_weights(weight, bias))
    return layer


def _conv_weights(weight: torch.Tensor, bias: torch.Tensor | None) -> list[np.ndarray]:
    """Keras Conv2D weights ``[kernel (1, K, I, O), bias (O,)]`` of a torch Conv1d weight ``(O, I, K)``."""
    w = weight.detach().cpu().numpy().transpose(2, 1, 0)[None]  # torch (O, I, K) → keras (1, K, I, O)
    return [w] if bias is None else [w, bias.detach().cpu().numpy()]


def translate_causal_conv(name: str, leaf: CausalConv1d, args: tuple, book: _StateBook) -> Any:
    if len(args) > 1 and args[1] is not None:
        raise ValueError(f"{name}: FiLM conditioning must be folded (fit the model) before export")
    conv = leaf.conv
    full = _with_history(name, leaf, args[0], book)
    return _conv_layer(name, conv.weight, conv.bias, conv.stride[0], conv.dilation[0])(full)


def translate_conv_transpose(name: str, leaf: CausalConvTranspose1d, args: tuple, book: _StateBook) -> Any:
    full = _with_history(name, leaf, args[0], book)
    w, b = leaf.equivalent_conv()
    y = _conv_layer(name, w, b, 1, 1)(full)                       # (1, 1, L, s * C_out)
    frames = y.shape[2]
    # A static shape: Keras' Reshape layer reads the batch size at run time (SHAPE + PACK ops).
    return keras.ops.reshape(y, (1, 1, frames * leaf.stride, leaf.out_channels))


def translate_elu(name: str, mod: nn.ELU, args: tuple, book: _StateBook) -> Any:
    if mod.alpha != 1.0:
        raise ValueError(f"{name}: only ELU(alpha=1) has an int8 TFLite kernel")
    return keras.layers.ELU(name=name)(args[0])


def translate_prelu(name: str, mod: nn.PReLU, args: tuple, book: _StateBook) -> Any:
    layer = keras.layers.PReLU(shared_axes=[1, 2], name=name)
    channels = args[0].shape[-1]
    layer.build((1, 1, None, channels))
    layer.set_weights(_prelu_weights(mod, channels))
    return layer(args[0])


def _prelu_weights(mod: nn.PReLU, channels: int) -> list[np.ndarray]:
    """Keras PReLU weights (one alpha per channel, shared over H and W) of a torch PReLU."""
    alpha = mod.weight.detach().cpu().numpy().astype(np.float32)
    return [np.broadcast_to(alpha, (channels,)).reshape(1, 1, channels).copy()]


def translate_leaky_relu(name: str, mod: nn.LeakyReLU, args: tuple, book: _StateBook) -> Any:
    return keras.layers.LeakyReLU(negative_slope=mod.negative_slope, name=name)(args[0])


def translate_add(name: str, args: tuple) -> Any:
    return keras.layers.Add(name=name)(list(args))


MODULE_TRANSLATORS: dict[type, Callable[..., Any]] = {
    CausalConv1d: translate_causal_conv,
    CausalConvTranspose1d: translate_conv_transpose,
    nn.ELU: translate_elu,
    nn.PReLU: translate_prelu,
    nn.LeakyReLU: translate_leaky_relu,
}
FUNCTION_TRANSLATORS: dict[Callable, Callable[..., Any]] = {operator.add: translate_add, torch.add: translate_add}
_IGNORED = {"_assert_is_none"}


def build_keras_step(graph: StreamingGraph, block: int) -> keras.Model:
    """Keras functional model ``[x, state_in_00, ...] → [y, state_out_00, ...]`` (batch 1, NWC)."""
    book = _StateBook(graph)
    env: dict[str, Any] = {}
    x_in = keras.Input(shape=(1, block, 1), batch_size=1, name="x")
    first_placeholder = True
    result = None
    for node in graph.gm.graph.nodes:
        args = tuple(env.get(a.name) if isinstance(a, torch.fx.Node) else a for a in node.args)
        if node.op == "placeholder":
            env[node.name] = x_in if first_placeholder else None
            first_placeholder = False
        elif node.op == "call_module":
            mod = graph.gm.get_submodule(node.target)
            fn = MODULE_TRANSLATORS.get(type(mod))
            if fn is None:
                raise NotImplementedError(f"no Keras translator for layer {node.target} ({type(mod).__name__})")
            env[node.name] = fn(node.target, mod, args, book)
        elif node.op == "call_function":
            if getattr(node.target, "__name__", "") in _IGNORED:
                continue
            fn = FUNCTION_TRANSLATORS.get(node.target)
            if fn is None:
                raise NotImplementedError(f"no Keras translator for function {node.target}")
            env[node.name] = fn(node.name, args)
        elif node.op == "output":
            result = env[node.args[0].name]
        else:
            raise NotImplementedError(f"graph node {node.op} {node.target} is not supported by the exporter")
    outputs = {"y": result}
    for i in sorted(book.outputs):
        outputs[state_names(i)[1]] = book.outputs[i]
    return keras.Model(inputs=[x_in, *book.ordered_inputs()], outputs=outputs, name="step")


def run_keras_step(model: keras.Model, x_nwc: np.ndarray, states_nwc: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    out = model([x_nwc, *states_nwc], training=False)
    states = [np.asarray(out[state_names(i)[1]]) for i in range(len(states_nwc))]
    return np.asarray(out["y"]), states


def set_step_weights(model: keras.Model, graph: StreamingGraph) -> None:
    """Load ``graph``'s weights into a step model :func:`build_keras_step` made from a graph of the
    same topology (another fitting of the same checkpoint): the same values the translators would
    have copied, so a fleet builds the Keras graph once per process, not once per patient.

    Raises ``ValueError`` if a layer with weights is missed or has another shape.
    """
    loaded: set[str] = set()
    for node in graph.gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = graph.gm.get_submodule(node.target)
        if isinstance(mod, CausalConv1d):
            weights = _conv_weights(mod.conv.weight, mod.conv.bias)
        elif isinstance(mod, CausalConvTranspose1d):
            weights = _conv_weights(*mod.equivalent_conv())
        elif isinstance(mod, nn.PReLU):
            layer = model.get_layer(node.target)
            weights = _prelu_weights(mod, int(layer.get_weights()[0].shape[-1]))
        else:
            continue
        layer = model.get_layer(node.target)
        if [w.shape for w in layer.get_weights()] != [w.shape for w in weights]:
            raise ValueError(f"{node.target}: Keras layer weights {[w.shape for w in layer.get_weights()]} "
                             f"do not match the graph's {[w.shape for w in weights]}")
        layer.set_weights(weights)
        loaded.add(node.target)
    missed = sorted(layer.name for layer in model.layers if layer.weights and layer.name not in loaded)
    if missed:
        raise ValueError(f"step model layers {missed} have weights the graph did not provide")


def compile_keras_step(model: keras.Model) -> Callable[[np.ndarray, list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]:
    """:func:`run_keras_step` as one traced ``tf.function`` (fixed input signature, traced once).

    Eager Keras dispatches every layer from Python: 0.05-0.25 s a block on a loaded 2-core host,
    which made the export's Keras-vs-torch check its slowest stage. The traced function reads the
    model's variables, so it stays valid after :func:`set_step_weights`.
    """
    specs = [tf.TensorSpec(tuple(int(d) for d in t.shape), tf.float32, name=t.name) for t in model.inputs]
    n_states = len(model.inputs) - 1
    fn = tf.function(lambda *inputs: model(list(inputs), training=False), input_signature=specs)

    def step(x_nwc: np.ndarray, states_nwc: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        out = fn(x_nwc, *states_nwc)
        return out["y"].numpy(), [out[state_names(i)[1]].numpy() for i in range(n_states)]

    return step


def pin_threads(n: int) -> bool:
    """Size TensorFlow's intra- and inter-op thread pools (a fleet worker holds one CPU).

    Only possible before TensorFlow first runs an op; returns False (pools unchanged) after.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        return False
    return True


def tie_state_quantization(model: bytes) -> bytes:
    """Give every ``state_in_NN`` the quantisation of its ``state_out_NN`` so the state feeds straight back.

    The int8 quantiser already does this (a CONCATENATION's operands share the output scale). The
    16x8 quantiser instead calibrates each state input on its own and inserts a QUANTIZE
    (requantise) op in front of the concatenation; a device copying ``state_out`` into
    ``state_in`` would then misread the state by the ratio of the two scales. Here the state
    input takes the requantised scale (the concatenation's, which ``state_out`` shares) and the
    now-identity QUANTIZE is removed. A graph without such ops is returned unchanged.
    """

    m = schema.ModelT.InitFromPackedBuf(bytes(model), 0)
    sg = m.subgraphs[0]
    sig = m.signatureDefs[0]

    def names(items) -> dict[str, int]:
        return {(x.name.decode() if isinstance(x.name, bytes) else x.name): int(x.tensorIndex) for x in items}

    ins, outs = names(sig.inputs), names(sig.outputs)
    quantize = {i for i, c in enumerate(m.operatorCodes)
                if max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) == schema.BuiltinOperator.QUANTIZE}

    def qp(t: int) -> tuple[list[float], list[int]]:
        q = sg.tensors[t].quantization
        return ([float(v) for v in q.scale], [int(v) for v in q.zeroPoint]) if q is not None and q.scale is not None else ([], [])

    changed = False
    for k in sorted(n for n in ins if n.startswith("state_in_")):
        t_in, t_out = ins[k], outs[k.replace("_in_", "_out_")]
        if qp(t_in) == qp(t_out):
            continue
        requant = [op for op in sg.operators if op.opcodeIndex in quantize and list(op.inputs) == [t_in]]
        readers = [op for op in sg.operators if t_in in list(op.inputs)]
        if len(requant) != 1 or len(readers) != 1:
            raise ValueError(f"{k}: quantised differently from its state output and not through one QUANTIZE op; "
                             "the state cannot feed straight back")
        t_rq = int(requant[0].outputs[0])
        if qp(t_rq) != qp(t_out):
            raise ValueError(f"{k}: its requantised scale {qp(t_rq)} differs from the state output's {qp(t_out)}")
        sg.operators.remove(requant[0])
        for op in sg.operators:
            op.inputs = [t_in if int(i) == t_rq else int(i) for i in op.inputs]
        sg.tensors[t_in].quantization = copy.deepcopy(sg.tensors[t_out].quantization)
        changed = True
    if not changed:
        return bytes(model)
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@dataclass(frozen=True)
class TFLiteArtifacts:
    fp32: bytes
    int8: bytes


class SavedStep:
    """A step model exported once as a SavedModel directory; later weights only rewrite its
    variables checkpoint (:meth:`refresh`, ~0.2 s) instead of a whole export (5-12 s of tracing
    and object-graph walks on a loaded host). The graph part of the SavedModel depends only on
    the topology, so converting it gives the same bytes as a fresh export (tested).

    ``directory`` must be empty or absent; the owner removes it (:meth:`close`).
    """

    def __init__(self, model: keras.Model, directory: str) -> None:
        # lazy: a private Keras module (what model.export() uses), looked up only where it is needed
        from keras.src.export.saved_model import get_input_signature  # what model.export() uses

        self.model = model
        self.directory = directory
        self._archive = keras.export.ExportArchive()
        self._archive.track_and_add_endpoint("serve", model, get_input_signature(model))
        self._archive.write_out(directory, verbose=False)

    def refresh(self) -> None:
        """Write the model's current weights into the SavedModel's variables checkpoint."""
        tf.train.Checkpoint(root=self._archive._tf_trackable).write(
            os.path.join(self.directory, "variables", "variables"))

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def convert(model: keras.Model | SavedStep, n_states: int,
            representative: Callable[[], Iterable[list[np.ndarray]]] | None, *, int16x8: bool = False,
            fp32: bool = True) -> TFLiteArtifacts:
    """fp32 TFLite, and full-integer int8 (int8 I/O, int8 activations, int8 weights, int32 bias).

    ``representative`` yields ``[x, state_0, ...]`` NHWC float arrays from real streaming, so
    state inputs get the quantisation ranges they will see on the device. ``model`` may be a
    :class:`SavedStep` (its directory is converted as it stands). ``int16x8``: int16
    activations and I/O with int8 weights instead. ``fp32=False`` skips the float conversion
    (``fp32`` is then empty) when only a quantised graph is wanted.
    """

    if isinstance(model, SavedStep):
        with native_chatter("tensorflow"):
            return _convert_saved(model.directory, n_states, representative, int16x8, fp32)
    # Through Keras' own SavedModel export: the converter then freezes the variables
    # (a bare concrete function keeps them as resource variables the calibrator cannot read).
    # The converter prints from C++ ("fully_quantize: 0, inference_type: 6 ...") and warns from
    # Python (its calibrator's deprecated tf.lite.Interpreter): kept off the terminal, --verbose shows it.
    with tempfile.TemporaryDirectory() as tmp, native_chatter("tensorflow"):
        model.export(tmp, format="tf_saved_model", verbose=False)
        return _convert_saved(tmp, n_states, representative, int16x8, fp32)


def _convert_saved(saved: str, n_states: int, representative, int16x8: bool, want_fp32: bool) -> TFLiteArtifacts:
    fp32 = tf.lite.TFLiteConverter.from_saved_model(saved).convert() if want_fp32 else b""
    int8 = b""
    if representative is not None:
        conv = tf.lite.TFLiteConverter.from_saved_model(saved)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if int16x8:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            io_type = tf.int16
        else:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_type = tf.int8
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
        names = ["x", *[state_names(i)[0] for i in range(n_states)]]

        def gen() -> Iterator[dict[str, np.ndarray]]:
            for arrays in representative():
                yield {n: a.astype(np.float32) for n, a in zip(names, arrays)}

        conv.representative_dataset = gen
        int8 = conv.convert()
        if int16x8:
            int8 = tie_state_quantization(int8)
    return TFLiteArtifacts(fp32=fp32, int8=int8)
