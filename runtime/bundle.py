"""Bundles on the device side: read ``manifest.json``, check it and every file it lists.

The contract is in docs/ARCHITECTURE.md ("Bundle contract"); this module is its only reader.

A bundle is a directory written by ``toolchain export``::

    manifest.json       what the model is and how to run it, plus {file name: sha256}
    model_int8.tflite   ... the graph files, ``kernel/`` C weights, etc.

:func:`load_bundle` refuses a bundle whose format version, file hashes, names, tensor specs
or state pairs are wrong, with a one-line :class:`BundleError` that names the file at fault.
``manifest.json`` carries ``manifest_sha256``, a digest of its own canonical content, so a
corrupted manifest (a flipped bit in ``output_limit``, say) is refused like a corrupted model.

A bundle may carry ``manifest.sig``, an Ed25519 signature over the exact bytes of
``manifest.json`` (see :mod:`runtime.signing`): it is always verified against the trusted keys
of the :class:`~runtime.signing.TrustPolicy` given to :func:`load_bundle`, before anything in the
manifest is believed; an unsigned bundle is refused where the policy requires signatures. A
``format_version`` older than this runtime's is refused as a downgrade, a newer one as unknown.

Standard library only (plus ``cryptography`` when a signature is checked): this module runs on
the boards themselves.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from runtime.config import check_keys
from runtime.signing import SIGNATURE_NAME, SignatureError, SignatureInfo, TrustPolicy, verify_manifest_signature

__all__ = [
    "DTYPES",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "Bundle",
    "BundleError",
    "GraphSpec",
    "Manifest",
    "StateSpec",
    "TensorSpec",
    "check_member_name",
    "load_bundle",
    "manifest_digest",
    "manifest_from_dict",
    "sha256_file",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: Tensor element types a bundle may declare.
DTYPES = ("int8", "int16", "int32", "float32")
#: Quantised types must carry scale and zero point; their zero point must fit the type.
_QUANT_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}

_CHUNK = 1 << 20  # hash in 1 MiB pieces: model files can be larger than a Zero's free RAM


class BundleError(ValueError):
    """A bundle cannot be used; the one-line message names the file at fault."""


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON, leaving out the ``manifest_sha256`` key.

    Canonical = sorted keys, no whitespace, ASCII: independent of how the file is indented.
    """
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def check_member_name(name: Any) -> str:
    """Return ``name`` if it is a safe relative POSIX path inside a bundle, else raise.

    Refuses absolute paths, ``..`` and ``.`` components, backslashes, empty components and
    the manifest itself, so no listed name can reach outside the bundle directory or
    alias another entry.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"file name must be a non-empty string, got {name!r}")
    if "\\" in name or "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"file name {name!r} must be a relative POSIX path")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"file name {name!r} must not contain '..', '.' or empty components")
    if name == MANIFEST_NAME:
        raise ValueError(f"{MANIFEST_NAME} cannot list itself")
    if name == SIGNATURE_NAME:
        raise ValueError(f"{MANIFEST_NAME} cannot list {SIGNATURE_NAME} (the signature is made over it)")
    return name


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_sha256(v: Any) -> bool:
    return (isinstance(v, str) and len(v) == 64
            and all(c in "0123456789abcdef" for c in v))


class _Fail(Exception):
    """Internal: a manifest field is wrong; carries the message without the file name."""


def _need(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise _Fail(f"missing field {where}{key}")
    return d[key]


def _typed(value: Any, ok: bool, field_name: str, what: str) -> Any:
    if not ok:
        raise _Fail(f"{field_name} must be {what}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------
# Data model
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape, element type and quantisation."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # one of DTYPES
    scale: float | None = None  # real = scale * (q - zero_point); None for float tensors
    zero_point: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "tensor") -> "TensorSpec":
        """Parse and check one tensor entry; ``where`` prefixes field names in errors."""
        if not isinstance(d, Mapping):
            raise _Fail(f"{where} must be an object, got {d!r}")
        check_keys(d, ("name", "shape", "dtype", "scale", "zero_point"), where=where, error=_Fail)
        name = _need(d, "name", f"{where}.")
        _typed(name, isinstance(name, str) and name != "", f"{where}.name", "a non-empty string")
        where = f"{where} {name!r}"
        shape = _need(d, "shape", f"{where}.")
        _typed(shape, isinstance(shape, (list, tuple)) and len(shape) > 0
               and all(_is_int(s) and s > 0 for s in shape),
               f"{where}.shape", "a non-empty list of positive integers")
        dtype = _need(d, "dtype", f"{where}.")
        _typed(dtype, isinstance(dtype, str) and dtype in DTYPES, f"{where}.dtype",
               f"one of {', '.join(DTYPES)}")
        scale = d.get("scale")
        zero_point = d.get("zero_point")
        if scale is not None:
            _typed(scale, _is_num(scale) and scale > 0, f"{where}.scale",
                   "a finite number > 0 or null")
        if zero_point is not None:
            _typed(zero_point, _is_int(zero_point), f"{where}.zero_point", "an integer or null")
        if (scale is None) != (zero_point is None):
            raise _Fail(f"{where}: scale and zero_point must be given together")
        if dtype in _QUANT_RANGE:
            if scale is None:
                raise _Fail(f"{where}: {dtype} tensor needs scale and zero_point")
            lo, hi = _QUANT_RANGE[dtype]
            if not lo <= zero_point <= hi:
                raise _Fail(f"{where}.zero_point {zero_point} is outside {dtype} "
                            f"range [{lo}, {hi}]")
        if dtype == "float32" and scale is not None:
            raise _Fail(f"{where}: float32 tensor must not carry scale/zero_point")
        return cls(name=name, shape=tuple(shape), dtype=dtype,
                   scale=None if scale is None else float(scale), zero_point=zero_point)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a fixed key order."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}

    def same_layout(self, other: "TensorSpec") -> bool:
        """True if ``other`` can be fed where this tensor was produced, bit for bit."""
        return (self.shape, self.dtype, self.scale, self.zero_point) == (
            other.shape, other.dtype, other.scale, other.zero_point)


@dataclass(frozen=True)
class StateSpec:
    """A streaming state: the graph input it enters by and the output it comes back from."""

    input: str
    output: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "state") -> "StateSpec":
        if not isinstance(d, Mapping):
            raise _Fail(f"{where} must be an object with 'input' and 'output', got {d!r}")
        check_keys(d, ("input", "output"), where=where, error=_Fail)
        i = _need(d, "input", f"{where}.")
        o = _need(d, "output", f"{where}.")
        _typed(i, isinstance(i, str) and i != "", f"{where}.input", "a tensor name")
        _typed(o, isinstance(o, str) and o != "", f"{where}.output", "a tensor name")
        return cls(input=i, output=o)

    def to_dict(self) -> dict[str, str]:
        return {"input": self.input, "output": self.output}


@dataclass(frozen=True)
class GraphSpec:
    """One flavour of the step graph (int8 TFLite, fp32 TFLite, ONNX, C kernel blob...)."""

    file: str  # bundle member name, listed in Manifest.files
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    states: tuple[StateSpec, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "graph") -> "GraphSpec":
        """Parse one graph entry and check its state pairs feed straight back."""
        if not isinstance(d, Mapping):
            raise _Fail(f"{where} must be an object, got {d!r}")
        check_keys(d, ("file", "inputs", "outputs", "states"), where=where, error=_Fail)
        file = _need(d, "file", f"{where}.")
        try:
            check_member_name(file)
        except ValueError as e:
            raise _Fail(f"{where}.file: {e}") from None
        tensors: dict[str, tuple[TensorSpec, ...]] = {}
        for kind in ("inputs", "outputs"):
            raw = _need(d, kind, f"{where}.")
            _typed(raw, isinstance(raw, list) and len(raw) > 0, f"{where}.{kind}",
                   "a non-empty list of tensors")
            specs = tuple(TensorSpec.from_dict(t, f"{where}.{kind}[{i}]")
                          for i, t in enumerate(raw))
            names = [t.name for t in specs]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise _Fail(f"{where}.{kind}: duplicate tensor name(s) {', '.join(dup)}")
            tensors[kind] = specs
        raw_states = d.get("states", [])
        _typed(raw_states, isinstance(raw_states, list), f"{where}.states", "a list")
        states = tuple(StateSpec.from_dict(s, f"{where}.states[{i}]")
                       for i, s in enumerate(raw_states))
        ins = {t.name: t for t in tensors["inputs"]}
        outs = {t.name: t for t in tensors["outputs"]}
        seen_in: set[str] = set()
        seen_out: set[str] = set()
        for s in states:
            tag = f"{where} state {s.input!r} -> {s.output!r}"
            if s.input not in ins:
                raise _Fail(f"{tag}: {s.input!r} is not a graph input")
            if s.output not in outs:
                raise _Fail(f"{tag}: {s.output!r} is not a graph output")
            if s.input in seen_in or s.output in seen_out:
                raise _Fail(f"{tag}: tensor used by more than one state pair")
            seen_in.add(s.input)
            seen_out.add(s.output)
            a, b = ins[s.input], outs[s.output]
            # The runtime copies the state output into the state input unchanged, so any
            # difference in layout or quantisation would silently corrupt the state.
            for attr in ("shape", "dtype", "scale", "zero_point"):
                va, vb = getattr(a, attr), getattr(b, attr)
                if va != vb:
                    raise _Fail(f"{tag}: {attr} {_fmt(va)} != {_fmt(vb)} "
                                "(a state output must feed straight back into its input)")
        return cls(file=file, inputs=tensors["inputs"], outputs=tensors["outputs"],
                   states=states)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file,
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
                "states": [s.to_dict() for s in self.states]}

    @property
    def state_inputs(self) -> tuple[TensorSpec, ...]:
        names = {s.input for s in self.states}
        return tuple(t for t in self.inputs if t.name in names)

    @property
    def signal_inputs(self) -> tuple[TensorSpec, ...]:
        """Inputs that are not state (normally the audio block)."""
        names = {s.input for s in self.states}
        return tuple(t for t in self.inputs if t.name not in names)


def _fmt(v: Any) -> str:
    return str(list(v)) if isinstance(v, tuple) else repr(v)


#: Graph flavours a device can run as its default (integer TFLite graphs).
DEVICE_GRAPHS = ("int16x8", "int8")

# Top-level manifest keys in the order to_dict() writes them.
_MANIFEST_KEYS = (
    "format_version", "model", "target", "sample_rate", "block",
    "algorithmic_latency_samples", "output_limit", "audiogram", "graphs", "default_graph", "files",
    "metrics", "toolchain_version", "created_utc", "extra",
)


@dataclass(frozen=True)
class Manifest:
    """The parsed and checked ``manifest.json``."""

    format_version: int
    model: str  # e.g. "seanet-tiny"
    target: str  # board name, e.g. "rpi4"
    sample_rate: int  # Hz
    block: int  # samples per step
    algorithmic_latency_samples: int  # measured by impulse, includes the block fill
    output_limit: float  # linear full-scale peak the engine clips at, in (0, 1]
    graphs: Mapping[str, GraphSpec]  # flavour ("int8", "fp32", "onnx", ...) -> graph
    files: Mapping[str, str]  # member name -> sha256 hex
    # {"name": str, "thresholds_db_hl": [...], "frequencies_hz": [...]} or None (unfitted)
    audiogram: Mapping[str, Any] | None = None
    metrics: Mapping[str, float | int | str] = field(default_factory=dict)
    toolchain_version: str = ""
    created_utc: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The TFLite flavour the device runs ("int16x8": int16 audio and activations, int8 weights;
    # "int8": full integer); bundles from before it was recorded ran "int8".
    default_graph: str = "int8"

    @property
    def algorithmic_latency_ms(self) -> float:
        return 1000.0 * self.algorithmic_latency_samples / self.sample_rate

    def graph(self, flavour: str) -> GraphSpec:
        """The graph of one flavour, or BundleError listing those present."""
        try:
            return self.graphs[flavour]
        except KeyError:
            raise BundleError(f"{MANIFEST_NAME}: no {flavour!r} graph in this bundle "
                              f"(has: {', '.join(self.graphs) or 'none'})") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict with a stable key order (files sorted by name)."""
        return {
            "format_version": self.format_version,
            "model": self.model,
            "target": self.target,
            "sample_rate": self.sample_rate,
            "block": self.block,
            "algorithmic_latency_samples": self.algorithmic_latency_samples,
            "output_limit": self.output_limit,
            "audiogram": None if self.audiogram is None else dict(self.audiogram),
            "graphs": {k: g.to_dict() for k, g in self.graphs.items()},
            # Only a graph the bundle has: a manifest that never named one (int8 by default) and has
            # no int8 graph re-serialises as it was read.
            **({"default_graph": self.default_graph} if self.default_graph in self.graphs else {}),
            "files": {k: self.files[k] for k in sorted(self.files)},
            "metrics": dict(self.metrics),
            "toolchain_version": self.toolchain_version,
            "created_utc": self.created_utc,
            "extra": dict(self.extra),
        }


def _parse_audiogram(a: Any) -> dict[str, Any] | None:
    if a is None:
        return None
    if not isinstance(a, Mapping):
        raise _Fail(f"audiogram must be an object or null, got {a!r}")
    name = _need(a, "name", "audiogram.")
    _typed(name, isinstance(name, str), "audiogram.name", "a string")
    thr = _need(a, "thresholds_db_hl", "audiogram.")
    freqs = _need(a, "frequencies_hz", "audiogram.")
    _typed(thr, isinstance(thr, list) and len(thr) > 0 and all(_is_num(v) for v in thr),
           "audiogram.thresholds_db_hl", "a non-empty list of numbers")
    _typed(freqs, isinstance(freqs, list) and all(_is_num(v) and v > 0 for v in freqs),
           "audiogram.frequencies_hz", "a list of positive numbers")
    if len(thr) != len(freqs):
        raise _Fail(f"audiogram has {len(thr)} thresholds for {len(freqs)} frequencies")
    if any(b <= a_ for a_, b in zip(freqs, freqs[1:])):
        raise _Fail("audiogram.frequencies_hz must increase strictly")
    return dict(a)


def _parse(d: Mapping[str, Any]) -> Manifest:
    if not isinstance(d, Mapping):
        raise _Fail(f"must hold a JSON object, got {type(d).__name__}")
    fv = _need(d, "format_version", "")
    _typed(fv, _is_int(fv), "format_version", "an integer")

    def str_field(k: str) -> str:
        v = _need(d, k, "")
        return _typed(v, isinstance(v, str) and v != "", k, "a non-empty string")

    def int_field(k: str, lo: int) -> int:
        v = _need(d, k, "")
        return _typed(v, _is_int(v) and v >= lo, k, f"an integer >= {lo}")

    model, target = str_field("model"), str_field("target")
    sample_rate = int_field("sample_rate", 1)
    block = int_field("block", 1)
    latency = int_field("algorithmic_latency_samples", 0)
    limit = _need(d, "output_limit", "")
    _typed(limit, _is_num(limit) and 0 < limit <= 1, "output_limit", "a number in (0, 1]")

    files = _need(d, "files", "")
    _typed(files, isinstance(files, Mapping), "files", "an object {name: sha256}")
    for name, digest in files.items():
        try:
            check_member_name(name)
        except ValueError as e:
            raise _Fail(f"files: {e}") from None
        _typed(digest, _is_sha256(digest), f"files[{name!r}]", "a lower-case sha256 hex digest")

    raw_graphs = _need(d, "graphs", "")
    _typed(raw_graphs, isinstance(raw_graphs, Mapping) and len(raw_graphs) > 0, "graphs",
           "a non-empty object {flavour: graph}")
    graphs = {}
    for key, g in raw_graphs.items():
        spec = GraphSpec.from_dict(g, f"graphs.{key}")
        if spec.file not in files:
            raise _Fail(f"graphs.{key}.file {spec.file!r} is not listed in files")
        graphs[key] = spec

    # Bundles from before the field ran their int8 graph; one that names its graph must have it.
    default_graph = d.get("default_graph", "int8")
    if "default_graph" in d:
        _typed(default_graph, isinstance(default_graph, str) and default_graph in DEVICE_GRAPHS, "default_graph",
               f"one of {', '.join(DEVICE_GRAPHS)}")
        if default_graph not in graphs:
            raise _Fail(f"default_graph {default_graph!r} is not in graphs (has: {', '.join(graphs)})")

    metrics = d.get("metrics", {})
    _typed(metrics, isinstance(metrics, Mapping), "metrics", "an object")
    for k, v in metrics.items():
        _typed(v, isinstance(v, str) or _is_num(v), f"metrics.{k}", "a number or a string")
    extra = d.get("extra", {})
    _typed(extra, isinstance(extra, Mapping), "extra", "an object")
    # Keys this version does not know are kept (in extra), not dropped, so a newer writer
    # with the same format_version can add information without breaking old runtimes.
    extra = dict(extra)
    for k, v in d.items():
        if k not in _MANIFEST_KEYS and k != "manifest_sha256":
            extra[k] = v
    tv = d.get("toolchain_version", "")
    _typed(tv, isinstance(tv, str), "toolchain_version", "a string")
    created = d.get("created_utc", "")
    _typed(created, isinstance(created, str), "created_utc", "a string")

    return Manifest(
        format_version=fv, model=model, target=target, sample_rate=sample_rate, block=block,
        algorithmic_latency_samples=latency, output_limit=float(limit),
        audiogram=_parse_audiogram(d.get("audiogram")), graphs=graphs, files=dict(files),
        metrics=dict(metrics), toolchain_version=tv, created_utc=created, extra=extra,
        default_graph=default_graph,
    )


def manifest_from_dict(d: Mapping[str, Any], *, source: str = MANIFEST_NAME) -> Manifest:
    """Check a manifest dict (schema, names, tensors, state pairs) and build a Manifest.

    Does not look at ``manifest_sha256`` or at the files on disk: load_bundle does that.
    Errors are BundleError("<source>: ...").
    """
    try:
        return _parse(d)
    except _Fail as e:
        raise BundleError(f"{source}: {e}") from None


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """A checked bundle directory: every listed file exists and matches its hash."""

    path: Path
    manifest: Manifest
    #: The verified signature, or None for an unsigned bundle (accepted because not required).
    signature: SignatureInfo | None = None

    def file(self, name: str) -> Path:
        """Path of a member listed in the manifest (e.g. ``"kernel/model.hxb"``)."""
        if name not in self.manifest.files:
            raise BundleError(f"{self.path / name}: not listed in {MANIFEST_NAME}")
        return self.path / name

    def graph_file(self, flavour: str) -> Path:
        """Path of the file holding one graph flavour (``"int8"``, ``"onnx"``...)."""
        return self.file(self.manifest.graph(flavour).file)


def _read_manifest_bytes(path: Path) -> bytes:
    where = path / MANIFEST_NAME
    try:
        return where.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{where} is missing (not a bundle directory?)") from None
    except OSError as e:
        raise BundleError(f"{where}: cannot read ({e.strerror or e})") from None


def _parse_manifest(path: Path, raw: bytes) -> dict[str, Any]:
    where = path / MANIFEST_NAME
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{where}: not UTF-8 text (byte {e.start}; file corrupt?)") from None

    def no_constants(c: str) -> Any:
        # NaN / Infinity are not JSON, and a NaN output limit would disable the limiter.
        raise ValueError(f"non-finite number {c}")

    try:
        data = json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as e:
        raise BundleError(f"{where}: invalid JSON at line {e.lineno} column {e.colno}: "
                          f"{e.msg} (file corrupt?)") from None
    except ValueError as e:
        raise BundleError(f"{where}: invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{where}: must hold a JSON object, got {type(data).__name__}")
    return data


def load_bundle(path: str | os.PathLike[str], *,
                expected_format_version: int = FORMAT_VERSION,
                trust: TrustPolicy | None = None) -> Bundle:
    """Open and check a bundle directory; raise BundleError naming the file at fault.

    Order: directory, manifest.json bytes, signature (``trust``: the device's policy, default
    :meth:`TrustPolicy.from_env`), then the manifest parses, format_version (older: a
    downgrade; newer: unknown), manifest digest, schema (names stay inside the bundle, graph
    files listed, tensor specs, state pairs), then each listed file exists and matches its
    sha256. The signature is checked on the raw bytes before any field is believed, and names
    before any listed file is opened, so a hostile manifest cannot make us read outside the
    bundle.
    """
    root = Path(path)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise BundleError(f"{root}: bundle directory {what}")
    raw = _read_manifest_bytes(root)
    try:
        policy = trust if trust is not None else TrustPolicy.from_env()
        signature = verify_manifest_signature(root, raw, policy)
    except SignatureError as e:
        raise BundleError(str(e)) from None
    data = _parse_manifest(root, raw)
    mpath = root / MANIFEST_NAME

    # Version first: another format may change everything below, so say that plainly. An
    # older one is refused too: a signed old bundle must not bring back what a newer format fixed.
    fv = data.get("format_version")
    if not _is_int(fv):
        raise BundleError(f"{mpath}: format_version must be an integer, got {fv!r}")
    if fv < expected_format_version:
        raise BundleError(f"{mpath}: format_version {fv} is older than this runtime accepts "
                          f"(expects {expected_format_version}); refusing a downgrade")
    if fv != expected_format_version:
        raise BundleError(f"{mpath}: format_version {fv} is not supported by this runtime "
                          f"(expects {expected_format_version})")

    recorded = data.get("manifest_sha256")
    if not _is_sha256(recorded):
        raise BundleError(f"{mpath}: missing or malformed manifest_sha256")
    if manifest_digest(data) != recorded:
        raise BundleError(f"{mpath}: manifest_sha256 mismatch (file changed or corrupt)")

    manifest = manifest_from_dict(data, source=str(mpath))

    base = root.resolve()
    for name, digest in manifest.files.items():
        member = root / name
        # Names are already free of '..' and absolute parts; a symlink could still point
        # out of the bundle, so compare the resolved path too.
        try:
            inside = member.resolve().is_relative_to(base)
        except OSError:
            inside = False
        if not inside:
            raise BundleError(f"{member}: resolves outside the bundle directory")
        if not member.exists():
            raise BundleError(f"{member} is missing")
        if not member.is_file():
            raise BundleError(f"{member}: not a regular file")
        try:
            actual = sha256_file(member)
        except OSError as e:
            raise BundleError(f"{member}: cannot read ({e.strerror or e})") from None
        if actual != digest:
            raise BundleError(f"{member}: sha256 mismatch (file changed or corrupt)")
    return Bundle(path=root, manifest=manifest, signature=signature)
