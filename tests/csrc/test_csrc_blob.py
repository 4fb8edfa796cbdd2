"""The blob writer: format, determinism, C header, memory plan, and refusing what it cannot run exactly."""

from __future__ import annotations

import struct
import subprocess
import zlib

import numpy as np
import pytest
from csrc_helpers import BLOCK, HOST_CC, kernel_sources, litert_stream, strict_flags

from runtime.backends.ckernel import CKernelBackend
from toolchain.export import ckernel as ck
from toolchain.export.ckernel import numpy_ref
from toolchain.export.ckernel.format import HEADER_BYTES


def _edit_tflite(tflite: bytes, edit) -> bytes:
    """Unpack the flatbuffer, let ``edit(schema, model)`` change it, pack it again."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    edit(schema, model)
    b = flatbuffers.Builder(len(tflite) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _ops_named(schema, model, name: str) -> list:
    code = getattr(schema.BuiltinOperator, name)
    idx = {i for i, c in enumerate(model.operatorCodes) if max(c.builtinCode, c.deprecatedBuiltinCode) == code}
    return [op for op in model.subgraphs[0].operators if op.opcodeIndex in idx]


def test_header_and_checksum(seanet):
    blob = seanet.blob
    assert blob[:4] == ck.MAGIC
    version, header, total = struct.unpack_from("<3I", blob, 4)
    assert (version, header, total) == (ck.FORMAT_VERSION, HEADER_BYTES, len(blob))
    assert struct.unpack_from("<I", blob, len(blob) - 4)[0] == zlib.crc32(blob[:-4])
    m = ck.parse_blob(blob)
    assert m.block == BLOCK and len(m.state_tensors()) == 15


def test_deterministic(seanet):
    assert ck.tflite_to_blob(seanet.tflite) == seanet.blob


def test_memory_plan_is_compact_and_sound(seanet):
    m = ck.parse_blob(seanet.blob)
    scratch = [t for t in m.tensors if not t.is_state]
    assert m.scratch_bytes < 0.5 * sum(t.bytes for t in scratch)  # lifetimes are shared
    # Every state tensor has its own bytes.
    spans = sorted((t.offset, t.offset + t.bytes) for t in m.state_tensors())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # No op writes over a tensor that is read later, unless it is that tensor's own buffer (in place).
    last_read = {}
    for i, op in enumerate(m.ops):
        for t in op.inputs:
            last_read[t] = i
    for i, op in enumerate(m.ops):
        out = m.tensors[op.output]
        if out.is_state:
            continue
        for t, last in last_read.items():
            tt = m.tensors[t]
            if last <= i or tt.is_state or t == op.output:
                continue
            defined_before = any(o.output == t for o in m.ops[:i]) or t == m.input_tensor
            if not defined_before:
                continue
            same = (tt.offset, tt.bytes) == (out.offset, out.bytes)
            overlap = tt.offset < out.offset + out.bytes and out.offset < tt.offset + tt.bytes
            assert not overlap or same and op.kind in ("PRELU", "ADD") and t in op.inputs, (i, op.kind, t)


def test_c_header_compiles_to_the_same_bytes(seanet, tmp_path):
    hdr = ck.blob_to_c_header(seanet.blob, "hx_test_model")
    assert "HX_TEST_MODEL_LEN" in hdr and "HX_TEST_MODEL_ARENA_BYTES" in hdr
    (tmp_path / "model.h").write_text(hdr)
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "hx/hx.h"\n#include "model.h"\n'
        "static uint8_t arena[HX_TEST_MODEL_ARENA_BYTES];\n"
        "int main(void) { size_t need = 0; hx_model m; int8_t io[16] = {0};\n"
        "  FILE *f = fopen(\"out.bin\", \"wb\"); fwrite(hx_test_model, 1, HX_TEST_MODEL_LEN, f); fclose(f);\n"
        "  if (hx_model_state_size(hx_test_model, HX_TEST_MODEL_LEN, &need) != HX_OK) return 1;\n"
        "  if (need != sizeof(arena)) return 2;\n"
        "  if (hx_model_init(&m, hx_test_model, HX_TEST_MODEL_LEN, arena, sizeof(arena)) != HX_OK) return 3;\n"
        "  return hx_model_process(&m, io, io, 16) == HX_OK ? 0 : 4; }\n")
    exe = tmp_path / "main"
    r = subprocess.run([HOST_CC, *strict_flags("ref", ["-O1"]), f"-I{tmp_path}", str(tmp_path / "main.c"),
                        *kernel_sources("ref"), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], cwd=tmp_path)
    assert r.returncode == 0
    assert (tmp_path / "out.bin").read_bytes() == seanet.blob
    with pytest.raises(ValueError):
        ck.blob_to_c_header(seanet.blob, "not a name")


def test_describe_blob(seanet):
    d = ck.describe_blob(seanet.blob)
    m = ck.parse_blob(seanet.blob)
    assert d["arena_bytes"] == m.arena_bytes
    assert d["weight_bytes"] == m.data_bytes <= d["blob_bytes"]
    assert sum(d["op_counts"].values()) == len(m.ops)
    assert d["input_quant"]["zero_point"] == seanet.input_quant[1]
    assert d["input_quant"]["scale"] == pytest.approx(seanet.input_quant[0], rel=1e-7)


def test_parse_blob_rejects_damage(seanet):
    with pytest.raises(ck.BlobError, match="magic"):
        ck.parse_blob(b"XXXX" + seanet.blob[4:])
    with pytest.raises(ck.BlobError, match="truncated"):
        ck.parse_blob(seanet.blob[:-10])
    bad = bytearray(seanet.blob)
    bad[200] ^= 1
    with pytest.raises(ck.BlobError, match="checksum"):
        ck.parse_blob(bytes(bad))


# ------------------------------------------------------------------------- refusing graphs
def test_unknown_op_is_named(seanet):
    def edit(schema, model):
        op = _ops_named(schema, model, "PRELU")[0]
        code = model.operatorCodes[op.opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.TANH

    with pytest.raises(ck.BlobError, match=r"TANH .*not supported"):
        ck.tflite_to_blob(_edit_tflite(seanet.tflite, edit))


def test_same_padding_is_refused(seanet):
    def edit(schema, model):
        _ops_named(schema, model, "CONV_2D")[0].builtinOptions.padding = schema.Padding.SAME

    with pytest.raises(ck.BlobError, match=r"CONV_2D \(operator #\d+\): only VALID padding"):
        ck.tflite_to_blob(_edit_tflite(seanet.tflite, edit))


def test_unsupported_fused_activation_is_refused(seanet):
    def edit(schema, model):
        _ops_named(schema, model, "CONV_2D")[0].builtinOptions.fusedActivationFunction = \
            schema.ActivationFunctionType.TANH

    with pytest.raises(ck.BlobError, match="fused activation"):
        ck.tflite_to_blob(_edit_tflite(seanet.tflite, edit))


def test_concat_with_rescaling_is_refused(seanet):
    def edit(schema, model):
        op = _ops_named(schema, model, "CONCATENATION")[0]
        t = model.subgraphs[0].tensors[op.inputs[0]]
        t.quantization.scale = [float(t.quantization.scale[0]) * 1.5]

    with pytest.raises(ck.BlobError, match="CONCATENATION"):
        ck.tflite_to_blob(_edit_tflite(seanet.tflite, edit))


def test_bad_arguments(seanet):
    with pytest.raises(ck.BlobError):
        ck.tflite_to_blob(b"definitely not a flatbuffer")
    with pytest.raises(ck.BlobError, match="target"):
        ck.tflite_to_blob(seanet.tflite, target="nearest")


def test_fused_relu_conv_matches_litert(seanet):
    """A fused activation the kernel supports (RELU on a CONV_2D) stays bit-exact with LiteRT."""
    def edit(schema, model):
        for op in _ops_named(schema, model, "CONV_2D")[::3]:
            op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU

    tfl = _edit_tflite(seanet.tflite, edit)
    blob = ck.tflite_to_blob(tfl)
    x = seanet.audio_q[: 600 * BLOCK]
    y_c = CKernelBackend(blob, arch="ref").process(x)
    assert np.array_equal(y_c, litert_stream(tfl, x, reference=True))
    assert np.array_equal(y_c[:100 * BLOCK], numpy_ref.run_blob(blob, x[:100 * BLOCK]))
    assert not np.array_equal(y_c, CKernelBackend(seanet.blob, arch="ref").process(x))
