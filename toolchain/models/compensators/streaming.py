"""Causal layers with explicit streaming state, and a step runner built from the model's own graph.

The state contract every exporter and backend keeps is in docs/ARCHITECTURE.md ("Streaming-state contract").

Every deployed model is defined once, as an ordinary torch module whose offline ``forward``
is causal. Streaming layers (the leaves here) know two things more: how much past input they
need (their state), and how to compute one block given that state. :class:`StreamingGraph`
traces the model's ``forward`` with ``torch.fx`` (leaves kept whole) and replays it block by
block, calling each leaf's ``step`` with its own state. The exporters walk the same traced
graph, so the topology is written in exactly one place: the model's ``forward``.

Causal padding maths follows the usual rule for strided causal convolutions (as in
audiocraft's ``modules/conv.py``): a conv with effective kernel ``Ke`` and stride ``s`` pads
``Ke - s`` zeros on the left, so that every input length that is a multiple of ``s`` gives
exactly ``L / s`` outputs and streaming over blocks equals the offline forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn


class StreamingLeaf(nn.Module):
    """A layer whose streaming state is the last ``context`` input frames (NCW: ``(B, C_in, context)``)."""

    in_channels: int

    @property
    def context(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def stride_in(self) -> int:
        """Input frames consumed per output frame (1 for upsampling layers)."""
        return 1

    def init_state(self, batch: int, dtype: torch.dtype = torch.float32, device: Any = None) -> Tensor:
        return torch.zeros(batch, self.in_channels, self.context, dtype=dtype, device=device)

    def step(self, x: Tensor, state: Tensor, *extra: Any) -> tuple[Tensor, Tensor]:
        """One block: ``y, state' = step(x, state)``; ``x`` is ``(B, C_in, L)``, ``L`` a multiple of the stride."""
        full = torch.cat([state, x], dim=-1)
        y = self._valid(full, *extra)
        new_state = full[..., full.shape[-1] - self.context:] if self.context else state
        return y, new_state

    def _valid(self, full: Tensor, *extra: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor, *extra: Any) -> Tensor:
        """Offline causal forward: zero history, same maths as :meth:`step` over one long block."""
        return self._valid(F.pad(x, (self.context, 0)), *extra)


class CausalConv1d(StreamingLeaf):
    """Causal (optionally strided) Conv1d with optional FiLM conditioning on its output.

    FiLM (feature-wise affine ``y * (1 + gamma) + beta`` per channel) takes its slice
    ``film[:, offset : offset + 2 * out_channels]`` of the conditioning vector. A fitted device
    folds gamma/beta into the weights (:meth:`fold_film`) so the deployed graph has no
    conditioning input.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, bias: bool = True, film_offset: int | None = None) -> None:
        super().__init__()
        effective = dilation * (kernel_size - 1) + 1
        if effective < stride:
            raise ValueError(f"kernel {kernel_size} (dilation {dilation}) shorter than stride {stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias)
        self._context = effective - stride
        self.film_offset = film_offset

    @property
    def context(self) -> int:
        return self._context

    @property
    def stride_in(self) -> int:
        return self.conv.stride[0]

    @property
    def film_dims(self) -> int:
        return 0 if self.film_offset is None else 2 * self.out_channels

    def _valid(self, full: Tensor, film: Tensor | None = None) -> Tensor:
        y = self.conv(full)
        if film is not None and self.film_offset is not None:
            o, c = self.film_offset, self.out_channels
            gamma, beta = film[:, o:o + c, None], film[:, o + c:o + 2 * c, None]
            y = y * (1.0 + gamma) + beta
        return y

    @torch.no_grad()
    def fold_film(self, film: Tensor) -> None:
        """Bake a single conditioning vector ``film`` (shape ``(1, D)``) into weight and bias."""
        if self.film_offset is None:
            return
        o, c = self.film_offset, self.out_channels
        gamma, beta = 1.0 + film[0, o:o + c], film[0, o + c:o + 2 * c]
        self.conv.weight.mul_(gamma[:, None, None])
        if self.conv.bias is None:
            self.conv.bias = nn.Parameter(torch.zeros(c, dtype=film.dtype))
        self.conv.bias.mul_(gamma).add_(beta)
        self.film_offset = None


class CausalConvTranspose1d(StreamingLeaf):
    """Causal transposed conv (upsampling by ``stride``), kernel ``taps * stride``.

    The trailing ``kernel - stride`` outputs of a full transposed conv belong to the future and
    are trimmed. Equivalently (and this is how it streams and how the int8 graphs compute it)
    it is a causal ``taps``-tap conv to ``stride * out_channels`` channels followed by a
    depth-to-time reshape: output sample ``t * stride + r`` of channel ``c`` is channel
    ``r * out_channels + c`` of frame ``t``. State: the last ``taps - 1`` input frames.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, taps: int = 2, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride, self.taps = in_channels, out_channels, stride, taps
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, taps * stride, stride=stride, bias=bias)

    @property
    def context(self) -> int:
        return self.taps - 1

    def equivalent_conv(self) -> tuple[Tensor, Tensor | None]:
        """Weights ``(stride * C_out, C_in, taps)`` and bias of the equivalent conv before the reshape."""
        w = self.convtr.weight  # (C_in, C_out, taps * stride), index k = r + j * stride
        c_in, c_out, s, m = self.in_channels, self.out_channels, self.stride, self.taps
        w = w.reshape(c_in, c_out, m, s)                 # [ci, co, j, r]
        w = w.flip(2)                                     # tap i = m - 1 - j (cross-correlation order)
        w = w.permute(3, 1, 0, 2).reshape(s * c_out, c_in, m)  # out channel = r * C_out + co
        b = None if self.convtr.bias is None else self.convtr.bias.repeat(s)
        return w, b

    def _valid(self, full: Tensor) -> Tensor:
        w, b = self.equivalent_conv()
        y = F.conv1d(full, w, b)                          # (B, s * C_out, L)
        bsz, _, frames = y.shape
        y = y.reshape(bsz, self.stride, self.out_channels, frames)
        return y.permute(0, 2, 3, 1).reshape(bsz, self.out_channels, frames * self.stride)

    def forward(self, x: Tensor) -> Tensor:
        """Offline reference through ``nn.ConvTranspose1d`` itself (an independent route to :meth:`step`)."""
        return self.convtr(x)[..., : x.shape[-1] * self.stride]


class _LeafTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, StreamingLeaf) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, concrete_args: dict[str, Any] | None = None) -> torch.fx.GraphModule:
    """Trace ``model.forward`` keeping streaming leaves (and torch's own layers) whole."""
    tracer = _LeafTracer()
    graph = tracer.trace(model, concrete_args=concrete_args)
    return torch.fx.GraphModule(model, graph)


@dataclass(frozen=True)
class StateSlot:
    """One leaf's streaming state: the module path and NCW shape for batch 1."""

    name: str
    channels: int
    frames: int


class StreamingGraph:
    """Block-by-block execution of a causal model with explicit state tensors.

    ``y, states' = graph.step(x, states)``: no hidden state lives in the modules, so a caller
    can snapshot, restore or export the state as plain tensors.
    """

    def __init__(self, model: nn.Module, concrete_args: dict[str, Any] | None = None) -> None:
        self.model = model
        self.gm = trace(model, concrete_args)
        self.slots: list[StateSlot] = []
        for node in self.gm.graph.nodes:
            if node.op == "call_module":
                leaf = self.gm.get_submodule(node.target)
                if isinstance(leaf, StreamingLeaf) and leaf.context > 0:
                    self.slots.append(StateSlot(node.target, leaf.in_channels, leaf.context))

    def init_state(self, batch: int = 1, dtype: torch.dtype = torch.float32, device: Any = None) -> list[Tensor]:
        return [torch.zeros(batch, s.channels, s.frames, dtype=dtype, device=device) for s in self.slots]

    @torch.no_grad()
    def states_at(self, x: Tensor, block: int, starts: list[int] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Blocks of ``x`` and the streaming state at their starts, from ONE offline forward.

        ``x`` is ``(1, 1, n)``. Returns ``(blocks (K, 1, block), [state (K, C, frames) per slot])``
        for block indices ``starts`` (default: all). Equal to what streaming would hold there
        (tested), but vectorised: calibration needs thousands of states and streaming them one
        block at a time through Python costs minutes.
        """
        n = x.shape[-1]
        if x.shape[0] != 1 or n % block:
            raise ValueError(f"x must be (1, 1, n) with n a multiple of {block}")
        starts = list(range(n // block)) if starts is None else list(starts)
        captured: dict[str, Tensor] = {}
        hooks = [self.gm.get_submodule(s.name).register_forward_hook(
            lambda mod, inp, out, name=s.name: captured.__setitem__(name, inp[0])) for s in self.slots]
        try:
            self.gm(x)
        finally:
            for h in hooks:
                h.remove()
        idx = torch.as_tensor(starts, dtype=torch.long) * block
        blocks = x[0, 0].unfold(0, block, block)[torch.as_tensor(starts)].unsqueeze(1)
        states = []
        for s in self.slots:
            inp = captured[s.name][0]                       # (C, L_leaf)
            frames_before = idx * inp.shape[-1] // n        # leaf frames before each block start
            padded = F.pad(inp, (s.frames, 0))
            gather = frames_before[:, None] + torch.arange(s.frames)[None, :]   # (K, frames)
            states.append(padded[:, gather].permute(1, 0, 2).contiguous())    # (K, C, frames)
        return blocks, states

    def step(self, x: Tensor, states: list[Tensor], *args: Any) -> tuple[Tensor, list[Tensor]]:
        if len(states) != len(self.slots):
            raise ValueError(f"expected {len(self.slots)} state tensors, got {len(states)}")
        runner = StepInterpreter(self.gm, {s.name: st for s, st in zip(self.slots, states)})
        y = runner.run(x, *args)
        return y, [runner.new_states[s.name] for s in self.slots]


class StepInterpreter(torch.fx.Interpreter):
    """Runs each streaming leaf's ``step`` with its own state (``states`` by leaf name; a leaf
    without one is stateless); everything else as traced. ``new_states`` holds the states after."""

    def __init__(self, gm: torch.fx.GraphModule, states: dict[str, Tensor]) -> None:
        super().__init__(gm)
        self.states = states
        self.new_states: dict[str, Tensor] = {}

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        mod = self.fetch_attr(target)
        if isinstance(mod, StreamingLeaf):
            if target not in self.states:  # stateless leaf (context 0)
                return mod.step(args[0], mod.init_state(args[0].shape[0], args[0].dtype, args[0].device), *args[1:])[0]
            y, self.new_states[target] = mod.step(args[0], self.states[target], *args[1:], **kwargs)
            return y
        return super().call_module(target, args, kwargs)


def state_names(i: int) -> tuple[str, str]:
    """Names of the i-th state input/output pair in every exported step graph (TFLite, ONNX)."""
    return f"state_in_{i:02d}", f"state_out_{i:02d}"
