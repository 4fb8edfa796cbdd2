"""LiteRT (``ai-edge-litert``) backend: runs the bundle's TFLite step graph block by block."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from runtime.backends.base import BackendError, dequantize, quantize
from runtime.native_log import native_chatter


class LiteRTBackend:
    """A TFLite step graph ``(x, state_in_NN...) → (y, state_out_NN...)`` under the LiteRT interpreter.

    ``reference_kernels=True`` runs TFLite's built-in reference kernels without the default
    XNNPACK delegate (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``): the arithmetic the
    C kernel reproduces bit for bit.
    """

    name = "litert"

    def __init__(self, model: bytes | str | os.PathLike, *, num_threads: int = 1, reference_kernels: bool = False) -> None:
        try:
            # lazy: ai-edge-litert is needed only by the litert backend
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as e:  # pragma: no cover - depends on the install
            raise BackendError(f"the litert backend needs ai-edge-litert ({e}); pip install ai-edge-litert") from None
        kwargs = {"num_threads": num_threads}
        if reference_kernels:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            if isinstance(model, (bytes, bytearray)):
                self._interp = Interpreter(model_content=bytes(model), **kwargs)
            else:
                self._interp = Interpreter(model_path=os.fspath(model), **kwargs)
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"LiteRT could not load the model: {str(e).splitlines()[0]}") from None
        # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" from C++ when tensors are
        # allocated (here and in _bind_tensors): kept off the terminal, shown with --verbose.
        with native_chatter("litert"):
            self._run = self._interp.get_signature_runner()
        ins, outs = self._run.get_input_details(), self._run.get_output_details()
        if "x" not in ins or "y" not in outs:
            raise BackendError("the TFLite model has no x → y step signature")
        self._x, self._y = ins["x"], outs["y"]
        self.block = int(np.prod(self._x["shape"]))
        self.state_pairs = sorted((k, k.replace("state_in_", "state_out_")) for k in ins if k.startswith("state_in_"))
        for si, so in self.state_pairs:
            if so not in outs:
                raise BackendError(f"state input {si} has no matching output {so}")
        self._ins, self._outs = ins, outs
        self.integer = np.issubdtype(self._x["dtype"], np.integer)
        with native_chatter("litert"):
            self._bind_tensors()
        self.reset()

    def _bind_tensors(self) -> None:
        """The hot path: tensors addressed by index, state kept in the input tensors themselves.

        The signature runner costs tens of µs of Python per call (dict building, per-tensor
        ``set_tensor``/``get_tensor`` copies). Here each block does one copy in, one ``Invoke``,
        one copy per state (output → input) and one copy out, on numpy views of the
        interpreter's own buffers (``tensor()``), bound once after allocation. The arithmetic
        is the same interpreter's, so results are bit-identical to the signature runner (tested).
        The views are held across invocations, which the public ``invoke()`` refuses (it checks
        that no view exists, because ``allocate_tensors`` could move the buffers); nothing here
        reallocates after binding, so the wrapped C++ ``Invoke`` is called directly. If a LiteRT
        release hides that object, the signature runner is used instead, with the same results.
        """
        it = self._interp
        self._fast = False
        sub = getattr(self._run, "_subgraph_index", 0)
        raw = getattr(it, "_interpreter", None)
        self._xi, self._yi = int(self._x["index"]), int(self._y["index"])
        self._si = [(int(self._ins[si]["index"]), int(self._outs[so]["index"])) for si, so in self.state_pairs]
        self._x_shape = tuple(int(v) for v in self._x["shape"])
        self._x_dtype = np.dtype(self._x["dtype"])
        if sub == 0 and raw is not None and hasattr(raw, "Invoke"):
            try:
                # allocate_tensors() would refuse: the signature runner holds the wrapper too.
                raw.AllocateTensors()
                self._xv = it.tensor(self._xi)()
                self._yv = it.tensor(self._yi)()
                self._sv = [(it.tensor(i)(), it.tensor(o)()) for i, o in self._si]
                self._invoke = raw.Invoke
                self._fast = True
            except (ValueError, RuntimeError, AttributeError):  # pragma: no cover - LiteRT internals moved
                self._xv = self._yv = None
                self._sv = []

    @staticmethod
    def _qp(detail: dict) -> tuple[float, int]:
        scale, zp = detail["quantization"]
        return float(scale), int(zp)

    def reset(self) -> None:
        self._state = {}
        for si, _ in self.state_pairs:
            d = self._ins[si]
            fill = self._qp(d)[1] if np.issubdtype(d["dtype"], np.integer) else 0
            self._state[si] = np.full(d["shape"], fill, dtype=d["dtype"])
        if self._fast:
            for (si, _), (iv, _) in zip(self.state_pairs, self._sv):
                iv[...] = self._state[si]

    def process_raw(self, xq: np.ndarray) -> np.ndarray:
        """One block in the graph's own input dtype (int8 for the int8 graph); returns the raw output."""
        if self._fast:
            self._xv[...] = np.asarray(xq).reshape(self._x_shape)
            self._invoke()
            for iv, ov in self._sv:
                iv[...] = ov
            return self._yv.reshape(-1).copy()
        out = self._run(x=xq.reshape(self._x["shape"]).astype(self._x["dtype"], copy=False), **self._state)
        for si, so in self.state_pairs:
            self._state[si] = out[so]
        return out["y"].reshape(-1)

    def process_signature(self, xq: np.ndarray) -> np.ndarray:
        """:meth:`process_raw` through the signature runner (the slow reference path, for tests)."""
        state = dict(zip((si for si, _ in self.state_pairs), self.get_state()))
        out = self._run(x=np.asarray(xq).reshape(self._x["shape"]).astype(self._x["dtype"], copy=False), **state)
        self.set_state([out[so] for _, so in self.state_pairs])
        return out["y"].reshape(-1)

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.integer:
            s, z = self._qp(self._x)
            y = self.process_raw(quantize(x, s, z, self._x["dtype"]))
            return dequantize(y, *self._qp(self._y))
        return self.process_raw(np.asarray(x, np.float32)).astype(np.float32)

    @property
    def input_quant(self) -> tuple[float, int]:
        return self._qp(self._x)

    @property
    def io_dtype(self) -> np.dtype:
        """The sample type of the graph's audio input and output (int16, int8 or float32)."""
        return self._x_dtype

    @property
    def output_quant(self) -> tuple[float, int]:
        return self._qp(self._y)

    def get_state(self) -> list[np.ndarray]:
        if self._fast:
            return [iv.copy() for iv, _ in self._sv]
        return [self._state[si].copy() for si, _ in self.state_pairs]

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        if len(state) != len(self.state_pairs):
            raise BackendError(f"expected {len(self.state_pairs)} state arrays, got {len(state)}")
        for k, ((si, _), s) in enumerate(zip(self.state_pairs, state)):
            self._state[si] = np.array(s, dtype=self._ins[si]["dtype"]).reshape(self._ins[si]["shape"])
            if self._fast:
                self._sv[k][0][...] = self._state[si]
