"""onnxruntime backend (optional on a board): the bundle's fp32 ONNX step graph."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from runtime.backends.base import BackendError


class OnnxBackend:
    """fp32 step graph ``(x, state_in_NN...) → (y, state_out_NN...)`` in NCW layout."""

    name = "onnx"

    def __init__(self, model: bytes | str | os.PathLike, *, num_threads: int = 1) -> None:
        try:
            # lazy: onnxruntime is optional on a board
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - optional dependency
            raise BackendError(f"the onnx backend needs onnxruntime ({e}); pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        src = bytes(model) if isinstance(model, (bytes, bytearray)) else os.fspath(model)
        try:
            self._sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime could not load the model: {str(e).splitlines()[0]}") from None
        ins = {i.name: i for i in self._sess.get_inputs()}
        if "x" not in ins:
            raise BackendError("the ONNX model has no input x")
        self.block = int(np.prod(ins["x"].shape))
        self._x_shape = tuple(ins["x"].shape)
        self._state_names = sorted(n for n in ins if n.startswith("state_in_"))
        self._state_shapes = [tuple(ins[n].shape) for n in self._state_names]
        self._outputs = ["y", *[n.replace("state_in_", "state_out_") for n in self._state_names]]
        self.reset()

    def reset(self) -> None:
        self._state = [np.zeros(s, np.float32) for s in self._state_shapes]

    def process(self, x: np.ndarray) -> np.ndarray:
        feed = {"x": np.asarray(x, np.float32).reshape(self._x_shape)}
        feed.update(zip(self._state_names, self._state))
        y, *self._state = self._sess.run(self._outputs, feed)
        return y.reshape(-1)

    def get_state(self) -> list[np.ndarray]:
        return [s.copy() for s in self._state]

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        if len(state) != len(self._state):
            raise BackendError(f"expected {len(self._state)} state arrays, got {len(state)}")
        self._state = [np.asarray(s, np.float32).reshape(sh) for s, sh in zip(state, self._state_shapes)]
