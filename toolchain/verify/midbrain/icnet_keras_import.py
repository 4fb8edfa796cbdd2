"""Load ICNet's released Keras weights (HDF5 + config.yaml) into :class:`toolchain.verify.midbrain.icnet.ICNet`.

No TensorFlow: the file is read with h5py. Two layouts are understood:

* the legacy whole-model file that ``model.save("x.h5")`` writes, which is how ICNet ships
  (``DNN/model_weights.hdf5``): root attribute ``model_config`` (the functional graph as JSON),
  ``model_weights/<layer>`` groups with a ``weight_names`` attribute and datasets at
  ``model_weights/<layer>/<weight name>`` (``.../kernel:0`` under Keras 2, ``.../kernel`` under
  Keras 3);
* the Keras 3 weights file that ``model.save_weights("x.weights.h5")`` writes:
  ``layers/<object path>/vars/<i>`` with no variable names and no graph.

Variables are recognised by role (SincNet ``filt_b1``/``filt_band``, conv ``kernel``/``bias``,
PReLU ``alpha``) from their names where the file has them, otherwise from their shapes, and
assembled by shape into the seed-001 architecture: the encoder convs in graph order (their
shapes chain 48 → 128 … → 64), each animal's time branch paired with the decoder it feeds
(traced through the graph when the file has one, otherwise by order). A standalone PReLU layer
is attached to the conv feeding it (graph) or to the i-th conv without its own alpha (order).

``config.yaml`` (the released ``DNN/config.yaml``: ``context_size``, ``fs_audio``, ``fs_MUA``,
``ds_factor``, ``p0``, ``audio_normalisation``, ``time_normalisation``, ``decoder_channels``,
``n_decoders``, ``bottleneck_channels``, ``n_classes``) is checked against the architecture;
anything that does not fit raises :class:`ICNetImportError` with a one-line message naming the
file and the field.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.atomic import atomic_write
from toolchain.verify.midbrain.icnet import (
    BOTTLENECK_CHANNELS,
    CONTEXT_SAMPLES,
    DECIMATION,
    DECODER_UNITS,
    FS_AUDIO,
    FS_MUA,
    ICNET_RMS_AT_94_DB_SPL,
    N_BRANCHES,
    N_CLASSES_CATEGORICAL,
    N_CLASSES_POISSON,
    TIME_NORMALISATION,
    ICNet,
    ICNetConfig,
)

CONFIG_NAME = "config.yaml"
#: Reference pressure of the released config (``p0: 0.00002``, 20 µPa).
P0_PA = 2e-5


class ICNetImportError(ValueError):
    """A weights or config file that is missing, malformed or not ICNet's; ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# ------------------------------------------------------------------------- config.yaml
def _yaml_scalar(text: str) -> Any:
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    low = s.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("null", "~", ""):
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def read_config_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse the flat ``key: value  # comment`` YAML of ICNet's config (no PyYAML needed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ICNetImportError(f"{p}: ICNet config not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ICNetImportError(f"{p}: cannot read the ICNet config ({e})") from None
    out: dict[str, Any] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0]
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if raw[:1] in (" ", "\t") or ":" not in line:
            raise ICNetImportError(f"{p}:{lineno}: not a flat 'key: value' line: {raw.strip()[:60]!r}")
        key, _, value = line.partition(":")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ICNetImportError(f"{p}:{lineno}: bad key {key!r}")
        out[key] = _yaml_scalar(value)
    if not out:
        raise ICNetImportError(f"{p}: the ICNet config is empty")
    return out


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=0.0)


def config_from_yaml(values: dict[str, Any], source: str = CONFIG_NAME) -> ICNetConfig:
    """Check the released config fields against the seed-001 architecture → :class:`ICNetConfig`."""

    def num(key: str) -> float | None:
        v = values.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ICNetImportError(f"{source}: {key} must be a number, got {v!r}")
        return float(v)

    def integer(key: str, default: int) -> int:
        v = num(key)
        if v is None:
            return default
        if v != int(v) or v < 1:
            raise ICNetImportError(f"{source}: {key} must be a positive integer, got {values[key]!r}")
        return int(v)

    def expect(key: str, want: float, what: str) -> None:
        v = num(key)
        if v is not None and not _close(v, want):
            raise ICNetImportError(f"{source}: {key} is {values[key]!r}, but ICNet (Drakopoulos et al. 2025) has {what} {want:g}; "
                                   "these weights are not the ICNet architecture")

    expect("fs_audio", FS_AUDIO, "an audio rate of")
    expect("ds_factor", DECIMATION, "a decimation of")
    expect("fs_MUA", FS_MUA, "an output rate of")
    expect("context_size", CONTEXT_SAMPLES, "a left context of")
    expect("bottleneck_channels", BOTTLENECK_CHANNELS, "bottleneck channels")
    expect("decoder_channels", DECODER_UNITS, "decoder units")
    expect("p0", P0_PA, "a reference pressure (Pa) of")
    expect("audio_normalisation", ICNET_RMS_AT_94_DB_SPL, "an audio normalisation of")
    expect("time_normalisation", TIME_NORMALISATION, "a time normalisation of")
    n_classes = integer("n_classes", N_CLASSES_CATEGORICAL)
    if n_classes not in (N_CLASSES_CATEGORICAL, N_CLASSES_POISSON):
        raise ICNetImportError(f"{source}: n_classes is {n_classes}, ICNet has 5 (categorical) or 1 (Poisson)")
    return ICNetConfig(n_classes=n_classes, n_branches=integer("n_decoders", N_BRANCHES))


# ------------------------------------------------------------------------- HDF5 reading
@dataclass
class _Var:
    name: str  # the variable's own name ("kernel", "filt_b1", ...) or "" when the file has none
    array: np.ndarray


@dataclass
class _Layer:
    name: str
    variables: list[_Var]
    inbound: list[str] = field(default_factory=list)
    class_name: str = ""


def _decode(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _inbound_names(nodes: Any) -> list[str]:
    """Layer names a Keras 2 (``[[name, node, tensor, kwargs], ...]``) or Keras 3
    (``{"args": [{"config": {"keras_history": [name, ...]}}]}``) ``inbound_nodes`` refers to."""
    found: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            hist = o.get("keras_history") if isinstance(o.get("keras_history"), list) else None
            if hist is None and isinstance(o.get("config"), dict):
                hist = o["config"].get("keras_history")
            if isinstance(hist, list) and hist and isinstance(hist[0], str):
                found.append(hist[0])
                return
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            if len(o) >= 3 and isinstance(o[0], str) and isinstance(o[1], int) and isinstance(o[2], int):
                found.append(o[0])
                return
            for v in o:
                walk(v)

    walk(nodes)
    return list(dict.fromkeys(found))


def _graph(config_json: Any) -> dict[str, tuple[str, list[str]]]:
    """``{layer name: (class name, inbound layer names)}`` from a ``model_config`` attribute."""
    cfg = json.loads(_decode(config_json))
    layers = cfg.get("config", {}).get("layers") if isinstance(cfg, dict) else None
    if not isinstance(layers, list):
        raise ValueError("model_config has no layer list")
    out: dict[str, tuple[str, list[str]]] = {}
    for layer in layers:
        name = layer.get("name") or layer.get("config", {}).get("name")
        out[str(name)] = (str(layer.get("class_name", "")), _inbound_names(layer.get("inbound_nodes", [])))
    return out


def _legacy_layers(g: Any, root_attrs: Any) -> tuple[list[_Layer], bool]:
    names = [_decode(n) for n in g.attrs["layer_names"]] if "layer_names" in g.attrs else sorted(g.keys(), key=_natural_key)
    graph: dict[str, tuple[str, list[str]]] = {}
    has_graph = False
    if "model_config" in root_attrs:
        try:
            graph = _graph(root_attrs["model_config"])
            has_graph = True
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
            graph = {}
    layers = []
    for name in names:
        if name not in g:
            raise ICNetImportError(f"layer {name!r} is listed in model_weights but has no group")
        lg = g[name]
        variables: list[_Var] = []
        if "weight_names" in lg.attrs:
            for wn in lg.attrs["weight_names"]:
                wn = _decode(wn)
                if wn not in lg:
                    raise ICNetImportError(f"layer {name!r}: weight {wn!r} is listed but missing")
                variables.append(_Var(wn.rsplit("/", 1)[-1].split(":", 1)[0], np.asarray(lg[wn])))
        else:
            def visit(path: str, obj: Any) -> None:
                if hasattr(obj, "shape") and hasattr(obj, "dtype"):
                    variables.append(_Var(path.rsplit("/", 1)[-1].split(":", 1)[0], np.asarray(obj)))
            lg.visititems(visit)
        cls, inbound = graph.get(name, ("", []))
        layers.append(_Layer(name, variables, inbound, cls))
    return layers, has_graph


def _keras3_layers(f: Any) -> list[_Layer]:
    root = f["layers"]
    layers = []
    for key in sorted(root.keys(), key=_natural_key):
        lg = root[key]
        variables: list[_Var] = []

        def collect(group: Any) -> None:
            if "vars" in group:
                vs = group["vars"]
                for k in sorted(vs.keys(), key=_natural_key):
                    variables.append(_Var("", np.asarray(vs[k])))
            for k in sorted(group.keys(), key=_natural_key):
                if k != "vars" and hasattr(group[k], "keys"):
                    collect(group[k])

        collect(lg)
        name = _decode(lg["vars"].attrs.get("name", key)) if "vars" in lg else key
        layers.append(_Layer(name, variables))
    return layers


def read_keras_weights(path: str | os.PathLike[str]) -> tuple[list[_Layer], bool, str]:
    """``(layers with variables, whether the graph is known, layout name)`` of a Keras HDF5 file."""
    # lazy: h5py is needed only to read Keras weight files
    import h5py

    p = Path(path)
    if not p.exists():
        raise ICNetImportError(f"{p}: ICNet weights file not found")
    if p.is_dir():
        raise ICNetImportError(f"{p}: is a directory, not an ICNet weights file")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise ICNetImportError(f"{p}: not an HDF5 weights file ({str(e).splitlines()[0][:100]})") from None
    try:
        with f:
            if "model_weights" in f:
                layers, has_graph = _legacy_layers(f["model_weights"], f.attrs)
                return layers, has_graph, "keras-legacy-h5"
            if "layers" in f:
                return _keras3_layers(f), False, "keras3-weights-h5"
            if "layer_names" in f.attrs:  # Keras 2 save_weights("x.h5"): layer groups at the root
                layers, _ = _legacy_layers(f, {})
                return layers, False, "keras-legacy-weights-h5"
            raise ICNetImportError(f"{p}: HDF5 file has neither 'model_weights' nor 'layers': not a Keras weights file")
    except ICNetImportError as e:
        msg = str(e)
        raise ICNetImportError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
    except (KeyError, OSError, ValueError, TypeError) as e:
        raise ICNetImportError(f"{p}: malformed Keras weights file ({type(e).__name__}: {str(e)[:100]})") from None


# ------------------------------------------------------------------------- assembly
@dataclass
class _Unit:
    """One conv (kernel, optional bias) and the PReLU alpha that follows it, if any."""

    layer: str
    kernel: np.ndarray
    bias: np.ndarray | None = None
    alpha: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def cin(self) -> int:
        return int(self.kernel.shape[1])

    @property
    def cout(self) -> int:
        return int(self.kernel.shape[2])


@dataclass
class ImportReport:
    """What the importer found and mapped (kept for the verify report)."""

    weights: str
    config: str | None
    layout: str
    graph_traced: bool
    layers: int
    parameters: int
    mapping: list[str]


def _role(v: _Var) -> str:
    n = v.name.lower()
    if n in ("filt_b1", "filt_band", "kernel", "bias", "alpha"):
        return n
    a = v.array
    if a.ndim == 3:
        return "kernel"
    if a.ndim == 1:
        return "bias"
    if a.ndim == 2 and a.shape[0] == 1:
        return "alpha"
    if a.ndim == 2 and a.shape[1] == 1:
        return "sinc"
    return "unknown"


def _upstream(start: str, graph: dict[str, list[str]], stop: set[str]) -> list[str]:
    """Nearest layers in ``stop`` reachable upstream from ``start`` (BFS over inbound edges)."""
    seen, hits, queue = {start}, [], deque(graph.get(start, []))
    while queue:
        n = queue.popleft()
        if n in seen:
            continue
        seen.add(n)
        if n in stop:
            hits.append(n)
            continue
        queue.extend(graph.get(n, []))
    return hits


def _assemble(layers: list[_Layer], has_graph: bool, config: ICNetConfig, source: str,
              config_source: str | None = None) -> tuple[dict[str, Any], list[str]]:
    sinc_b1 = sinc_band = None
    units: list[_Unit] = []
    loose_alphas: list[tuple[str, np.ndarray]] = []
    for layer in layers:
        roles: dict[str, list[_Var]] = {}
        for v in layer.variables:
            role = _role(v)
            if role == "unknown":
                raise ICNetImportError(f"{source}: layer {layer.name!r} has a variable of shape {v.array.shape} "
                                       "that no ICNet layer has")
            roles.setdefault("sinc" if role in ("filt_b1", "filt_band", "sinc") else role, []).append(v)
        kernels, biases, alphas = roles.get("kernel", []), roles.get("bias", []), roles.get("alpha", [])
        if len(kernels) == 1 and len(biases) <= 1 and len(alphas) <= 1:
            # One conv (+ bias) (+ PReLU) in one layer, whatever order the file lists them in.
            units.append(_Unit(layer.name, kernels[0].array, biases[0].array if biases else None,
                               alphas[0].array if alphas else None))
        elif kernels:
            # Several convs in one layer: each bias / alpha belongs to the kernel listed before it.
            pending: _Unit | None = None
            for v in layer.variables:
                role = _role(v)
                if role == "kernel":
                    pending = _Unit(layer.name, v.array)
                    units.append(pending)
                elif role == "bias":
                    if pending is None or pending.bias is not None:
                        raise ICNetImportError(f"{source}: layer {layer.name!r} has a bias {v.array.shape} without "
                                               "a kernel before it")
                    pending.bias = v.array
                elif role == "alpha":
                    if pending is None or pending.alpha is not None:
                        raise ICNetImportError(f"{source}: layer {layer.name!r} has a PReLU without a conv before it")
                    pending.alpha = v.array
        else:
            if biases:
                raise ICNetImportError(f"{source}: layer {layer.name!r} has a bias {biases[0].array.shape} "
                                       "without a kernel")
            loose_alphas.extend((layer.name, a.array) for a in alphas)
        sinc = roles.get("sinc", [])
        if sinc:
            if len(sinc) != 2 or sinc_b1 is not None:
                raise ICNetImportError(f"{source}: layer {layer.name!r} does not look like ICNet's SincNet layer "
                                       f"(expected one filt_b1 and one filt_band)")
            named = {v.name.lower(): v.array for v in sinc}
            sinc_b1 = named.get("filt_b1", sinc[0].array)
            sinc_band = named.get("filt_band", sinc[1].array)
    if sinc_b1 is None:
        raise ICNetImportError(f"{source}: no SincNet layer (filt_b1 / filt_band) found: not ICNet weights")
    if sinc_b1.shape != (config.sinc_filters, 1) or sinc_band.shape != (config.sinc_filters, 1):
        raise ICNetImportError(f"{source}: SincNet parameters have shape {sinc_b1.shape}, ICNet has "
                               f"({config.sinc_filters}, 1)")

    # Standalone PReLU layers: attach to the conv that feeds them.
    graph = {l.name: l.inbound for l in layers}
    alpha_less = [u for u in units if u.alpha is None and u.bias is not None]
    if loose_alphas:
        by_layer = {u.layer: u for u in units}
        if has_graph:
            for lname, alpha in loose_alphas:
                src = _upstream(lname, graph, set(by_layer))
                if len(src) != 1 or by_layer[src[0]].alpha is not None:
                    raise ICNetImportError(f"{source}: cannot tell which conv the PReLU {lname!r} follows")
                by_layer[src[0]].alpha = alpha
        else:
            if len(loose_alphas) != len(alpha_less):
                raise ICNetImportError(f"{source}: {len(loose_alphas)} PReLU layers for {len(alpha_less)} convs "
                                       "without an activation")
            for (lname, alpha), u in zip(loose_alphas, alpha_less):
                u.alpha = alpha
    for u in units:
        if u.alpha is not None and u.alpha.size != u.cout:
            raise ICNetImportError(f"{source}: PReLU of {u.layer!r} has {u.alpha.size} slopes for {u.cout} channels")

    c = config
    enc = [u for u in units if u.k > 1]
    time_units = [u for u in units if u.k == 1 and u.cin == 1]
    dec = [u for u in units if u.k == 1 and u.cin == c.bottleneck_channels]
    other = [u for u in units if u not in enc and u not in time_units and u not in dec]
    if other:
        u = other[0]
        raise ICNetImportError(f"{source}: layer {u.layer!r} has a conv kernel {u.kernel.shape} that ICNet does not have")
    chain = [c.sinc_filters] + [c.encoder_channels] * c.encoder_layers + [c.bottleneck_channels]
    want = [(c.encoder_kernel, chain[i], chain[i + 1]) for i in range(len(chain) - 1)]
    got = [tuple(u.kernel.shape) for u in enc]
    if got != want:
        raise ICNetImportError(f"{source}: encoder convs {got} do not match ICNet's {want} (Drakopoulos et al. 2025)")
    for u in enc:
        if u.bias is None or u.alpha is None:
            raise ICNetImportError(f"{source}: encoder conv {u.layer!r} lacks its bias or PReLU")
    units_out = c.decoder_units * c.n_classes
    for u in dec:
        if u.cout != units_out:
            raise ICNetImportError(f"{source}: decoder {u.layer!r} has {u.cout} outputs; the config says "
                                   f"{c.decoder_units} units × {c.n_classes} classes = {units_out}")
        if u.bias is not None:
            raise ICNetImportError(f"{source}: decoder {u.layer!r} has a bias; ICNet's decoder has none (Drakopoulos et al. 2025)")
    if len(dec) != c.n_branches or len(time_units) != c.n_branches:
        raise ICNetImportError(f"{source}: found {len(dec)} decoders and {len(time_units)} time branches; "
                               f"{config_source or 'the architecture'} says n_decoders = {c.n_branches}")
    for u in time_units:
        if u.cout != c.time_channels or u.bias is None or u.alpha is None:
            raise ICNetImportError(f"{source}: time branch {u.layer!r} is not a 1 → {c.time_channels} conv with bias "
                                   "and PReLU")

    # Pair every decoder with the time branch that modulates its input.
    pairs: list[tuple[_Unit, _Unit]] = []
    if has_graph:
        tnames = {u.layer: u for u in time_units}
        for d in dec:
            hits = _upstream(d.layer, graph, set(tnames))
            if len(hits) != 1:
                raise ICNetImportError(f"{source}: decoder {d.layer!r} is fed by {len(hits)} time branches, expected 1")
            pairs.append((tnames[hits[0]], d))
        if len({id(t) for t, _ in pairs}) != len(pairs):
            raise ICNetImportError(f"{source}: two decoders share one time branch")
    else:
        pairs = list(zip(time_units, dec))

    def conv_w(k: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.transpose(k, (2, 1, 0)), dtype=np.float32))

    def vec(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(-1))

    sd: dict[str, Any] = {
        "encoder.sinc.filt_b1": torch.from_numpy(np.asarray(sinc_b1, np.float32)),
        "encoder.sinc.filt_band": torch.from_numpy(np.asarray(sinc_band, np.float32)),
    }
    mapping = ["sinc ← SincNet filt_b1, filt_band"]
    names = [f"encoder.convs.{i}" for i in range(c.encoder_layers)] + ["encoder.bottleneck"]
    for name, u in zip(names, enc):
        sd[f"{name}.conv.conv.weight"] = conv_w(u.kernel)
        sd[f"{name}.conv.conv.bias"] = vec(u.bias)
        sd[f"{name}.act.weight"] = vec(u.alpha)
        mapping.append(f"{name} ← {u.layer}")
    for i, (t, d) in enumerate(pairs):
        sd[f"time_branches.{i}.conv.conv.weight"] = conv_w(t.kernel)
        sd[f"time_branches.{i}.conv.conv.bias"] = vec(t.bias)
        sd[f"time_branches.{i}.act.weight"] = vec(t.alpha)
        sd[f"decoders.{i}.weight"] = conv_w(d.kernel)
        mapping.append(f"branch {i} ← time {t.layer}, decoder {d.layer}")
    return sd, mapping


def import_icnet(weights: str | os.PathLike[str], config: str | os.PathLike[str] | None = None, *,
                 require_config: bool = False) -> tuple[ICNet, ImportReport]:
    """Build :class:`ICNet` from Keras weights; ``config`` defaults to ``config.yaml`` beside them.

    Without a config file the seed's architecture is assumed (categorical, nine branches) and
    the branch count and class count are taken from the weights; ``require_config`` makes a
    missing ``config.yaml`` an error instead.
    """
    wp = Path(weights)
    cp = Path(config) if config is not None else wp.parent / CONFIG_NAME
    if config is not None or cp.exists():
        cfg = config_from_yaml(read_config_yaml(cp), str(cp))
        cfg_source: str | None = str(cp)
    elif require_config:
        raise ICNetImportError(f"{cp}: ICNet config not found (pass the config.yaml that came with the weights)")
    else:
        cfg, cfg_source = None, None
    layers, has_graph, layout = read_keras_weights(wp)
    if cfg is None:
        dec = [v.array for l in layers for v in l.variables
               if v.array.ndim == 3 and v.array.shape[0] == 1 and v.array.shape[1] == BOTTLENECK_CHANNELS]
        if not dec:
            raise ICNetImportError(f"{wp}: no ICNet decoder (1 × 64 × 512·Nc kernel) found: not ICNet weights")
        per = dec[0].shape[2] // DECODER_UNITS
        if per * DECODER_UNITS != dec[0].shape[2] or per not in (N_CLASSES_CATEGORICAL, N_CLASSES_POISSON):
            raise ICNetImportError(f"{wp}: decoder has {dec[0].shape[2]} outputs, not 512 × 5 or 512 × 1")
        cfg = ICNetConfig(n_classes=per, n_branches=len(dec))
    sd, mapping = _assemble(layers, has_graph, cfg, str(wp), cfg_source)
    model = ICNet(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or missing:
        raise ICNetImportError(f"{wp}: internal mapping error (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    report = ImportReport(weights=str(wp), config=cfg_source, layout=layout, graph_traced=has_graph,
                          layers=len([l for l in layers if l.variables]), parameters=model.parameter_count(),
                          mapping=mapping)
    return model, report


def export_legacy_h5(model: ICNet, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s weights in the legacy Keras layout (no graph) — for round-trip tests and
    for handing a torch-trained ICNet to Keras code that reads ``model_weights/<layer>/...``."""
    # lazy: h5py is needed only to read Keras weight files
    import h5py

    c = model.config

    def kernel(w: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(w.detach().cpu().numpy().transpose(2, 1, 0))

    layers: list[tuple[str, list[tuple[str, np.ndarray]]]] = [
        ("sinc_net_block", [("filt_b1", model.encoder.sinc.filt_b1.detach().numpy()),
                            ("filt_band", model.encoder.sinc.filt_band.detach().numpy())])]
    blocks = list(model.encoder.convs) + [model.encoder.bottleneck]
    for i, b in enumerate(blocks):
        layers.append((f"conv_encoder_block_{i}", [("kernel", kernel(b.conv.weight)), ("bias", b.conv.bias.detach().numpy()),
                                                   ("alpha", b.act.weight.detach().numpy().reshape(1, -1))]))
    for i in range(c.n_branches):
        t = model.time_branches[i]
        layers.append((f"time_block_{i}", [("kernel", kernel(t.conv.weight)), ("bias", t.conv.bias.detach().numpy()),
                                           ("alpha", t.act.weight.detach().numpy().reshape(1, -1))]))
    for i in range(c.n_branches):
        layers.append((f"decoder_{i}", [("kernel", kernel(model.decoders[i].weight))]))
    with atomic_write(path, "w+b") as fh, h5py.File(fh, "w") as f:
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        for name, vars_ in layers:
            lg = g.create_group(name)
            lg.attrs["weight_names"] = np.array([f"{name}/{v}:0".encode() for v, _ in vars_])
            for v, a in vars_:
                lg.create_dataset(f"{name}/{v}:0", data=np.asarray(a, np.float32))


def write_config_yaml(path: str | os.PathLike[str], config: ICNetConfig = ICNetConfig()) -> None:
    """A ``config.yaml`` with the released fields for ``config``."""
    lines = [
        "#### ICNet model parameters",
        f"context_size: {config.context}",
        f"fs_audio: {config.sample_rate!r}",
        f"fs_MUA: {config.output_rate!r}",
        f"ds_factor: {config.decimation}",
        f"p0: {P0_PA!r}",
        f"audio_normalisation: {ICNET_RMS_AT_94_DB_SPL!r}",
        f"time_normalisation: {TIME_NORMALISATION!r}",
        f"decoder_channels: {config.decoder_units}",
        f"n_decoders: {config.n_branches}",
        f"bottleneck_channels: {config.bottleneck_channels}",
        f"n_classes: {config.n_classes}",
    ]
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


__all__ = ["CONFIG_NAME", "ICNetImportError", "ImportReport", "config_from_yaml", "export_legacy_h5", "import_icnet",
           "read_config_yaml", "read_keras_weights", "write_config_yaml"]
