"""Per-process cache of what an export does not owe to the audiogram.

A fleet (``toolchain fleet``) sends many patients through one worker process, each through
:func:`toolchain.export.pipeline.export_bundle`. The model checkpoint, the synthetic calibration
and test speech and the Keras step graph's structure (with its traced ``tf.function``) are the
same for every patient; only the folded FiLM terms, the prescription filter, and so every weight
and scale, change. This module keeps the former for the life of the process, keyed by everything
that produced them, and hands out fresh copies where a caller could change them. A single
``toolchain export`` goes through the same calls (cold), so its bundle is byte-for-byte the one a
warm fleet worker writes for the same audiogram (tests/toolchain/test_fleet.py checks it).

It also pins torch to one intra-op thread for an export (:func:`torch_threads`): the float
results of torch's convolutions depend on the thread count in their last bit, and so the int8
scales calibrated from them; one thread makes a bundle's bytes independent of the exporting
machine's core count and of how many fleet workers share it (six 2 s clips through the fitted
graph took 0.35 s on one thread and 5.6-10.7 s on two, on this project's shared 2-core host).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, TypeVar

import numpy as np
import torch

from toolchain.export import tflite
from toolchain.models.compensators.streaming import StreamingGraph

T = TypeVar("T")

#: Entries kept per cache: a fleet uses one model, two corpus splits and one step graph.
MAX_ENTRIES = 4

_corpora: OrderedDict[Hashable, np.ndarray] = OrderedDict()
_models: OrderedDict[Hashable, Any] = OrderedDict()
_keras_steps: OrderedDict[Hashable, tuple[Any, Callable[..., Any]]] = OrderedDict()
_stats = {"hits": 0, "misses": 0}


def _lookup(cache: OrderedDict[Hashable, T], key: Hashable, make: Callable[[], T]) -> T:
    """``cache[key]``, made on a miss; least recently used entries beyond MAX_ENTRIES dropped."""
    if key in cache:
        cache.move_to_end(key)
        _stats["hits"] += 1
        return cache[key]
    _stats["misses"] += 1
    value = make()
    cache[key] = value
    while len(cache) > MAX_ENTRIES:
        _, old = cache.popitem(last=False)
        if isinstance(old, tuple) and hasattr(old[0], "close"):  # a SavedStep's directory
            old[0].close()
    return value


def clear() -> None:
    """Forget everything (tests use it to compare a cold export with a warm one)."""
    _corpora.clear()
    _models.clear()
    _remove_saved_steps()
    _keras_steps.clear()
    _stats.update(hits=0, misses=0)


def stats() -> dict[str, int]:
    """Hits and misses since the last :func:`clear` (over all caches)."""
    return dict(_stats)


def corpus(key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
    """A corpus batch (``make()``'s float32 array) for ``key``: every parameter that produced it.

    Returns a copy: callers may hand it to torch, which must not alias the cached array.
    """
    return _lookup(_corpora, key, make).copy()


def model(checkpoint: Path, load: Callable[[Path], T]) -> T:
    """``load(checkpoint)``, once per file version (path, size, modification time).

    The model is returned as loaded, not copied: the export only reads it (``fit`` deep-copies).
    """
    p = Path(checkpoint)
    try:
        st = p.stat()
        key: Hashable = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return load(p)  # the loader reports the missing or unreadable file in one line
    return _lookup(_models, key, lambda: load(p))


def topology_key(graph: StreamingGraph, block: int) -> str:
    """What fixes the Keras step graph's structure: the traced node list, every module's
    configuration (kernel, stride, dilation, slopes), every parameter's shape, and the block."""
    h = hashlib.sha256()
    h.update(str(block).encode())
    h.update(str(graph.gm.graph).encode())
    h.update(repr(graph.gm).encode())
    for name, p in graph.gm.named_parameters():
        h.update(f"{name}:{tuple(p.shape)};".encode())
    for s in graph.slots:
        h.update(f"{s.name}:{s.channels}x{s.frames};".encode())
    return h.hexdigest()


def keras_step(graph: StreamingGraph, block: int) -> tuple[Any, Callable[..., Any]]:
    """The Keras step graph of a fitted ``graph`` as a :class:`toolchain.export.tflite.SavedStep`
    (what ``tflite.convert`` takes; ``.model`` is the Keras model) and its compiled step function.

    Built, traced and exported once per topology; a later graph of the same topology gets its
    weights loaded into the same model (:func:`toolchain.export.tflite.set_step_weights`) and
    written into the same SavedModel's variables.
    """
    # TensorFlow takes ~10 s to import: only the export's Keras stage pays it (as pipeline does).

    key = topology_key(graph, block)
    hit = key in _keras_steps

    def build() -> tuple[Any, Callable[..., Any]]:
        km = tflite.build_keras_step(graph, block)
        _sweep_stale_steps()
        saved = tflite.SavedStep(km, tempfile.mkdtemp(prefix=f"{_STEP_PREFIX}{os.getpid()}-"))
        return saved, tflite.compile_keras_step(km)

    saved, step = _lookup(_keras_steps, key, build)
    if hit:
        tflite.set_step_weights(saved.model, graph)
        saved.refresh()
    return saved, step


_STEP_PREFIX = "hx-step-"


def _sweep_stale_steps() -> None:
    """Remove SavedModel folders of processes that are gone: a Ray worker is killed at shutdown,
    so its atexit clean-up never runs. Folder names carry the owner's pid."""
    for d in Path(tempfile.gettempdir()).glob(f"{_STEP_PREFIX}*-*"):
        try:
            os.kill(int(d.name[len(_STEP_PREFIX):].split("-", 1)[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, OSError):  # not ours, or a live process of another user
            continue


@atexit.register
def _remove_saved_steps() -> None:
    for saved, _ in _keras_steps.values():
        saved.close()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pin_worker_threads() -> None:
    """One intra-op thread for torch and TensorFlow in a process that runs one export at a time
    beside others (a fleet worker holds one CPU). Call before TensorFlow runs anything: its
    thread pools are fixed at first use."""
    torch.set_num_threads(1)
    # TensorFlow: as above, imported only where an export will need it anyway.

    tflite.pin_threads(1)
