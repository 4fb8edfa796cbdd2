"""``toolchain export``: fitted torch model → Keras → fp32/int8 TFLite + ONNX (+ C blob) → bundle.

Every number the manifest reports is measured here, on the files that ship: the Keras rebuild
and the ONNX graph against torch, the int8 graph against fp32 on held-out synthetic speech
(audio the calibration never saw), and the algorithmic latency by impulse through the
deployed int8 graph (it must equal the model's analytic figure, or the export fails).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch
from ai_edge_litert.interpreter import Interpreter

from runtime.backends.base import dequantize, quantize
from runtime.backends.litert import LiteRTBackend
from runtime.backends.onnx import OnnxBackend
from runtime.boards import Board
from runtime.bundle import Bundle, load_bundle
from runtime.harness.measure import LatencyProbeError, impulse_latency, stream
from runtime.native_log import native_chatter
from runtime.signing import TrustPolicy
from toolchain.audio.audiogram import AUDIOGRAM_FREQS_HZ, Audiogram
from toolchain.audio.data import CorpusConfig, SyntheticCorpus
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.export import ckernel, process_cache, self_noise
from toolchain.export.bundle import write_bundle
from toolchain.export.device_memory import DeviceMemoryError, device_memory
from toolchain.export.onnx import export_onnx
from toolchain.export.quant.calibration import calibration_reps, with_headroom
from toolchain.export.quant.drift import layer_drift
from toolchain.export.quant.int16_graph import Int16GraphError, finalize_16x8
from toolchain.export.quant.qat import qat_finetune, quantize_into
from toolchain.export.self_noise import SNR_LEVELS_DB_SPL, snr_db
from toolchain.models.compensators.seanet import SEANet, load_seanet
from toolchain.models.compensators.streaming import StreamingGraph

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "seanet_default.pt"

Progress = Callable[[str, float], None]  # (stage description, fraction done 0..1)


class ExportError(ValueError):
    """A user-facing export failure (one line)."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how. ``block`` defaults to the board's block."""

    board: Board
    audiogram: Audiogram
    out_dir: Path
    checkpoint: Path = DEFAULT_CHECKPOINT
    block: int | None = None
    overwrite: bool = False
    # A toolchain.export.signing.SigningKey: the bundle is signed (manifest.sig) before its rename.
    signing_key: Any = None
    calib_clips: int = 24
    calib_blocks: int = 2000          # representative samples given to the converter
    test_clips: int = 6
    corpus_seed: int = 0
    clip_seconds: float = 2.0
    # Calibration and the int8-vs-fp32 measurement use conversational speech: int8 I/O carries
    # ~48 dB, so the level range it is calibrated for decides the SNR at every other level.
    speech_level_db_spl: tuple[float, float] = (60.0, 70.0)
    snr_db: tuple[float, float] = (10.0, 30.0)
    # Quantisation-aware fine-tuning steps (0: plain post-training quantisation). Explicit rather
    # than automatic: a few hundred steps cost minutes of CPU, which a fitting session should ask for.
    qat_steps: int = 0
    qat_lr: float = 1e-4
    # The device graph: "16x8" (int16 audio, state and activations, int8 weights: model_16x8.tflite)
    # or "int8" (full integer); None takes the board's ``runtime.quant``. The int8 graph is written
    # either way (boards that need it, and the drift report's comparison).
    quant: str | None = None
    drift_clips: int = 2              # held-out clips the per-layer drift report streams
    # 16x8 calibration also sees every calibration block this much louder: int16 has resolution to
    # spare, and speech peaks beyond the calibration set's (a held-out clip at the same nominal level
    # peaks at 1.4x the loudest calibration sample) would otherwise clip, which costs more than all
    # the rounding (24 vs 48 dB on that clip). PReLU/LeakyReLU nets are positively homogeneous, so
    # scaling the input and the state by g is the same audio g times louder, up to the biases.
    int16_headroom_db: float = 12.0
    # Self-noise and dynamic range of the device graph (toolchain/export/self_noise.py): held-out
    # speech at each of these levels separately, and seconds of digital silence.
    noise_levels_db_spl: tuple[float, ...] = SNR_LEVELS_DB_SPL
    noise_clips: int = 2
    silence_seconds: float = 3.0

    def __post_init__(self) -> None:
        if self.quant is not None and self.quant not in QUANT_MODES:
            raise ExportError(f"quant {self.quant!r}; expected one of {', '.join(QUANT_MODES)}")
        if self.qat_steps < 0:
            raise ExportError(f"qat steps must be >= 0, got {self.qat_steps}")
        if not self.qat_lr > 0:
            raise ExportError(f"qat learning rate must be positive, got {self.qat_lr}")
        if self.drift_clips < 1:
            raise ExportError(f"drift clips must be >= 1, got {self.drift_clips}")
        if not 0.0 <= self.int16_headroom_db <= 40.0:
            raise ExportError(f"int16 headroom must be 0..40 dB, got {self.int16_headroom_db}")


QUANT_MODES = ("int8", "16x8")


@dataclass
class ExportReport:
    bundle: Bundle
    metrics: dict[str, Any] = field(default_factory=dict)


def _noop(stage: str, frac: float) -> None:
    pass


def _corpus(split: str, n: int, opts: ExportOptions, sample_rate: int) -> np.ndarray:
    cfg = CorpusConfig(sample_rate=sample_rate, seconds=opts.clip_seconds,
                       speech_level_db_spl=opts.speech_level_db_spl, snr_db=opts.snr_db)

    def make() -> np.ndarray:
        corpus = SyntheticCorpus(split, cfg, seed=opts.corpus_seed, size=n, workers=2)
        noisy, _ = corpus.batch(list(range(n)))
        return noisy.astype(np.float32)

    # The same clips for every patient: a fleet worker makes them once (process_cache).
    return process_cache.corpus((split, n, opts.corpus_seed, repr(cfg)), make)


def _tensor_specs(details: dict[str, dict], names: list[str]) -> list[dict[str, Any]]:
    specs = []
    for name in names:
        d = details[name]
        scale, zp = d["quantization"]
        integer = np.issubdtype(d["dtype"], np.integer)
        specs.append({"name": name, "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                      "scale": float(scale) if integer else None, "zero_point": int(zp) if integer else None})
    return specs


def _tflite_graph_spec(model: bytes, file: str) -> dict[str, Any]:
    with native_chatter("litert"):  # its XNNPACK INFO line, shown with --verbose
        run = Interpreter(model_content=model).get_signature_runner()
    ins, outs = run.get_input_details(), run.get_output_details()
    states = sorted(k for k in ins if k.startswith("state_in_"))
    return {
        "file": file,
        "inputs": _tensor_specs(ins, ["x", *states]),
        "outputs": _tensor_specs(outs, ["y", *[s.replace("_in_", "_out_") for s in states]]),
        "states": [{"input": s, "output": s.replace("_in_", "_out_")} for s in states],
    }


def _onnx_graph_spec(model: bytes, file: str) -> dict[str, Any]:
    g = onnx.load_from_string(model).graph

    def spec(v: Any) -> dict[str, Any]:
        shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": "float32", "scale": None, "zero_point": None}

    states = [v.name for v in g.input if v.name.startswith("state_in_")]
    return {"file": file, "inputs": [spec(v) for v in g.input], "outputs": [spec(v) for v in g.output],
            "states": [{"input": s, "output": s.replace("_in_", "_out_")} for s in states]}


def _count_int8_ops(model: bytes, integer: tuple[str, ...] = ("int8", "int32")) -> dict[str, Any]:
    """Op histogram and the ops that compute on anything but the ``integer`` tensor types."""
    it = Interpreter(model_content=model)
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in it.get_tensor_details()}
    ops: dict[str, int] = {}
    float_ops = []
    for op in it._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
        used = [dtypes[i] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(t not in integer for t in used):
            float_ops.append(op["op_name"])
    return {"ops": ops, "float_ops": float_ops}


# 16x8: int16 activations, int8 weights, int32 or int64 bias (CONV_2D), int32 shape operands
_INT16X8_TYPES = ("int16", "int8", "int32", "int64")


def _check_quant_mode(model: SEANet, quant: str) -> None:
    """Refuse, before minutes of work, a quantisation the model's layers cannot take."""
    if quant == "16x8" and model.config.activation == "prelu":
        raise ExportError("quant 16x8: the model uses PReLU, which LiteRT's 16x8 quantiser refuses (PRELU has no "
                          "int16 kernel); export a model trained with activation = \"leaky_relu\", or use int8")
    if model.config.activation == "elu":
        raise ExportError("the model uses ELU, which TFLite's converter leaves in float (no full-integer graph); "
                          "export a model trained with activation = \"prelu\" or \"leaky_relu\"")


def load_model(checkpoint: Path) -> SEANet:
    if not Path(checkpoint).is_file():
        raise ExportError(f"{checkpoint}: model checkpoint not found")
    try:
        return load_seanet(str(checkpoint))
    except Exception as e:  # torch raises many types for a bad file
        raise ExportError(f"{checkpoint}: not a compensator checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


#: torch intra-op threads during an export (see process_cache.torch_threads: reproducible bytes).
EXPORT_TORCH_THREADS = 1


def export_bundle(opts: ExportOptions, progress: Progress = _noop) -> ExportReport:
    """Run the whole export and write the bundle atomically; raises ExportError / BundleError."""
    with process_cache.torch_threads(EXPORT_TORCH_THREADS):
        return _export_bundle(opts, progress)


def _export_bundle(opts: ExportOptions, progress: Progress) -> ExportReport:
    # Lazy: TensorFlow (imported by tflite.py) costs seconds, and only an export needs it.
    from toolchain.export import tflite

    t0 = time.perf_counter()
    board = opts.board
    block = opts.block or board.audio.block
    progress("loading model", 0.0)
    model = process_cache.model(opts.checkpoint, load_model)
    sr = model.config.sample_rate
    if sr != board.audio.sample_rate:
        raise ExportError(f"model runs at {sr} Hz but target {board.name} runs at {board.audio.sample_rate} Hz")
    try:
        model.check_block(block)
    except ValueError as e:
        raise ExportError(str(e)) from None
    quant = opts.quant or board.runtime.quant
    _check_quant_mode(model, quant)
    fitted = model.fit(opts.audiogram.as_array())
    graph: StreamingGraph = fitted.streaming()

    progress("generating calibration and test audio", 0.05)
    calib = _corpus("calib", opts.calib_clips, opts, sr)
    test = _corpus("test", opts.test_clips, opts, sr)

    progress("collecting calibration states", 0.15)
    reps = calibration_reps(graph, calib, block, opts.calib_blocks, opts.corpus_seed)

    progress("building the Keras step graph", 0.25)
    keras_model, keras_step = process_cache.keras_step(graph, block)
    with torch.no_grad():
        ref_test = [graph.gm(torch.from_numpy(c[: len(c) // block * block]).reshape(1, 1, -1)).numpy().ravel() for c in test]
    # Keras vs torch on the start of a held-out clip, streamed with state fed back (eager
    # Keras costs milliseconds per call, so a few hundred blocks, not the whole set).
    clip = test[0][: min(len(test[0]) // block, 200) * block]
    kstate = [np.zeros((1, 1, s.frames, s.channels), np.float32) for s in graph.slots]
    ky = []
    for i in range(0, len(clip), block):
        y, kstate = keras_step(clip[i:i + block].reshape(1, 1, block, 1), kstate)
        ky.append(y.ravel())
    keras_err = float(np.max(np.abs(np.concatenate(ky) - ref_test[0][: len(clip)])))

    progress("converting to fp32 and int8 TFLite (calibrating)", 0.35)
    art = tflite.convert(keras_model, len(graph.slots), lambda: iter(reps))
    op_check = _count_int8_ops(art.int8)
    if op_check["float_ops"]:
        raise ExportError(f"int8 graph still computes in float in: {sorted(set(op_check['float_ops']))}")

    ref = np.concatenate(ref_test)
    int8 = art.int8
    y8 = np.concatenate([stream(LiteRTBackend(int8, num_threads=1), c) for c in test])
    snr8 = snr_db(ref, y8)
    qat_metrics: dict[str, Any] = {}
    if opts.qat_steps:
        int8, snr8, qat_metrics = _qat_export(fitted, art.int8, snr8, calib, test, ref, block, opts, progress)
        if int8 is not art.int8:
            y8 = np.concatenate([stream(LiteRTBackend(int8, num_threads=1), c) for c in test])

    progress("exporting ONNX", 0.6)
    onnx_bytes = export_onnx(graph, block)

    progress("measuring int8 vs fp32, ONNX, latency", 0.7)
    int8_backend = LiteRTBackend(int8, num_threads=1)
    fp32_backend = LiteRTBackend(art.fp32, num_threads=1)
    onnx_backend = OnnxBackend(onnx_bytes)
    # Where the int8 error comes from: the int8 input alone (the ADC-like resolution of the
    # I/O format) versus the graph's internal quantisation (fp32 fed the same int8 samples).
    sx, zx = int8_backend.input_quant
    xq = [dequantize(quantize(c[: len(c) // block * block], sx, zx), sx, zx) for c in test]
    with torch.no_grad():
        ref_q = np.concatenate([graph.gm(torch.from_numpy(c).reshape(1, 1, -1)).numpy().ravel() for c in xq])
    snr_input = snr_db(np.concatenate([c[: len(c) // block * block] for c in test]), np.concatenate(xq))
    # Two ceilings no int8 graph can pass: the exact fp32 model fed the int8 input samples (the
    # input grid's error carried through the compensator's gain), and the exact fp32 output rounded
    # to the output's int8 grid.
    snr_input_ceiling = snr_db(ref, ref_q)
    sy, zy = int8_backend.output_quant
    snr_output = snr_db(ref, dequantize(quantize(ref, sy, zy), sy, zy))
    snr_graph = snr_db(ref_q, y8)
    fp32_err = float(np.max(np.abs(np.concatenate([stream(fp32_backend, c) for c in test]) - ref)))
    onnx_err = float(np.max(np.abs(np.concatenate([stream(onnx_backend, c) for c in test]) - ref)))
    latency = fitted.algorithmic_latency_samples(block)

    progress("per-layer drift of the int8 graph", 0.8)
    drift_clips = list(test[: opts.drift_clips])
    drift = layer_drift(graph, art.fp32, int8, drift_clips, block)
    extra_sections: dict[str, Any] = {"drift": drift.to_dict()}

    files: dict[str, bytes] = {"model_int8.tflite": int8, "model_fp32.tflite": art.fp32, "model.onnx": onnx_bytes}
    graphs = {"int8": _tflite_graph_spec(int8, "model_int8.tflite"),
              "fp32": _tflite_graph_spec(art.fp32, "model_fp32.tflite"),
              "onnx": _onnx_graph_spec(onnx_bytes, "model.onnx")}
    int16_metrics: dict[str, Any] = {}
    device, default_graph = int8, "int8"
    if quant == "16x8":
        progress("converting to 16x8 TFLite (int16 audio and activations, int8 weights)", 0.85)
        reps16 = with_headroom(reps, opts.int16_headroom_db)
        art16 = tflite.convert(keras_model, len(graph.slots), lambda: iter(reps16), int16x8=True, fp32=False)
        try:
            model16 = finalize_16x8(art16.int8, min_output_reach=board.audio.output_limit)
        except Int16GraphError as e:
            raise ExportError(f"16x8 graph: {e}") from None
        check16 = _count_int8_ops(model16, _INT16X8_TYPES)
        if check16["float_ops"]:
            raise ExportError(f"16x8 graph still computes in float in: {sorted(set(check16['float_ops']))}")
        files["model_16x8.tflite"] = model16
        graphs["int16x8"] = _tflite_graph_spec(model16, "model_16x8.tflite")
        y16 = np.concatenate([stream(LiteRTBackend(model16, num_threads=1), c) for c in test])
        drift16 = layer_drift(graph, art.fp32, model16, drift_clips, block)
        extra_sections["drift_16x8"] = drift16.to_dict()
        int16_metrics = {"int16x8_vs_fp32_snr_db": round(snr_db(ref, y16), 3), "int16x8_bytes": len(model16),
                         "int16x8_headroom_db": opts.int16_headroom_db,
                         "int16x8_ops": ",".join(f"{k}:{v}" for k, v in sorted(check16["ops"].items())),
                         **drift16.metrics("drift_16x8")}
        device, default_graph = model16, "int16x8"

    progress("self-noise and dynamic range of the device graph", 0.9)
    device_backend = LiteRTBackend(device, num_threads=1)
    try:
        measured = impulse_latency(device_backend)
    except LatencyProbeError as e:
        raise ExportError(str(e)) from None
    if measured != latency:
        raise ExportError(f"impulse latency {measured} samples differs from the model's {latency}: the graph is not causal as built")
    noise_metrics = measure_self_noise(device_backend, fp32_backend, sr, block, board.audio.output_limit,
                                       levels_db_spl=opts.noise_levels_db_spl, clips=opts.noise_clips,
                                       clip_seconds=opts.clip_seconds, noise_snr_db=opts.snr_db,
                                       corpus_seed=opts.corpus_seed, silence_seconds=opts.silence_seconds)
    kernel_info = _kernel_files(device, files)
    kernel_info.update(_device_memory(board, kernel_info))
    metrics: dict[str, Any] = {
        "parameters": fitted.deployed_parameters(),
        "macs_per_second": fitted.macs_per_second(),
        "int8_bytes": len(int8),
        "fp32_bytes": len(art.fp32),
        "int8_vs_fp32_snr_db": round(snr8, 3),
        "int8_graph_vs_fp32_same_input_snr_db": round(snr_graph, 3),
        "int8_input_quantization_snr_db": round(snr_input, 3),
        "int8_output_quantization_snr_db": round(snr_output, 3),
        "fp32_on_int8_input_snr_db": round(snr_input_ceiling, 3),
        "int8_vs_fp32_speech_level_db_spl": f"{opts.speech_level_db_spl[0]:g}-{opts.speech_level_db_spl[1]:g}",
        "int8_vs_fp32_test_seconds": round(len(y8) / sr, 3),
        "keras_vs_torch_max_abs": keras_err,
        "tflite_fp32_vs_torch_max_abs": fp32_err,
        "onnx_vs_torch_max_abs": onnx_err,
        "algorithmic_latency_measured_samples": measured,
        "algorithmic_latency_ms": 1000.0 * latency / sr,
        "calibration_blocks": len(reps),
        "int8_ops": ",".join(f"{k}:{v}" for k, v in sorted(op_check["ops"].items())),
        **drift.metrics(),
        **qat_metrics,
        **int16_metrics,
        "device_graph": default_graph,
        **noise_metrics,
    }
    metrics.update(kernel_info)
    metrics["export_seconds"] = round(time.perf_counter() - t0, 2)

    progress("writing the bundle", 0.95)
    fields = {
        "model": f"seanet-c{model.config.channels}-s{'x'.join(map(str, model.config.strides))}",
        "target": board.name,
        "sample_rate": sr,
        "block": block,
        "algorithmic_latency_samples": latency,
        "output_limit": board.audio.output_limit,
        "audiogram": {"name": opts.audiogram.name, "thresholds_db_hl": list(opts.audiogram.thresholds_db_hl),
                      "frequencies_hz": list(AUDIOGRAM_FREQS_HZ)},
        "graphs": graphs,
        "default_graph": default_graph,
        "metrics": metrics,
        "extra": {"model_config": model.config.to_dict(), "checkpoint": Path(opts.checkpoint).name,
                  "board": {"core": board.cpu.core, "cflags": list(board.compiler.cflags),
                            "latency_budget_ms": board.budget.latency_ms},
                  **extra_sections},
    }
    out = write_bundle(opts.out_dir, fields, files, overwrite=opts.overwrite, signing_key=opts.signing_key)
    progress("done", 1.0)
    trust = TrustPolicy(keys=(opts.signing_key.public,)) if opts.signing_key is not None else TrustPolicy()
    return ExportReport(bundle=load_bundle(out, trust=trust), metrics=metrics)


def measure_self_noise(device: Any, fp32: Any, sample_rate: int, block: int, output_limit: float | None = None, *,
                       levels_db_spl: tuple[float, ...] = SNR_LEVELS_DB_SPL, clips: int = 2, clip_seconds: float = 2.0,
                       noise_snr_db: tuple[float, float] = (10.0, 30.0), corpus_seed: int = 0,
                       silence_seconds: float = 3.0) -> dict[str, Any]:
    """Per-level device-vs-fp32 SNR, silence output, equivalent input noise and clip level of the
    device graph (flat manifest metrics prefixed ``device_``).

    ``clips`` held-out clean speech clips of ``clip_seconds`` (corpus seed ``corpus_seed + 1``) at each of
    ``levels_db_spl``, and ``silence_seconds`` of digital silence. The defaults are ExportOptions' (the
    noise_* fields, clip_seconds, snr_db, corpus_seed), so a re-measurement of a default export needs none.
    """
    cal = DEFAULT_CALIBRATION
    cfg = CorpusConfig(sample_rate=sample_rate, seconds=clip_seconds, speech_level_db_spl=(65.0, 65.0),
                       snr_db=noise_snr_db, noise_probability=0.0)
    _, clean = SyntheticCorpus("test", cfg, seed=corpus_seed + 1, size=clips, workers=2).batch(list(range(clips)))
    n = clean.shape[1] // block * block
    by_level = {lv: [cal.set_level(c[:n], lv).astype(np.float32) for c in clean] for lv in levels_db_spl}
    per_level = self_noise.per_level_snr(device, fp32, by_level, output_limit)
    silence = self_noise.silence_figures(device, fp32, sample_rate, block, seconds=silence_seconds)
    clip_db = self_noise.clip_level_db_spl(device)
    return self_noise.metrics(per_level, silence, clip_db, "device")


def _qat_export(fitted: SEANet, ptq_int8: bytes, ptq_snr: float, calib: np.ndarray, test: np.ndarray,
                ref: np.ndarray, block: int, opts: ExportOptions, progress: Progress) -> tuple[bytes, float, dict[str, Any]]:
    """Fine-tune a copy of the fitted weights through the int8 fake-quant twin, quantise them two ways
    and ship whichever int8 graph is closest to the fp32 model on the held-out speech:

    ``qat``             the fine-tuned weights quantised into the PTQ graph, its activation scales kept:
                        exactly what the twin was trained as (:func:`toolchain.export.quant.qat.quantize_into`);
    ``qat-recalibrated`` a fresh PTQ conversion of the fine-tuned weights with the same calibration audio;
    ``ptq``             the plain post-training graph, when fine-tuning did not help.

    The reference stays the original float model (the bundle's fp32 graph, ONNX and torch
    backend): QAT changes how the model is quantised, not what it is meant to compute.
    Returns ``(int8 graph to ship, its int8-vs-fp32 SNR, metrics)``.
    """
    # Lazy: TensorFlow (imported by tflite.py), as in _export_bundle.
    from toolchain.export import tflite

    progress(f"quantisation-aware fine-tuning ({opts.qat_steps} steps)", 0.4)
    tuned = copy.deepcopy(fitted)
    tuned_graph = tuned.streaming()
    result = qat_finetune(tuned_graph, ptq_int8, list(calib), opts.qat_steps, lr=opts.qat_lr, seed=opts.corpus_seed,
                          progress=lambda k, db: progress(f"quantisation-aware fine-tuning (step {k}/{opts.qat_steps}, "
                                                          f"fake-quant SNR {db:.1f} dB)", 0.4 + 0.15 * k / opts.qat_steps))
    progress("re-quantising the fine-tuned weights", 0.55)
    tuned_graph = tuned.eval().streaming()
    reps = calibration_reps(tuned_graph, calib, block, opts.calib_blocks, opts.corpus_seed)
    recal = tflite.convert(tflite.build_keras_step(tuned_graph, block), len(tuned_graph.slots), lambda: iter(reps),
                           fp32=False).int8
    candidates = {"qat": quantize_into(ptq_int8, tuned_graph), "qat-recalibrated": recal}
    snrs = {"ptq": ptq_snr}
    for name, model in candidates.items():
        check = _count_int8_ops(model)
        if check["float_ops"]:
            raise ExportError(f"{name} int8 graph computes in float in: {sorted(set(check['float_ops']))}")
        snrs[name] = snr_db(ref, np.concatenate([stream(LiteRTBackend(model, num_threads=1), c) for c in test]))
    best = max(snrs, key=snrs.get)
    metrics = {"qat_steps": opts.qat_steps, "qat_lr": opts.qat_lr, "qat_seconds": round(result.wall_time_s, 1),
               "int8_vs_fp32_snr_db_ptq": round(ptq_snr, 3), "int8_vs_fp32_snr_db_qat": round(snrs["qat"], 3),
               "int8_vs_fp32_snr_db_qat_recalibrated": round(snrs["qat-recalibrated"], 3),
               "qat_fake_quant_snr_db_first": round(result.initial_loss_db, 3),
               "qat_fake_quant_snr_db_last": round(result.final_loss_db, 3), "int8_graph": best}
    return candidates.get(best, ptq_int8), snrs[best], metrics


def _kernel_files(device: bytes, files: dict[str, bytes]) -> dict[str, Any]:
    """Add the C kernel blob of the device graph (kernel/model.hxb) and its firmware header form."""
    blob = ckernel.tflite_to_blob(device)
    files["kernel/model.hxb"] = blob
    files["kernel/model_blob.h"] = ckernel.blob_to_c_header(blob, "hx_model_blob").encode()
    info = ckernel.describe_blob(blob)
    return {"kernel_arena_bytes": int(info["arena_bytes"]), "kernel_blob_bytes": len(blob)}


def _device_memory(board: Board, kernel_info: dict[str, Any]) -> dict[str, int]:
    """Firmware flash/RAM for boards with a memory budget (device_memory); a misfit is refused."""
    try:
        return device_memory(board, kernel_info)
    except DeviceMemoryError as e:
        raise ExportError(str(e)) from None
