"""Backends that run a bundle's step graph, chosen by name."""

from __future__ import annotations

from typing import Any

from runtime.backends.base import Backend, BackendError
from runtime.backends.ckernel import CKernelBackend
from runtime.backends.litert import LiteRTBackend
from runtime.backends.onnx import OnnxBackend

BACKENDS = ("litert", "ckernel", "onnx", "litert-fp32", "litert-int8")


def open_backend(bundle: Any, name: str = "litert", *, num_threads: int = 1) -> Backend:
    """A backend for ``bundle`` (a :class:`runtime.bundle.Bundle`): litert (the bundle's default
    device graph, ``manifest.default_graph``: int16x8 or int8), litert-int8 (the full-integer
    graph), litert-fp32, ckernel (the C kernel through cffi) or onnx (fp32, onnxruntime)."""
    m = bundle.manifest
    if name == "litert":

        return LiteRTBackend(bundle.graph_file(m.default_graph), num_threads=num_threads)
    if name == "litert-int8":

        return LiteRTBackend(bundle.graph_file("int8"), num_threads=num_threads)
    if name == "litert-fp32":

        return LiteRTBackend(bundle.graph_file("fp32"), num_threads=num_threads)
    if name == "onnx":

        return OnnxBackend(bundle.graph_file("onnx"), num_threads=num_threads)
    if name == "ckernel":
        if "kernel/model.hxb" not in m.files:
            raise BackendError(f"{bundle.path}: this bundle has no C kernel blob (kernel/model.hxb)")

        return CKernelBackend(bundle.file("kernel/model.hxb").read_bytes())
    raise BackendError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "BackendError", "open_backend"]
