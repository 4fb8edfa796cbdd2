"""One way to load any compensator checkpoint: :func:`load_compensator` dispatches on its kind.

A checkpoint is a ``torch.save`` dict. Its kind is the ``"kind"`` key when present; checkpoints
without one (every :func:`~toolchain.models.compensators.seanet.save_seanet` file so far) are recognised by
each registered kind's ``detect``. A kind registers how to build the model from the payload and
how to read its sample rate and the input lengths it accepts.

The contract every kind's model keeps (what :class:`Compensator` relies on): it is an
audiogram-conditioned ``torch.nn.Module`` whose ``fit(thresholds_db_hl)`` returns a fitted copy
(audiogram folded in) whose ``forward`` maps ``(batch, 1, n)`` float32 waveforms to
``(batch, 1, n)`` for ``n`` a multiple of ``block_multiple``. A new kind (e.g. ``stftnet``) calls
:func:`register_compensator` at import of its module and is listed in :data:`_BUILTIN_MODULES`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from toolchain.models.compensators.seanet import SEANetConfig, seanet_from_checkpoint


class CompensatorError(ValueError):
    """A checkpoint that cannot be loaded as a compensator; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class CompensatorKind:
    """How to load one model class from a checkpoint payload."""

    name: str
    build: Callable[[Mapping[str, Any]], Any]            # payload → eval-mode module with fit()
    sample_rate: Callable[[Any], int]
    block_multiple: Callable[[Any], int]                  # input lengths must be multiples of this
    detect: Callable[[Mapping[str, Any]], bool] | None = None  # recognises payloads without "kind"


_KINDS: dict[str, CompensatorKind] = {}
# Modules that register a kind when imported (imported lazily: each pulls in torch).
_BUILTIN_MODULES: tuple[str, ...] = ("toolchain.models.compensators.stftnet",)


def register_compensator(kind: CompensatorKind) -> None:
    """Make ``kind`` loadable by :func:`load_compensator` (a second registration replaces the first)."""
    _KINDS[kind.name] = kind


def compensator_kinds() -> tuple[str, ...]:
    """Names of the registered kinds."""
    _ensure_builtins()
    return tuple(sorted(_KINDS))


@dataclass(frozen=True, eq=False)
class Compensator:
    """A loaded checkpoint: the (unfitted) model and what the evaluator needs to run it."""

    kind: str
    path: Path
    model: Any
    sample_rate: int
    block_multiple: int
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> int:
        """All parameters of the checkpoint's model (audiogram encoder included)."""
        return int(sum(p.numel() for p in self.model.parameters()))

    def fitted(self, thresholds_db_hl: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """An fp32 offline runner for the audiogram: 1-D float32 signal → output of the same length."""
        # lazy: torch takes seconds to import; only this path needs it
        import torch

        fitted = self.model.fit(np.asarray(thresholds_db_hl, np.float32)).eval()
        m = int(self.block_multiple)

        def run(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, np.float32).reshape(-1)
            n = len(x)
            # Zero padding at the end only: the model is causal, so it cannot change the first n outputs.
            padded = np.zeros(-(-n // m) * m, np.float32)
            padded[:n] = x
            with torch.no_grad():
                y = fitted(torch.from_numpy(padded).reshape(1, 1, -1))
            return y.reshape(-1)[:n].numpy().astype(np.float32)

        return run


def _ensure_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def _first_line(e: BaseException) -> str:
    text = str(e).splitlines()[0][:120] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_compensator(path: str | os.PathLike[str]) -> Compensator:
    """Load a compensator checkpoint of any registered kind; raises :class:`CompensatorError`."""
    p = Path(path)
    if not p.is_file():
        raise CompensatorError(f"{p}: model checkpoint not found" if not p.is_dir() else f"{p}: is a directory, not a checkpoint")
    # lazy: torch takes seconds to import; only this path needs it
    import torch

    try:
        payload = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CompensatorError(f"{p}: not a model checkpoint ({_first_line(e)})") from None
    if not isinstance(payload, Mapping):
        raise CompensatorError(f"{p}: not a model checkpoint (holds a {type(payload).__name__}, not a dict)")
    _ensure_builtins()
    name = payload.get("kind")
    if name is None:
        found = [k.name for k in _KINDS.values() if k.detect is not None and k.detect(payload)]
        if len(found) != 1:
            why = "no registered kind recognises it" if not found else f"it looks like each of {', '.join(found)}"
            raise CompensatorError(f"{p}: checkpoint has no 'kind' and {why} (kinds: {', '.join(sorted(_KINDS))})")
        name = found[0]
    if name not in _KINDS:
        raise CompensatorError(f"{p}: unknown compensator kind {name!r}; registered: {', '.join(sorted(_KINDS))}")
    kind = _KINDS[name]
    try:
        model = kind.build(payload)
    except Exception as e:  # a config or state dict that does not fit the architecture
        raise CompensatorError(f"{p}: not a valid {name} checkpoint ({_first_line(e)})") from None
    config = payload.get("config")
    extra = payload.get("extra")
    return Compensator(kind=name, path=p, model=model, sample_rate=int(kind.sample_rate(model)),
                       block_multiple=int(kind.block_multiple(model)),
                       config=dict(config) if isinstance(config, Mapping) else {},
                       extra=dict(extra) if isinstance(extra, Mapping) else {})


# ------------------------------------------------------------------------------ seanet
def _seanet_detect(payload: Mapping[str, Any]) -> bool:
    cfg = payload.get("config")
    return (isinstance(cfg, Mapping) and isinstance(payload.get("state_dict"), Mapping)
            and set(cfg) <= set(SEANetConfig.__dataclass_fields__))


def _seanet_build(payload: Mapping[str, Any]) -> Any:
    return seanet_from_checkpoint(dict(payload))


register_compensator(CompensatorKind(
    name="seanet", build=_seanet_build, detect=_seanet_detect,
    sample_rate=lambda m: m.config.sample_rate, block_multiple=lambda m: m.config.total_stride))


__all__ = ["Compensator", "CompensatorError", "CompensatorKind", "compensator_kinds", "load_compensator",
           "register_compensator"]
