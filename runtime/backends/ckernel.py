"""C-kernel backend: the int8 or 16x8 step graph run by ``csrc/`` (built through cffi on first use).

``CKernelBackend(blob)`` takes a blob written by ``toolchain.export.ckernel.tflite_to_blob``
(the bundle's ``kernel/model.hxb``). The C code validates the blob (magic, version, checksum,
every size and offset) and computes what the LiteRT interpreter's built-in kernels compute, bit
for bit. The blob says whether the model streams int8 or int16 samples (:attr:`io_dtype`).

``process`` takes either integer samples of :attr:`io_dtype` (the model's input quantisation,
:attr:`input_quant`) and returns the same type, or float samples that it quantises / dequantises at
the boundary exactly as the LiteRT backend does (the :class:`runtime.backends.base.Backend`
contract the engine uses).
Any multiple of :attr:`block` samples is processed in one C call. The state is the C arena's
state region: :meth:`get_state` returns it as ``bytes`` (an opaque snapshot for this blob).

numpy + cffi only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.backends.base import BackendError, dequantize, quantize
from runtime.backends.ckernel_build import CKernelBuildError, load


class CKernelBackend:
    """One C-kernel model instance over ``blob`` (the backend owns the blob copy and the arena)."""

    name = "ckernel"

    def __init__(self, blob: bytes, *, arch: str | None = None) -> None:
        try:
            mod = load(arch)
        except CKernelBuildError as e:
            raise BackendError(str(e)) from None
        self._ffi, self._lib = mod.ffi, mod.lib
        ffi, lib = self._ffi, self._lib
        self.arch = ffi.string(lib.hx_arch()).decode()
        self._blob = ffi.new("uint8_t[]", bytes(blob))  # C-owned copy: lives as long as the model
        n = len(blob)
        size = ffi.new("size_t *")
        self._check(lib.hx_model_state_size(self._blob, n, size), "blob rejected")
        self.arena_bytes = int(size[0])
        self._arena = ffi.new("uint8_t[]", max(self.arena_bytes, 1))
        self._model = ffi.new("hx_model *")
        self._check(lib.hx_model_init(self._model, self._blob, n, self._arena, self.arena_bytes), "init failed")
        self.block = int(lib.hx_model_block(self._model))
        q = ffi.new("hx_quant *")
        self._check(lib.hx_model_input_quant(self._model, q), "input quant")
        self.input_quant: tuple[float, int] = (float(q.scale), int(q.zero_point))
        self._check(lib.hx_model_output_quant(self._model, q), "output quant")
        self.output_quant: tuple[float, int] = (float(q.scale), int(q.zero_point))
        self.state_bytes = int(lib.hx_model_state_bytes(self._model))
        bits = int(lib.hx_model_act_bits(self._model))
        self._io = np.dtype(np.int16 if bits == lib.HX_ACT_S16 else np.int8)
        self._ctype = "int16_t[]" if bits == lib.HX_ACT_S16 else "int8_t[]"
        self._process = lib.hx_model_process_s16 if bits == lib.HX_ACT_S16 else lib.hx_model_process

    @property
    def io_dtype(self) -> np.dtype:
        """The sample type of the model's input and output: int8, or int16 for a 16x8 blob."""
        return self._io

    def _check(self, status: int, what: str) -> None:
        if status != self._lib.HX_OK:
            name = self._ffi.string(self._lib.hx_status_str(status)).decode()
            raise BackendError(f"C kernel: {what}: {name}")

    def process_raw(self, x_q: np.ndarray) -> np.ndarray:
        """:attr:`io_dtype` samples (a multiple of :attr:`block`) → the same type; advances the state."""
        x = np.ascontiguousarray(np.asarray(x_q).reshape(-1))
        if x.dtype != self._io:
            raise BackendError(f"process_raw expects {self._io} samples, got {x.dtype}")
        if x.size % self.block:
            raise BackendError(f"{x.size} samples is not a multiple of the block ({self.block})")
        y = np.empty_like(x)
        ffi = self._ffi
        self._check(self._process(self._model, ffi.from_buffer(self._ctype, x),
                                  ffi.from_buffer(self._ctype, y, require_writable=True), x.size), "process")
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        """:attr:`io_dtype` in → the same out (raw), or float in → float32 out (quantised at the boundary)."""
        a = np.asarray(x)
        if a.dtype == self._io:
            return self.process_raw(a)
        if not np.issubdtype(a.dtype, np.floating):
            raise BackendError(f"process expects {self._io} or float samples, got {a.dtype}")
        yq = self.process_raw(quantize(a.reshape(-1), *self.input_quant, self._io.type))
        return dequantize(yq, *self.output_quant)

    def reset(self) -> None:
        self._check(self._lib.hx_model_reset(self._model), "reset")

    def get_state(self) -> bytes:
        buf = self._ffi.new("uint8_t[]", max(self.state_bytes, 1))
        self._check(self._lib.hx_model_get_state(self._model, buf, self.state_bytes), "get_state")
        return bytes(self._ffi.buffer(buf, self.state_bytes))

    def set_state(self, state: Any) -> None:
        data = bytes(np.asarray(state, dtype=np.uint8).tobytes() if isinstance(state, np.ndarray) else state)
        if len(data) != self.state_bytes:
            raise BackendError(f"state snapshot is {len(data)} bytes; this model's is {self.state_bytes}")
        self._check(self._lib.hx_model_set_state(self._model, data, len(data)), "set_state")


__all__ = ["CKernelBackend"]
