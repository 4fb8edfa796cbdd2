"""Per-layer drift report: layers paired by structure, SNRs that are what they claim, in the manifest."""

import json

import numpy as np
import pytest
import torch

from runtime.backends.base import dequantize, quantize
from runtime.backends.litert import LiteRTBackend
from runtime.bundle import load_bundle
from tests.helpers import speech_clip
from toolchain.export.layer_map import LayerMapError, map_layers
from toolchain.export.pipeline import DEFAULT_CHECKPOINT, snr_db
from toolchain.export.quant.drift import layer_drift
from toolchain.models.compensators.seanet import SEANetConfig, load_seanet


@pytest.fixture(scope="module")
def case(default_bundle):
    b = load_bundle(default_bundle)
    graph = load_seanet(str(DEFAULT_CHECKPOINT)).fit(b.manifest.audiogram["thresholds_db_hl"]).streaming()
    fp32 = b.graph_file("fp32").read_bytes()
    int8 = b.graph_file("int8").read_bytes()
    x = speech_clip("test", 4, seconds=0.6)
    return graph, fp32, int8, x[: len(x) // 16 * 16]


def test_every_layer_is_mapped_in_both_graphs(case):
    graph, fp32, int8, _ = case
    sf, sq = map_layers(graph, fp32), map_layers(graph, int8)
    modules = [n.target for n in graph.gm.graph.nodes if n.op == "call_module"]
    assert [s.layer for s in sf if s.kind not in ("input", "add")] == modules
    assert [(s.layer, s.kind, s.op) for s in sf] == [(s.layer, s.kind, s.op) for s in sq]
    assert len({s.output for s in sq}) == len(sq)           # no tensor claimed twice
    # the last site is the graph output y, an add of the output conv and the input's filter skip
    assert sq[-1].kind == "add" and set(sq[-1].sources) == {"out_conv", "skip_out"}
    assert [s.op for s in sq if s.layer in ("skip_in", "skip_out")] == ["CONV_2D", "CONV_2D"]


def test_a_graph_of_another_model_is_refused(case):
    _, _, int8, _ = case
    other = load_seanet(str(DEFAULT_CHECKPOINT)).__class__(SEANetConfig(strides=(2, 8)))
    other_graph = other.fit(np.zeros(8)).streaming()
    with pytest.raises(LayerMapError) as e:
        map_layers(other_graph, int8)
    assert "\n" not in str(e.value)


def test_output_row_is_the_end_to_end_snr(case):
    """The report's last row (y) equals an independent int8-vs-fp32 measurement of the same stream."""
    graph, fp32, int8, x = case
    rep = layer_drift(graph, fp32, int8, [x], 16)
    assert rep.blocks == len(x) // 16 and rep.quant_dtype == "int8"
    assert len(rep.layers) == len(map_layers(graph, fp32))
    bf = LiteRTBackend(fp32, reference_kernels=True)
    yf = np.concatenate([bf.process(x[i:i + 16]) for i in range(0, len(x), 16)])
    b8 = LiteRTBackend(int8, reference_kernels=True)
    y8 = np.concatenate([b8.process(x[i:i + 16]) for i in range(0, len(x), 16)])
    assert rep.layers[-1].snr_db == pytest.approx(snr_db(yf, y8), abs=0.01)
    # the first row is the input quantisation alone
    sx, zx = b8.input_quant
    assert rep.layers[0].layer == "x"
    assert rep.layers[0].snr_db == pytest.approx(snr_db(x, dequantize(quantize(x, sx, zx), sx, zx)), abs=0.01)
    worst = rep.worst()
    assert len(worst) == 3 and worst[0].snr_db <= worst[1].snr_db <= worst[2].snr_db
    assert worst[0].snr_db == min(d.snr_db for d in rep.layers)
    drops = rep.largest_drops()
    assert drops[0].drop_db == max(d.drop_db for d in rep.layers)


def _coarsen(int8: bytes, tensor: int, factor: float) -> bytes:
    """The same int8 graph with one activation tensor's scale multiplied by ``factor`` (fewer levels)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(int8, 0)
    q = m.subgraphs[0].tensors[tensor].quantization
    q.scale = [float(v) * factor for v in q.scale]
    b = flatbuffers.Builder(len(int8) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_drift_localises_a_damaged_layer(case):
    """A layer quantised 16x more coarsely shows up as that layer's drop, and as no other layer's."""
    graph, fp32, int8, x = case
    site = next(s for s in map_layers(graph, int8) if s.layer == "dec_res.1.conv1")
    base = {d.layer: d for d in layer_drift(graph, fp32, int8, [x], 16).layers}
    damaged = layer_drift(graph, fp32, _coarsen(int8, site.output, 16.0), [x], 16)
    rows = {d.layer: d for d in damaged.layers}
    assert rows["dec_res.1.conv1"].snr_db < base["dec_res.1.conv1"].snr_db - 10
    grew = {k: rows[k].drop_db - base[k].drop_db for k in rows}
    assert max(grew, key=grew.get) == "dec_res.1.conv1" and grew["dec_res.1.conv1"] > 10
    assert rows["enc_res.0.conv1"].snr_db == pytest.approx(base["enc_res.0.conv1"].snr_db)  # upstream untouched


def test_bundle_carries_the_drift_report(default_bundle):
    d = json.loads((default_bundle / "manifest.json").read_text())
    drift = d["extra"]["drift"]
    mt = d["metrics"]
    assert drift["quant_dtype"] == "int8" and drift["blocks"] > 1000
    names = [r["layer"] for r in drift["layers"]]
    assert names[0] == "x" and "out_conv" in names and len(names) == len(set(names))
    # an exact layer (the default's zero-initialised correction conv) is written as the string "inf"
    snr = lambda r: float(r["snr_db"])  # noqa: E731
    # the three lowest SNRs (layers that tie, e.g. an add and the conv that feeds it all of its signal,
    # may come in either order)
    assert [snr(w) for w in drift["worst"]] == [snr(r) for r in sorted(drift["layers"], key=snr)[:3]]
    assert mt["drift_worst_layer"] == drift["worst"][0]["layer"]
    assert mt["drift_worst_layer_snr_db"] == drift["worst"][0]["snr_db"]
    assert mt["drift_largest_drop_layer"] == drift["largest_drops"][0]["layer"]


def test_export_summary_names_the_worst_layer(default_bundle):
    from rich.console import Console

    from toolchain.cli import _print_summary

    con = Console(record=True, width=200)
    _print_summary(con, load_bundle(default_bundle))
    text = con.export_text()
    worst = load_bundle(default_bundle).manifest.metrics["drift_worst_layer"]
    line = next(ln for ln in text.splitlines() if "worst int8 layer" in ln)
    assert worst in line and "dB" in line


def test_layer_drift_refuses_a_float_graph_as_the_quantised_one(case):
    graph, fp32, _, x = case
    with pytest.raises(ValueError, match="float input"):
        layer_drift(graph, fp32, fp32, [x], 16)
    with pytest.raises(ValueError, match="at least one clip"):
        layer_drift(graph, fp32, case[2], [], 16)


def test_fp32_intermediates_equal_torch(case):
    """The fp32 tensors the report reads really are the torch layers' outputs (pairing by structure)."""
    graph, fp32, _, x = case
    from toolchain.export.quant.drift import _Stepper

    st = _Stepper(fp32)
    sites = map_layers(graph, st.it)
    st.reset()
    for i in range(0, 160, 16):
        st.step(x[i:i + 16])
    got = {s.layer: st.read(s.output).reshape(-1, st.read(s.output).shape[-1]) for s in sites}
    outs = {}
    hooks = [graph.gm.get_submodule(s.layer).register_forward_hook(
        lambda m, i, o, name=s.layer: outs.__setitem__(name, o[0].detach().numpy().T))
        for s in sites if s.kind not in ("input", "add")]
    try:
        with torch.no_grad():
            graph.gm(torch.from_numpy(x[:160]).reshape(1, 1, -1))
    finally:
        for h in hooks:
            h.remove()
    for name, full in outs.items():
        last = full[-got[name].shape[0]:]                     # the frames of the tenth block
        np.testing.assert_allclose(got[name], last, atol=2e-5, err_msg=name)
