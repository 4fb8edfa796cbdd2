"""Which tensor of a converted TFLite step graph holds which torch layer's output.

The Keras step graph is generated node by node from the torch model's traced graph
(:mod:`toolchain.export.tflite`), but the converter renames, fuses and reorders: tensor names
read like ``step_1/add_1_2/Add`` (Keras uniquifies name scopes) and the op order is not the
Keras layer order. Names are therefore not trusted. The map is built from the *structure*:
starting at the signature's ``x`` and ``state_in_NN`` tensors, each torch node is the unique
op of the expected type that consumes the tensors already mapped to its arguments (a stateful
conv is a CONCATENATION of ``[state_in_NN, input]`` followed by CONV_2D; a transposed conv
adds a RESHAPE; an add is an ADD of the two mapped operands). The walk must end at the
signature's ``y``; anything ambiguous or missing raises :class:`LayerMapError`. The same map
works for the fp32, int8 and 16x8 graphs of one model, which is what lets the drift report and
the fake-quant model pair tensors across them.

Uses the LiteRT interpreter only (no TensorFlow import).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from torch import nn

from toolchain.models.compensators.streaming import CausalConv1d, CausalConvTranspose1d, StreamingGraph, state_names


class LayerMapError(ValueError):
    """The TFLite graph does not have the structure the torch graph predicts (one line)."""


@dataclass(frozen=True)
class LayerSite:
    """Where one torch node lives in a TFLite graph.

    ``output`` is the tensor holding the node's output (for a transposed conv, after the
    depth-to-time RESHAPE); ``history`` the ``[state, block]`` CONCATENATION a stateful conv
    reads (None for stateless layers); ``constants`` the op's constant operands in TFLite
    order (filter, bias for CONV_2D; alpha for PRELU).
    """

    node: str          # fx node name (unique)
    layer: str         # module path for layers, node name for functions ("add_3"), "x" for the input
    kind: str          # input | conv | conv_transpose | prelu | leaky_relu | elu | add
    op: str            # TFLite op that computes it
    output: int
    history: int | None = None
    constants: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()   # ``layer`` of each tensor operand (an add's two branches)
    inputs: tuple[int, ...] = ()    # activation tensors the op reads, in torch argument order (a stateful conv: its history)

    @property
    def label(self) -> str:
        """A readable name: the module path, or ``add_3(down.2 + bottleneck.0.conv2)`` for an add."""
        return f"{self.layer}({' + '.join(self.sources)})" if self.kind == "add" else self.layer


_ACT_OPS = {nn.PReLU: ("prelu", "PRELU"), nn.LeakyReLU: ("leaky_relu", "LEAKY_RELU"), nn.ELU: ("elu", "ELU")}


def builtin_interpreter(model: bytes, preserve: bool = False) -> Any:
    """A LiteRT interpreter on TFLite's builtin kernels (no delegate: every op stays visible)."""
    it = Interpreter(model_content=bytes(model), experimental_preserve_all_tensors=preserve,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def signature_tensors(interpreter: Any) -> tuple[dict[str, int], dict[str, int]]:
    """``({input name: tensor index}, {output name: tensor index})`` of the step signature."""
    run = interpreter.get_signature_runner()
    ins = {k: int(v["index"]) for k, v in run.get_input_details().items()}
    outs = {k: int(v["index"]) for k, v in run.get_output_details().items()}
    return ins, outs


def map_layers(graph: StreamingGraph, tflite_model: bytes | Any) -> list[LayerSite]:
    """Sites of the input and of every layer/add of ``graph`` in ``tflite_model``, in graph order.

    ``tflite_model`` is the ``.tflite`` bytes or an already built LiteRT interpreter.
    """
    it = tflite_model if hasattr(tflite_model, "_get_ops_details") else builtin_interpreter(tflite_model)
    ops = [(str(o["op_name"]), [int(i) for i in o["inputs"]], [int(i) for i in o["outputs"]])
           for o in it._get_ops_details()]
    sig_in, sig_out = signature_tensors(it)
    if "x" not in sig_in or "y" not in sig_out:
        raise LayerMapError(f"the TFLite graph has no x → y step signature (inputs {sorted(sig_in)})")
    slot_of = {s.name: i for i, s in enumerate(graph.slots)}

    def find(what: str, op_name: str, match) -> tuple[int, list[int], list[int]]:
        hits = [(n, ins, outs) for n, (name, ins, outs) in enumerate(ops) if name == op_name and match(ins)]
        if len(hits) != 1:
            raise LayerMapError(f"{what}: expected one {op_name} op reading its input in the TFLite graph, "
                                f"found {len(hits)}")
        return hits[0]

    env: dict[str, int] = {}
    label: dict[str, str] = {}
    sites: list[LayerSite] = []
    first = True
    for node in graph.gm.graph.nodes:
        if node.op == "placeholder":
            if first:
                env[node.name] = sig_in["x"]
                label[node.name] = "x"
                sites.append(LayerSite(node.name, "x", "input", "INPUT", sig_in["x"]))
            first = False
            continue
        if node.op == "output":
            res = node.args[0]
            if not isinstance(res, torch.fx.Node) or env.get(res.name) != sig_out["y"]:
                raise LayerMapError("the graph's last node does not compute the signature output y")
            continue
        args = [env.get(a.name) if isinstance(a, torch.fx.Node) else None for a in node.args]
        if node.op == "call_module":
            mod = graph.gm.get_submodule(node.target)
            src = args[0]
            if src is None:
                raise LayerMapError(f"{node.target}: its input was not found in the TFLite graph")
            history = None
            if isinstance(mod, (CausalConv1d, CausalConvTranspose1d)):
                if mod.context > 0:
                    state = sig_in.get(state_names(slot_of[node.target])[0])
                    # the 16x8 quantiser may requantise the block to the history's scale first
                    fed = {src} | {o[0] for name, i, o in ops if name == "QUANTIZE" and i == [src]}
                    _, _, outs = find(f"{node.target} history", "CONCATENATION",
                                      lambda ins: len(ins) == 2 and ins[0] == state and ins[1] in fed)
                    history = src = outs[0]
                _, ins, outs = find(node.target, "CONV_2D", lambda ins: ins[0] == src)
                out, kind, op = outs[0], "conv", "CONV_2D"
                if isinstance(mod, CausalConvTranspose1d):
                    _, _, r = find(f"{node.target} reshape", "RESHAPE", lambda i: i[0] == out)
                    out, kind = r[0], "conv_transpose"
                sites.append(LayerSite(node.name, node.target, kind, op, out, history, tuple(i for i in ins[1:] if i >= 0),
                                       (label[node.args[0].name],), (ins[0],)))
            elif type(mod) in _ACT_OPS:
                kind, op = _ACT_OPS[type(mod)]
                _, ins, outs = find(node.target, op, lambda ins: ins[0] == src)
                sites.append(LayerSite(node.name, node.target, kind, op, outs[0], None, tuple(ins[1:]),
                                       (label[node.args[0].name],), (ins[0],)))
            else:
                raise LayerMapError(f"{node.target}: no TFLite mapping for layer type {type(mod).__name__}")
            env[node.name] = sites[-1].output
            label[node.name] = node.target
        elif node.op == "call_function" and node.target in (operator.add, torch.add):
            if None in args[:2]:
                raise LayerMapError(f"{node.name}: an operand was not found in the TFLite graph")
            want = sorted(args[:2])
            _, _, outs = find(node.name, "ADD", lambda ins: sorted(ins[:2]) == want)
            srcs = tuple(label[a.name] for a in node.args[:2])
            sites.append(LayerSite(node.name, node.name, "add", "ADD", outs[0], sources=srcs, inputs=tuple(args[:2])))
            env[node.name] = outs[0]
            label[node.name] = node.name
        elif node.op == "call_function" and getattr(node.target, "__name__", "") == "_assert_is_none":
            continue
        else:
            raise LayerMapError(f"graph node {node.op} {node.target} has no TFLite mapping")
    return sites


def tensor_details(interpreter: Any) -> dict[int, dict[str, Any]]:
    """LiteRT's tensor details by tensor index (quantisation, shape, dtype, name)."""
    return {int(d["index"]): d for d in interpreter.get_tensor_details()}


__all__ = ["LayerMapError", "LayerSite", "builtin_interpreter", "map_layers", "signature_tensors", "tensor_details"]
