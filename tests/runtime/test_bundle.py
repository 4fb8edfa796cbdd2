"""Device-side bundle loading: a good bundle loads, every kind of damage is refused on one
line that names the file at fault.

These tests build bundles with the runtime module alone (no toolchain import), so they run
on a board that has only the [runtime] extra installed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime.boards
import runtime.bundle
import runtime.signing
from runtime.bundle import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Bundle,
    BundleError,
    GraphSpec,
    Manifest,
    StateSpec,
    TensorSpec,
    load_bundle,
    manifest_digest,
    manifest_from_dict,
    sha256_file,
)

REPO = Path(__file__).resolve().parents[2]

FILES: dict[str, bytes] = {
    "model_int8.tflite": b"TFL3" + bytes(range(256)) * 4,
    "model_fp32.tflite": b"TFL3" + b"\x01\x02\x03" * 100,
    "model.onnx": b"\x08\x07onnx-graph" * 10,
    "kernel/model.hxb": b"HXB1" + bytes(range(200)),
}


def q8(name: str, shape: list[int], scale: float = 0.0078125, zp: int = 0) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": "int8", "scale": scale, "zero_point": zp}


def f32(name: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": "float32", "scale": None, "zero_point": None}


def manifest_dict(files: dict[str, bytes]) -> dict[str, Any]:
    """A realistic manifest for FILES (hashes filled in)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": "seanet-tiny",
        "target": "rpi4",
        "sample_rate": 16000,
        "block": 16,
        "algorithmic_latency_samples": 19,
        "output_limit": 0.891,
        "audiogram": {
            "name": "moderate-sloping",
            "thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65],
            "frequencies_hz": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000],
        },
        "graphs": {
            "int8": {
                "file": "model_int8.tflite",
                "inputs": [q8("audio", [1, 16, 1]), q8("enc0_state", [1, 6, 16], 0.05, -3)],
                "outputs": [q8("out", [1, 16, 1]), q8("enc0_state_out", [1, 6, 16], 0.05, -3)],
                "states": [{"input": "enc0_state", "output": "enc0_state_out"}],
            },
            "fp32": {
                "file": "model_fp32.tflite",
                "inputs": [f32("audio", [1, 16, 1]), f32("enc0_state", [1, 6, 16])],
                "outputs": [f32("out", [1, 16, 1]), f32("enc0_state_out", [1, 6, 16])],
                "states": [{"input": "enc0_state", "output": "enc0_state_out"}],
            },
            "onnx": {
                "file": "model.onnx",
                "inputs": [f32("audio", [1, 1, 16])],
                "outputs": [f32("out", [1, 1, 16])],
                "states": [],
            },
            "ckernel": {
                "file": "kernel/model.hxb",
                "inputs": [q8("audio", [16])],
                "outputs": [q8("out", [16])],
                "states": [],
            },
        },
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files.items())},
        "metrics": {"int8_vs_fp32_snr_db": 31.5, "haspi": 0.91, "note": "synthetic"},
        "toolchain_version": "0.1.0",
        "created_utc": "2025-01-01T00:00:00Z",
        "extra": {},
    }


def write_manifest(root: Path, d: dict[str, Any], *, digest: bool = True) -> None:
    if digest:
        d = {**d, "manifest_sha256": manifest_digest(d)}
    (root / MANIFEST_NAME).write_text(json.dumps(d, indent=2))


def make_bundle(root: Path, files: dict[str, bytes] | None = None,
                edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Write a bundle by hand (the runtime must not need the toolchain to test itself)."""
    files = FILES if files is None else files
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    d = manifest_dict(files)
    if edit:
        edit(d)
    write_manifest(root, d)
    return root


def edit_manifest(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change a manifest and re-seal it, as a (buggy) writer would."""
    d = json.loads((root / MANIFEST_NAME).read_text())
    d.pop("manifest_sha256")
    edit(d)
    write_manifest(root, d)


def refused(root: Path, **kw: Any) -> str:
    with pytest.raises(BundleError) as e:
        load_bundle(root, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


# --- the good case ------------------------------------------------------------------


def test_good_bundle_loads(bundle: Path) -> None:
    b = load_bundle(bundle)
    assert isinstance(b, Bundle) and b.path == bundle
    m = b.manifest
    assert isinstance(m, Manifest)
    assert (m.format_version, m.model, m.target) == (1, "seanet-tiny", "rpi4")
    assert (m.sample_rate, m.block, m.algorithmic_latency_samples) == (16000, 16, 19)
    assert m.output_limit == 0.891
    assert m.audiogram is not None and m.audiogram["name"] == "moderate-sloping"
    assert list(m.graphs) == ["int8", "fp32", "onnx", "ckernel"]
    g = m.graph("int8")
    assert g.states == (StateSpec("enc0_state", "enc0_state_out"),)
    assert g.inputs[1] == TensorSpec("enc0_state", (1, 6, 16), "int8", 0.05, -3)
    assert [t.name for t in g.signal_inputs] == ["audio"]
    assert [t.name for t in g.state_inputs] == ["enc0_state"]
    assert m.metrics["int8_vs_fp32_snr_db"] == 31.5
    assert m.algorithmic_latency_ms == pytest.approx(19 / 16)
    assert b.file("kernel/model.hxb") == bundle / "kernel" / "model.hxb"
    assert b.graph_file("ckernel").read_bytes() == FILES["kernel/model.hxb"]
    assert b.graph_file("onnx") == bundle / "model.onnx"


def test_accepts_str_path(bundle: Path) -> None:
    assert load_bundle(str(bundle)).path == bundle


def test_unlisted_file_and_graph_are_refused(bundle: Path) -> None:
    b = load_bundle(bundle)
    with pytest.raises(BundleError, match=r"notes\.txt: not listed in manifest\.json"):
        b.file("notes.txt")
    with pytest.raises(BundleError, match=r"no 'litert' graph in this bundle \(has: int8"):
        b.manifest.graph("litert")


def test_extra_files_in_directory_are_ignored(bundle: Path) -> None:
    (bundle / "README.txt").write_text("not listed")
    load_bundle(bundle)


def test_manifest_round_trip(bundle: Path) -> None:
    m = load_bundle(bundle).manifest
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-serialisable as is
    assert manifest_from_dict(d) == m
    assert list(d) == ["format_version", "model", "target", "sample_rate", "block",
                       "algorithmic_latency_samples", "output_limit", "audiogram", "graphs",
                       "default_graph", "files", "metrics", "toolchain_version", "created_utc", "extra"]
    assert list(d["files"]) == sorted(d["files"])
    # Stable: the same manifest always serialises to the same text.
    assert json.dumps(manifest_from_dict(d).to_dict()) == json.dumps(d)


def test_unknown_top_level_keys_are_kept_in_extra(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b", edit=lambda d: d.update(calibration_set="speech-v2",
                                                              extra={"seed": 3}))
    assert load_bundle(root).manifest.extra == {"seed": 3, "calibration_set": "speech-v2"}


def test_tensor_spec_round_trip() -> None:
    t = TensorSpec.from_dict(q8("x", [1, 16, 1], 0.5, 7))
    assert t == TensorSpec("x", (1, 16, 1), "int8", 0.5, 7)
    assert TensorSpec.from_dict(t.to_dict()) == t
    f = TensorSpec.from_dict({"name": "y", "shape": [16], "dtype": "float32"})
    assert f.scale is None and f.zero_point is None
    assert GraphSpec.from_dict({"file": "a", "inputs": [t.to_dict()],
                                "outputs": [f.to_dict()]}).states == ()


def test_bundle_error_is_value_error() -> None:
    assert issubclass(BundleError, ValueError)


def test_sha256_file_hashes_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 12345)  # several chunks and a partial one
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


# --- damaged files ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_changed_byte_in_any_file_is_refused(bundle: Path, name: str, where: str) -> None:
    p = bundle / name
    data = bytearray(p.read_bytes())
    i = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[i] ^= 0x01
    p.write_bytes(bytes(data))
    assert refused(bundle) == f"{bundle / name}: sha256 mismatch (file changed or corrupt)"


@pytest.mark.parametrize("name", sorted(FILES))
def test_truncated_or_grown_file_is_refused(bundle: Path, name: str) -> None:
    p = bundle / name
    p.write_bytes(p.read_bytes() + b"\0")
    assert refused(bundle) == f"{bundle / name}: sha256 mismatch (file changed or corrupt)"


@pytest.mark.parametrize("name", sorted(FILES))
def test_missing_file_is_refused(bundle: Path, name: str) -> None:
    (bundle / name).unlink()
    assert refused(bundle) == f"{bundle / name} is missing"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(FILES)), pos=st.floats(0, 1, exclude_max=True),
       mask=st.integers(1, 255))
def test_any_single_byte_change_in_a_member_is_refused(name: str, pos: float,
                                                      mask: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = make_bundle(Path(d) / "bundle")
        p = root / name
        data = bytearray(p.read_bytes())
        data[int(pos * len(data))] ^= mask
        p.write_bytes(bytes(data))
        assert refused(root) == f"{p}: sha256 mismatch (file changed or corrupt)"


_WS = frozenset(b" \t\r\n")


@settings(max_examples=150, deadline=None)
@given(pos=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_any_single_byte_change_in_manifest_is_refused(pos: float, mask: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = make_bundle(Path(d) / "bundle")
        p = root / MANIFEST_NAME
        data = bytearray(p.read_bytes())
        i = int(pos * len(data))
        old, new = data[i], data[i] ^ mask
        data[i] = new
        p.write_bytes(bytes(data))
        if old in _WS and new in _WS:
            load_bundle(root)  # layout only: the manifest's content is unchanged
            return
        msg = refused(root)
        assert msg.startswith(f"{p}: "), msg


def test_edited_manifest_value_is_refused(bundle: Path) -> None:
    p = bundle / MANIFEST_NAME
    text = p.read_text()
    # A flipped digit in the output limit is valid JSON and would raise the MPO: refuse it.
    p.write_text(text.replace('"output_limit": 0.891', '"output_limit": 0.991'))
    assert refused(bundle) == f"{p}: manifest_sha256 mismatch (file changed or corrupt)"


def test_manifest_digest_is_independent_of_layout(bundle: Path) -> None:
    p = bundle / MANIFEST_NAME
    d = json.loads(p.read_text())
    p.write_text(json.dumps(d, separators=(",", ":")))
    load_bundle(bundle)


def test_missing_manifest_digest_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    write_manifest(root, manifest_dict(FILES), digest=False)
    assert refused(root) == f"{root / MANIFEST_NAME}: missing or malformed manifest_sha256"


def test_invalid_json_names_manifest(bundle: Path) -> None:
    p = bundle / MANIFEST_NAME
    p.write_text(p.read_text()[:-20])
    msg = refused(bundle)
    assert msg.startswith(f"{p}: invalid JSON at line ")


def test_non_utf8_manifest(bundle: Path) -> None:
    p = bundle / MANIFEST_NAME
    p.write_bytes(b"\xff\xfe" + p.read_bytes())
    assert refused(bundle).startswith(f"{p}: not UTF-8 text")


def test_nan_in_manifest_is_refused(bundle: Path) -> None:
    p = bundle / MANIFEST_NAME
    p.write_text(p.read_text().replace('"output_limit": 0.891', '"output_limit": NaN'))
    assert refused(bundle) == f"{p}: invalid JSON: non-finite number NaN"


def test_manifest_not_an_object(bundle: Path) -> None:
    (bundle / MANIFEST_NAME).write_text("[1, 2]")
    assert refused(bundle) == f"{bundle / MANIFEST_NAME}: must hold a JSON object, got list"


def test_missing_manifest(bundle: Path) -> None:
    (bundle / MANIFEST_NAME).unlink()
    assert refused(bundle) == f"{bundle / MANIFEST_NAME} is missing (not a bundle directory?)"


def test_missing_directory(tmp_path: Path) -> None:
    assert refused(tmp_path / "nope") == f"{tmp_path / 'nope'}: bundle directory does not exist"
    (tmp_path / "file").write_text("x")
    assert refused(tmp_path / "file") == f"{tmp_path / 'file'}: bundle directory is not a directory"


# --- format version -----------------------------------------------------------------


def test_newer_format_version(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    assert refused(bundle) == (f"{bundle / MANIFEST_NAME}: format_version {FORMAT_VERSION + 1} is not "
                               f"supported by this runtime (expects {FORMAT_VERSION})")


def test_older_format_version_is_refused_as_a_downgrade(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.update(format_version=FORMAT_VERSION - 1))
    assert refused(bundle) == (f"{bundle / MANIFEST_NAME}: format_version {FORMAT_VERSION - 1} is older than "
                               f"this runtime accepts (expects {FORMAT_VERSION}); refusing a downgrade")


def test_format_version_checked_before_anything_else(bundle: Path) -> None:
    # A future format may look nothing like this one: say "version", not "missing field".
    write_manifest(bundle, {"format_version": 2, "something": "new"}, digest=False)
    assert "format_version 2 is not supported" in refused(bundle)


def test_expected_format_version_argument(bundle: Path) -> None:
    assert "(expects 7)" in refused(bundle, expected_format_version=7)


@pytest.mark.parametrize("value", ["1", None, True, 1.0])
def test_format_version_must_be_int(bundle: Path, value: Any) -> None:
    edit_manifest(bundle, lambda d: d.update(format_version=value))
    assert f"format_version must be an integer, got {value!r}" in refused(bundle)


# --- names that escape the bundle ---------------------------------------------------


@pytest.mark.parametrize("bad", ["../outside.bin", "/etc/passwd", "kernel/../../outside.bin",
                                 "./model.bin", "kernel//model.bin", "kernel\\model.bin",
                                 "C:/model.bin", MANIFEST_NAME, ""])
def test_path_traversal_names_are_refused(tmp_path: Path, bad: str) -> None:
    # The target exists, so only the name check can stop it.
    (tmp_path / "outside.bin").write_bytes(b"secret")
    root = make_bundle(tmp_path / "bundle")

    def edit(d: dict[str, Any]) -> None:
        d["files"][bad] = hashlib.sha256(b"secret").hexdigest()

    edit_manifest(root, edit)
    msg = refused(root)
    assert msg.startswith(f"{root / MANIFEST_NAME}: files: "), msg
    assert repr(bad) in msg or "cannot list itself" in msg


def test_graph_file_escaping_is_refused(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["onnx"].update(file="../model.onnx"))
    msg = refused(bundle)
    assert msg.startswith(f"{bundle / MANIFEST_NAME}: graphs.onnx.file: ")


def test_symlink_out_of_bundle_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(FILES["model.onnx"])  # even with the right content
    root = make_bundle(tmp_path / "bundle")
    (root / "model.onnx").unlink()
    (root / "model.onnx").symlink_to(secret)
    assert refused(root) == f"{root / 'model.onnx'}: resolves outside the bundle directory"


def test_directory_in_place_of_file(bundle: Path) -> None:
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").mkdir()
    assert refused(bundle) == f"{bundle / 'model.onnx'}: not a regular file"


# --- schema -------------------------------------------------------------------------


def test_graph_file_must_be_listed(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["onnx"].update(file="other.onnx"))
    assert refused(bundle) == (f"{bundle / MANIFEST_NAME}: graphs.onnx.file 'other.onnx' "
                               "is not listed in files")


@pytest.mark.parametrize("shape", [[], [0], [-1, 16], [1.5], ["16"], [True], "16", None])
def test_bad_shapes_are_refused(bundle: Path, shape: Any) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["onnx"]["inputs"][0].update(shape=shape))
    msg = refused(bundle)
    assert msg.startswith(f"{bundle / MANIFEST_NAME}: graphs.onnx.inputs[0] 'audio'.shape "
                          "must be a non-empty list of positive integers"), msg


@pytest.mark.parametrize("dtype", ["uint8", "float64", "INT8", 8])
def test_unknown_dtype_is_refused(bundle: Path, dtype: Any) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["onnx"]["outputs"][0].update(dtype=dtype))
    assert "graphs.onnx.outputs[0] 'out'.dtype must be one of int8, int16, int32, float32" \
        in refused(bundle)


def test_int8_tensor_needs_quantisation(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["ckernel"]["inputs"][0].update(
        scale=None, zero_point=None))
    assert "int8 tensor needs scale and zero_point" in refused(bundle)


def test_int8_zero_point_range(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["ckernel"]["inputs"][0].update(zero_point=200))
    assert "zero_point 200 is outside int8 range [-128, 127]" in refused(bundle)


@pytest.mark.parametrize("attr,value", [
    ("shape", [1, 6, 15]),
    ("dtype", "int16"),
    ("scale", 0.051),
    ("zero_point", -2),
])
def test_state_pair_mismatch_is_refused(bundle: Path, attr: str, value: Any) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["int8"]["outputs"][1].update({attr: value}))
    msg = refused(bundle)
    assert msg.startswith(f"{bundle / MANIFEST_NAME}: graphs.int8 state 'enc0_state' -> "
                          f"'enc0_state_out': {attr} "), msg
    assert "feed straight back" in msg


@pytest.mark.parametrize("state,expected", [
    ({"input": "nope", "output": "enc0_state_out"}, "'nope' is not a graph input"),
    ({"input": "enc0_state", "output": "nope"}, "'nope' is not a graph output"),
    ({"input": "enc0_state"}, "missing field graphs.int8.states[0].output"),
])
def test_state_must_name_graph_tensors(bundle: Path, state: dict[str, str],
                                       expected: str) -> None:
    edit_manifest(bundle, lambda d: d["graphs"]["int8"].update(states=[state]))
    assert expected in refused(bundle)


@pytest.mark.parametrize("field", ["model", "target", "sample_rate", "block",
                                   "algorithmic_latency_samples", "output_limit", "graphs",
                                   "files"])
def test_missing_manifest_field(bundle: Path, field: str) -> None:
    edit_manifest(bundle, lambda d: d.pop(field))
    assert refused(bundle) == f"{bundle / MANIFEST_NAME}: missing field {field}"


@pytest.mark.parametrize("field,value,expected", [
    ("block", 0, "block must be an integer >= 1, got 0"),
    ("sample_rate", "16k", "sample_rate must be an integer >= 1, got '16k'"),
    ("algorithmic_latency_samples", -1, "algorithmic_latency_samples must be an integer >= 0"),
    ("output_limit", 1.5, "output_limit must be a number in (0, 1], got 1.5"),
    ("output_limit", 0, "output_limit must be a number in (0, 1], got 0"),
    ("graphs", {}, "graphs must be a non-empty object"),
    ("metrics", {"snr": [1]}, "metrics.snr must be a number or a string"),
])
def test_bad_manifest_values(bundle: Path, field: str, value: Any, expected: str) -> None:
    edit_manifest(bundle, lambda d: d.update({field: value}))
    assert expected in refused(bundle)


def test_bad_hash_format(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["files"].update({"model.onnx": "ABC"}))
    assert "files['model.onnx'] must be a lower-case sha256 hex digest" in refused(bundle)


def test_bad_audiogram(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["audiogram"].update(frequencies_hz=[250, 500]))
    assert "audiogram has 8 thresholds for 2 frequencies" in refused(bundle)


def test_no_audiogram_is_allowed(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b", edit=lambda d: d.update(audiogram=None))
    assert load_bundle(root).manifest.audiogram is None


# --- import hygiene -----------------------------------------------------------------


def test_runtime_modules_do_not_load_torch_or_tensorflow() -> None:
    code = (
        "import sys, json, runtime.bundle, runtime.boards\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'tensorflow', 'keras', 'jax', 'toolchain', 'torchaudio'))\n"
        "print(json.dumps(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("module,extra", [(runtime.bundle, set()), (runtime.boards, set()),
                                          (runtime.signing, {"cryptography"})])
def test_runtime_modules_import_only_stdlib(module: Any, extra: set[str]) -> None:
    # Stronger than the check above: the source itself names only standard-library modules and
    # other runtime modules (numpy would be allowed, but these do not need it); signing imports
    # cryptography, lazily, only when a signature is checked.
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    assert names <= set(sys.stdlib_module_names) | {"numpy", "runtime"} | extra, names
