"""Host-side bundle writer: what it writes loads on the device side, damage is caught, and a
failure at any step leaves neither a temporary directory nor a damaged old bundle."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolchain.export.bundle as writer
from runtime.bundle import FORMAT_VERSION, MANIFEST_NAME, BundleError, load_bundle
from toolchain.export.bundle import toolchain_version, write_bundle

FILES: dict[str, bytes] = {
    "model_int8.tflite": b"TFL3" + bytes(range(256)) * 3,
    "model_fp32.tflite": b"TFL3" + b"\x11" * 500,
    "model.onnx": b"onnx" * 64,
    "kernel/model.hxb": b"HXB1" + bytes(range(100)),
}


def q8(name: str, shape: list[int], scale: float = 0.01, zp: int = 0) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": "int8", "scale": scale, "zero_point": zp}


def f32(name: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": "float32"}


def fields(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "model": "seanet-tiny",
        "target": "rpi4",
        "sample_rate": 16000,
        "block": 16,
        "algorithmic_latency_samples": 19,
        "output_limit": 0.891,
        "audiogram": {"name": "mild-flat", "thresholds_db_hl": [30] * 8,
                      "frequencies_hz": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]},
        "graphs": {
            "int8": {"file": "model_int8.tflite",
                     "inputs": [q8("audio", [1, 16, 1]), q8("s", [1, 4, 8], 0.02, 5)],
                     "outputs": [q8("out", [1, 16, 1]), q8("s_out", [1, 4, 8], 0.02, 5)],
                     "states": [{"input": "s", "output": "s_out"}]},
            "fp32": {"file": "model_fp32.tflite",
                     "inputs": [f32("audio", [1, 16, 1])], "outputs": [f32("out", [1, 16, 1])]},
            "onnx": {"file": "model.onnx",
                     "inputs": [f32("audio", [1, 1, 16])], "outputs": [f32("out", [1, 1, 16])]},
            "ckernel": {"file": "kernel/model.hxb",
                        "inputs": [q8("audio", [16])], "outputs": [q8("out", [16])]},
        },
        "metrics": {"int8_vs_fp32_snr_db": 30.25},
    }
    d.update(over)
    return d


def entries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# --- writing ------------------------------------------------------------------------


def test_written_bundle_loads(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle", fields(), FILES)
    assert out == tmp_path / "bundle"
    b = load_bundle(out)
    m = b.manifest
    assert m.format_version == FORMAT_VERSION
    assert m.files == {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert m.toolchain_version == toolchain_version() != ""
    assert m.created_utc.endswith("Z")
    assert m.graph("int8").states[0].output == "s_out"
    for name, data in FILES.items():
        assert b.file(name).read_bytes() == data
    # Nothing but the bundle is left next to it.
    assert entries(tmp_path) == ["bundle"]
    # The manifest is written with the runtime's stable key order, files sorted.
    d = json.loads((out / MANIFEST_NAME).read_text())
    assert list(d)[:3] == ["format_version", "model", "target"]
    assert list(d["files"]) == sorted(FILES)


def test_bundle_is_readable_by_other_users(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle", fields(), FILES)
    assert out.stat().st_mode & 0o755 == 0o755  # mkdtemp alone would give 0700


def test_files_from_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = os.urandom((1 << 20) * 2 + 7)  # copied in chunks
    (src / "m.tflite").write_bytes(big)
    files: dict[str, Any] = {**FILES, "model_int8.tflite": src / "m.tflite"}
    out = write_bundle(tmp_path / "bundle", fields(), files)
    assert (out / "model_int8.tflite").read_bytes() == big
    assert load_bundle(out).manifest.files["model_int8.tflite"] == hashlib.sha256(big).hexdigest()


def test_relative_out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = write_bundle("bundle", fields(), FILES)
    assert load_bundle(out).path == Path("bundle")
    assert entries(tmp_path) == ["bundle"]


def test_missing_parent_is_created(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "a" / "b" / "bundle", fields(), FILES)
    load_bundle(out)


def test_caller_values_are_kept(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "b", fields(created_utc="2020-01-01T00:00:00Z",
                                              toolchain_version="9.9", seed=3), FILES)
    m = load_bundle(out).manifest
    assert (m.created_utc, m.toolchain_version, m.extra) == ("2020-01-01T00:00:00Z", "9.9",
                                                             {"seed": 3})


def test_numpy_values_are_converted(tmp_path: Path) -> None:
    import numpy as np
    f = fields(block=np.int64(16), output_limit=np.float32(0.5),
               metrics={"snr": np.float64(12.5), "n": np.int32(3)})
    f["graphs"]["int8"]["inputs"][0]["shape"] = np.array([1, 16, 1])
    m = load_bundle(write_bundle(tmp_path / "b", f, FILES)).manifest
    assert (m.block, m.output_limit, m.metrics) == (16, 0.5, {"snr": 12.5, "n": 3})


def test_toolchain_version_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import toolchain

    monkeypatch.setattr(toolchain, "__version__", "1.2.3", raising=False)
    assert toolchain_version() == "1.2.3"
    monkeypatch.delattr(toolchain, "__version__")
    assert toolchain_version()  # package metadata or "0.1.0"


@pytest.mark.parametrize("name", sorted(FILES) + [MANIFEST_NAME])
def test_changed_byte_in_written_bundle_is_refused(tmp_path: Path, name: str) -> None:
    out = write_bundle(tmp_path / "bundle", fields(), FILES)
    p = out / name
    data = bytearray(p.read_bytes())
    if name == MANIFEST_NAME:
        # Change a value, keep valid JSON: only the manifest's own digest can catch this.
        text = data.decode().replace('"block": 16', '"block": 17')
        assert text != data.decode()
        p.write_text(text)
        expected = f"{p}: manifest_sha256 mismatch (file changed or corrupt)"
    else:
        data[len(data) // 3] ^= 0x80
        p.write_bytes(bytes(data))
        expected = f"{p}: sha256 mismatch (file changed or corrupt)"
    with pytest.raises(BundleError) as e:
        load_bundle(out)
    assert one_line(e) == expected


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.from_regex(r"[a-z0-9_]{1,8}(/[a-z0-9_]{1,8}){0,2}\.bin", fullmatch=True),
                      min_size=1, max_size=5, unique=True),
       payload=st.binary(max_size=300))
def test_any_member_names_round_trip(tmp_path_factory: pytest.TempPathFactory,
                                     names: list[str], payload: bytes) -> None:
    # A name that is a directory prefix of another ("a.bin" vs "a.bin/x.bin") is impossible.
    names_set = set(names)
    if any("/".join(n.split("/")[:i]) in names_set
           for n in names for i in range(1, n.count("/") + 1)):
        return
    files = {n: payload + n.encode() for n in names}
    f = fields(graphs={"g": {"file": names[0], "inputs": [f32("x", [16])],
                             "outputs": [f32("y", [16])]}})
    out = write_bundle(tmp_path_factory.mktemp("w") / "bundle", f, files)
    b = load_bundle(out)
    assert {n: b.file(n).read_bytes() for n in names} == files


# --- refusals before anything is written --------------------------------------------


@pytest.mark.parametrize("bad", ["../x.bin", "/abs.bin", "a/../../x.bin", "a\\b.bin", "./x",
                                 MANIFEST_NAME])
def test_bad_member_names_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BundleError) as e:
        write_bundle(tmp_path / "b", fields(), {**FILES, bad: b"x"})
    assert one_line(e).startswith(f"{bad}: ")
    assert entries(tmp_path) == []
    assert not (tmp_path.parent / "x.bin").exists()


def test_file_and_directory_clash(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="kernel: listed as a file"):
        write_bundle(tmp_path / "b", fields(), {**FILES, "kernel": b"x"})


def test_str_content_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="model.onnx: pass bytes or a pathlib.Path, not str"):
        write_bundle(tmp_path / "b", fields(), {**FILES, "model.onnx": "some/path"})


def test_missing_source_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a readable file"):
        write_bundle(tmp_path / "b", fields(), {**FILES, "model.onnx": tmp_path / "nope"})
    assert entries(tmp_path) == []


@pytest.mark.parametrize("key", ["files", "manifest_sha256"])
def test_reserved_fields_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(BundleError, match=f"'{key}' is filled in by write_bundle"):
        write_bundle(tmp_path / "b", fields(**{key: {}}), FILES)


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="format_version 2 cannot be written"):
        write_bundle(tmp_path / "b", fields(format_version=2), FILES)


def test_schema_error_names_destination_manifest(tmp_path: Path) -> None:
    f = fields()
    f["graphs"]["int8"]["outputs"][1]["scale"] = 0.03  # state out != state in
    with pytest.raises(BundleError) as e:
        write_bundle(tmp_path / "b", f, FILES)
    msg = one_line(e)
    assert msg.startswith(f"{tmp_path / 'b' / MANIFEST_NAME}: graphs.int8 state 's' -> 's_out': "
                          "scale 0.02 != 0.03")
    assert entries(tmp_path) == []


def test_graph_file_must_be_among_files(tmp_path: Path) -> None:
    files = {k: v for k, v in FILES.items() if k != "model.onnx"}
    with pytest.raises(BundleError, match="graphs.onnx.file 'model.onnx' is not listed in files"):
        write_bundle(tmp_path / "b", fields(), files)


def test_unserialisable_field(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not JSON-serialisable"):
        write_bundle(tmp_path / "b", fields(extra={"x": object()}), FILES)


# --- existing destination -----------------------------------------------------------


def test_existing_bundle_without_overwrite(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "b", fields(), FILES)
    before = (out / MANIFEST_NAME).read_bytes()
    with pytest.raises(BundleError) as e:
        write_bundle(out, fields(model="other"), FILES)
    assert one_line(e) == f"{out}: already exists (pass overwrite=True to replace it)"
    assert (out / MANIFEST_NAME).read_bytes() == before
    assert entries(tmp_path) == ["b"]


def test_overwrite_replaces_old_bundle(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "b", fields(), {**FILES, "old_only.bin": b"old"})
    write_bundle(out, fields(model="seanet-small"), FILES, overwrite=True)
    b = load_bundle(out)
    assert b.manifest.model == "seanet-small"
    assert not (out / "old_only.bin").exists()  # replaced whole, not merged
    assert entries(tmp_path) == ["b"]  # old copy and temp dir are gone


def test_overwrite_refuses_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(BundleError, match="exists and is not a bundle directory"):
        write_bundle(home, fields(), FILES, overwrite=True)
    assert (home / "thesis.tex").read_text() == "precious"
    assert entries(tmp_path) == ["home"]


def test_overwrite_accepts_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    load_bundle(write_bundle(tmp_path / "b", fields(), FILES, overwrite=True))


# --- atomicity ----------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", [1, 2, 4, 5])  # 5th write is manifest.json
@pytest.mark.parametrize("existing", [False, True])
def test_failure_midway_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        fail_at: int, existing: bool) -> None:
    out = tmp_path / "bundle"
    if existing:
        write_bundle(out, fields(model="old"), FILES)
        old = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = writer._write_member
    calls = {"n": 0}

    def flaky(tmp: Path, name: str, data: Any) -> str:
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("disk on fire")
        return real(tmp, name, data)

    monkeypatch.setattr(writer, "_write_member", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_bundle(out, fields(model="new"), FILES, overwrite=True)
    assert entries(tmp_path) == (["bundle"] if existing else [])
    if existing:
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == old
        assert load_bundle(out).manifest.model == "old"


def test_os_error_midway_becomes_bundle_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = writer._write_member

    def full(tmp: Path, name: str, data: Any) -> str:
        if name == "model.onnx":
            raise OSError(28, "No space left on device", str(tmp / name))
        return real(tmp, name, data)

    monkeypatch.setattr(writer, "_write_member", full)
    with pytest.raises(BundleError) as e:
        write_bundle(tmp_path / "b", fields(), FILES)
    # Named by its final path, not the temporary one.
    assert one_line(e) == (f"{tmp_path / 'b' / 'model.onnx'}: cannot write bundle "
                           "(No space left on device)")
    assert entries(tmp_path) == []


def test_failed_verification_leaves_old_bundle(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_bundle(tmp_path / "b", fields(model="old"), FILES)

    def broken(path: Any, **kw: Any) -> Any:
        raise BundleError(f"{path}/model.onnx: sha256 mismatch (file changed or corrupt)")

    monkeypatch.setattr(writer, "load_bundle", broken)
    with pytest.raises(BundleError) as e:
        write_bundle(out, fields(model="new"), FILES, overwrite=True)
    # Reported against the destination, not the temporary directory.
    assert one_line(e) == f"{out}/model.onnx: sha256 mismatch (file changed or corrupt)"
    monkeypatch.undo()
    assert load_bundle(out).manifest.model == "old"
    assert entries(tmp_path) == ["b"]


def test_failed_final_rename_restores_old_bundle(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_bundle(tmp_path / "b", fields(model="old"), FILES)
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        # Let the old bundle move aside, then fail to move the new one in.
        if Path(src).name.startswith(".hx-bundle-"):
            raise OSError(5, "Input/output error", str(src))
        real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", rename)
    with pytest.raises(BundleError, match="cannot write bundle"):
        write_bundle(out, fields(model="new"), FILES, overwrite=True)
    monkeypatch.undo()
    assert load_bundle(out).manifest.model == "old"
    assert entries(tmp_path) == ["b"]


# --- unwritable destination ---------------------------------------------------------


def test_parent_is_a_file(tmp_path: Path) -> None:
    # Tests run as root, which ignores directory permissions; a regular file in the path
    # is unwritable for everyone.
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(BundleError) as e:
        write_bundle(blocker / "bundle", fields(), FILES)
    assert one_line(e) == f"{blocker}: cannot create the bundle here (not a directory)"
    assert blocker.read_text() == "x"


def test_grandparent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(BundleError) as e:
        write_bundle(blocker / "sub" / "bundle", fields(), FILES)
    msg = one_line(e)
    assert msg.startswith(f"{blocker / 'sub'}: cannot create the bundle here")

