"""The torch reference backend: the float model, fitted and stepped as the bundle was exported.

``TorchBackend(bundle)`` loads the checkpoint the manifest names (``extra.checkpoint``, looked
up beside the bundle and in ``toolchain/assets/``) or a given path, checks that its
configuration is the one the bundle was exported from, fits it to the bundle's audiogram (FiLM
folded into the weights, exactly as export does) and steps its :class:`StreamingGraph` one block
at a time with explicit state. It implements :class:`runtime.backends.base.Backend`, so the
runtime engine, ``toolchain run --backend torch`` and ``toolchain bench`` drive it like any
other backend. Host only: this is the toolchain side (torch), never imported by ``runtime/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from runtime.backends.base import BackendError
from toolchain.models.compensators.seanet import load_seanet

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def find_checkpoint(bundle: Any, checkpoint: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint for ``bundle``: ``checkpoint`` if given, else the manifest's name, looked up
    next to the bundle, inside it, and among the shipped assets."""
    if checkpoint is not None:
        p = Path(checkpoint)
        if not p.is_file():
            raise BackendError(f"{p}: model checkpoint not found")
        return p
    name = bundle.manifest.extra.get("checkpoint")
    if not isinstance(name, str) or not name:
        raise BackendError(f"{bundle.path}: the manifest names no checkpoint (extra.checkpoint); pass --checkpoint")
    for cand in (bundle.path / name, bundle.path.parent / name, ASSETS / name, Path(name)):
        if cand.is_file():
            return cand
    raise BackendError(f"the torch backend needs the checkpoint {name!r} the bundle was exported from "
                       f"(not beside the bundle nor in {ASSETS}); pass --checkpoint FILE")


class TorchBackend:
    """fp32 torch step graph of the bundle's model (the reference every exported graph is checked against)."""

    name = "torch"

    def __init__(self, bundle: Any, checkpoint: str | os.PathLike[str] | None = None, *, num_threads: int = 1) -> None:
        m = bundle.manifest
        path = find_checkpoint(bundle, checkpoint)
        try:
            model = load_seanet(str(path))
        except Exception as e:  # torch raises many types for a bad file
            raise BackendError(f"{path}: not a compensator checkpoint ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
        want = m.extra.get("model_config")
        if isinstance(want, dict) and model.config.to_dict() != want:
            raise BackendError(f"{path}: its model configuration differs from the one {bundle.path} was exported from")
        if model.config.sample_rate != m.sample_rate:
            raise BackendError(f"{path}: model runs at {model.config.sample_rate} Hz, the bundle at {m.sample_rate} Hz")
        try:
            model.check_block(m.block)
        except ValueError as e:
            raise BackendError(str(e)) from None
        if not m.audiogram:
            raise BackendError(f"{bundle.path}: the manifest has no audiogram to fit the model to")
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.checkpoint = path
        self.fitted = model.fit(np.asarray(m.audiogram["thresholds_db_hl"], np.float32))
        self.graph = self.fitted.streaming()
        self.block = int(m.block)
        self._shapes = [(1, s.channels, s.frames) for s in self.graph.slots]
        self.reset()

    def reset(self) -> None:
        self._state = self.graph.init_state(1)

    @torch.inference_mode()
    def process(self, x: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(x, np.float32).reshape(-1))
        if a.size != self.block:
            raise BackendError(f"expected {self.block} samples, got {a.size}")
        y, self._state = self.graph.step(torch.from_numpy(a).reshape(1, 1, -1), self._state)
        return y.reshape(-1).numpy().astype(np.float32, copy=True)

    def get_state(self) -> list[np.ndarray]:
        return [s.detach().numpy().copy() for s in self._state]

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        if len(state) != len(self._shapes):
            raise BackendError(f"expected {len(self._shapes)} state arrays, got {len(state)}")
        new = []
        for s, shape in zip(state, self._shapes):
            a = np.array(s, np.float32)
            if a.size != int(np.prod(shape)):
                raise BackendError(f"state array of {a.size} values does not fit shape {shape}")
            new.append(torch.from_numpy(a.reshape(shape)))
        self._state = new


__all__ = ["TorchBackend", "find_checkpoint"]
