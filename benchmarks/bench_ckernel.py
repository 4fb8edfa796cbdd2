"""Per-block compute time of the C kernel against LiteRT, same model, one thread.

    python benchmarks/bench_ckernel.py [--blocks 16 32 64 128] [--seconds 4] [--out benchmarks/results]

Per block size one random-weight SEANet (fitted, calibrated on the synthetic corpus) becomes a
full-integer TFLite step graph and a C-kernel blob, and one step of each is timed on the same
signal, interleaved so every engine sees the same machine load; at the default block the 16x8
device graph too (:func:`bench_16x8`). Writes ``ckernel_bench.{json,png}`` under ``--out``: the
LiteRT / C ratios per block, arena and blob bytes, MAC/s, and the aarch64 text sizes of the
kernel library and ``hx_stream`` cross-built with boards/rpi4.toml's flags.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.config import cache_dir  # noqa: E402  (after the sys.path line: runs as a script)

AUDIOGRAM = [20, 25, 35, 45, 50, 55, 60, 65]


# ----------------------------------------------------------------------------------- models
def _graph():
    import torch

    from toolchain.models.compensators.seanet import SEANet

    torch.manual_seed(1234)
    m = SEANet()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                mod.weight.normal_(0.0, 0.5 / np.sqrt(mod.weight.shape[1] * mod.weight.shape[2]))
                if mod.bias is not None:
                    mod.bias.normal_(0.0, 0.02)
        m.audiogram_encoder[-1].weight.normal_(0.0, 0.05)
        m.audiogram_encoder[-1].bias.normal_(0.0, 0.05)
    return m.fit(AUDIOGRAM).streaming()


def _corpus(split: str, n: int) -> np.ndarray:
    from toolchain.audio.data import CorpusConfig, SyntheticCorpus

    noisy, _ = SyntheticCorpus(split, CorpusConfig(seconds=2.0), size=n).batch(range(n))
    return noisy.reshape(-1).astype(np.float32)


def _calibration_reps(graph, block: int) -> list[list[np.ndarray]]:
    """Every (128 // block)-th streamed block of two calibration clips, with the state it met."""
    import torch

    x = _corpus("calib", 2)
    reps, states = [], graph.init_state()
    with torch.no_grad():
        for i in range(0, x.size - block + 1, block):
            xb = torch.from_numpy(x[i:i + block]).reshape(1, 1, block)
            if (i // block) % max(1, 128 // block) == 0:
                reps.append([xb.numpy().reshape(1, 1, block, 1),
                             *[s.permute(0, 2, 1).numpy()[:, None].astype(np.float32) for s in states]])
            _, states = graph.step(xb, states)
    return reps


def _cached_model(stem: str, block: int, cache: Path, graph_fn, sources: tuple[str, ...], build) -> bytes:
    """``build(graph, reps)``'s .tflite, cached under ``stem`` by a hash of ``sources``, ``graph_fn``
    and the corpus (conversion takes ~30 s)."""
    import inspect

    h = hashlib.sha256()
    for rel in sources:
        h.update((REPO / rel).read_bytes())
    for fn in (graph_fn, _corpus):
        h.update(inspect.getsource(fn).encode())
    h.update(f"calib-every-{max(1, 128 // block)}".encode())
    path = cache / f"{stem}-b{block}-{h.hexdigest()[:16]}.tflite"
    if path.is_file():
        return path.read_bytes()
    g = graph_fn()
    tfl = build(g, _calibration_reps(g, block))
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tfl)
    return tfl


_MODEL_SOURCES = ("toolchain/models/compensators/seanet.py", "toolchain/models/compensators/streaming.py",
                  "toolchain/export/tflite.py")


def int8_model(block: int, cache: Path) -> bytes:
    """The int8 step graph for ``block`` (cached by source hash)."""
    from toolchain.export.tflite import build_keras_step, convert

    return _cached_model("seanet", block, cache, _graph, _MODEL_SOURCES,
                         lambda g, reps: convert(build_keras_step(g, block), len(g.slots), lambda: iter(reps)).int8)


def int16x8_model(block: int, cache: Path) -> bytes:
    """The finalized 16x8 step graph of the prescription-config SEANet for ``block`` (cached by source hash)."""
    from toolchain.export.quant.int16_graph import finalize_16x8
    from toolchain.export.tflite import build_keras_step, convert

    return _cached_model("seanet16x8", block, cache, _graph16, _MODEL_SOURCES + ("toolchain/export/quant/int16_graph.py",),
                         lambda g, reps: finalize_16x8(convert(build_keras_step(g, block), len(g.slots), lambda: iter(reps),
                                                               int16x8=True, fp32=False).int8))


def _graph16():
    """Random-weight SEANet of toolchain/train/recipes/default.toml's architecture, fitted."""
    import torch

    from toolchain.models.compensators.seanet import SEANet, SEANetConfig

    torch.manual_seed(1234)
    m = SEANet(SEANetConfig(activation="leaky_relu", kernel_size=48, skip_taps=48, skip_channels=2,
                            prescription="nalr"))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() > 1 and "audiogram" not in name:
                p.normal_(0.0, 0.5 / np.sqrt(p.shape[1] * p.shape[-1]))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            elif "audiogram" in name:
                p.normal_(0.0, 0.05)
    return m.eval().fit(AUDIOGRAM).streaming()


# ---------------------------------------------------------------------------------- timing
def _stats(samples_us: np.ndarray) -> dict:
    s = np.sort(np.asarray(samples_us, dtype=np.float64))
    return {"p50_us": float(np.median(s)), "p99_us": float(s[int(0.99 * (s.size - 1))]), "min_us": float(s[0]),
            "mean_us": float(s.mean()), "n": int(s.size)}


def litert_invoker(tfl: bytes, block: int, *, xnnpack: bool, dtype=np.int8):
    """A function timing Invoke for one block of ``dtype`` input (other inputs already set; 1 thread)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_content=tfl, num_threads=1, **kw)
    it.allocate_tensors()
    idx = {d["name"]: d["index"] for d in it.get_input_details()}
    x_index = next(i for n, i in idx.items() if n.endswith("x") or n.endswith("x:0"))
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.full(d["shape"], d["quantization"][1], dtype))
    # The pybind Invoke() without the Python wrapper's buffer-safety check: the least overhead LiteRT
    # can be charged with from Python (it still releases and re-takes the GIL).
    invoke = getattr(getattr(it, "_interpreter", None), "Invoke", None) or it.invoke

    def run(blk: np.ndarray) -> float:
        it.set_tensor(x_index, blk.reshape(1, 1, block, 1))
        t0 = time.perf_counter_ns()
        invoke()
        return (time.perf_counter_ns() - t0) / 1e3

    return run


def ckernel_invoker(blob: bytes, arch: str):
    """A function timing one hx_model_process(_s16) call (through cffi, buffers prepared) for one block."""
    from runtime.backends.ckernel import CKernelBackend

    be = CKernelBackend(blob, arch=arch)
    ffi, lib, model = be._ffi, be._lib, be._model
    s16 = be.io_dtype == np.int16
    ctype = "int16_t[]" if s16 else "int8_t[]"
    xbuf = np.zeros(be.block, be.io_dtype)
    ybuf = np.zeros(be.block, be.io_dtype)
    xp, yp = ffi.from_buffer(ctype, xbuf), ffi.from_buffer(ctype, ybuf, require_writable=True)
    process = lib.hx_model_process_s16 if s16 else lib.hx_model_process

    def run(blk: np.ndarray) -> float:
        xbuf[:] = blk
        t0 = time.perf_counter_ns()
        process(model, xp, yp, be.block)
        return (time.perf_counter_ns() - t0) / 1e3

    return run


def backend_stepper(backend):
    def run(blk: np.ndarray) -> float:
        t0 = time.perf_counter_ns()
        backend.process_raw(blk)
        return (time.perf_counter_ns() - t0) / 1e3

    return run


def build_hx_stream(arch: str, out: Path, cc: str, cflags: list[str]) -> Path:
    from runtime.backends.ckernel_build import compile_flags, source_files

    cmd = [cc, *compile_flags(arch, cflags), str(REPO / "csrc" / "tools" / "hx_stream.c"),
           *[str(p) for p in source_files(arch)], "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def time_c_inprocess(exe: Path, blob: bytes, x_q: np.ndarray, repeats: int, tmp: Path) -> dict:
    (tmp / "m.hxb").write_bytes(blob)
    (tmp / "in.raw").write_bytes(np.tile(x_q, repeats).astype(x_q.dtype.newbyteorder("<")).tobytes())
    r = subprocess.run([str(exe), "-t", str(tmp / "m.hxb"), str(tmp / "in.raw"), str(tmp / "out.raw")],
                       capture_output=True, text=True, check=True)
    fields = r.stderr.split()
    vals = {fields[i]: fields[i + 1] for i in range(0, len(fields) - 1, 2)}
    return {"p50_us": float(vals["p50_us"]), "p99_us": float(vals["p99_us"]), "min_us": float(vals["min_us"]),
            "mean_us": float(vals["mean_us"]), "n": int(vals["blocks"])}


def aarch64_sizes(tmp: Path) -> dict:
    """Text bytes of the kernel library (and of hx_stream) cross-built with the rpi4 flags."""
    from runtime.backends.ckernel_build import compile_flags, source_files
    from runtime.boards import resolve_target

    spec = resolve_target("rpi4").compiler
    cc, size = shutil.which(f"{spec.triple}-gcc"), shutil.which(f"{spec.triple}-size")
    if cc is None or size is None:
        return {"error": f"{spec.triple}-gcc / -size not installed"}
    out = {"board": "rpi4", "cflags": list(spec.cflags)}
    for arch in ("neon", "ref"):
        objs = []
        for src in source_files(arch):
            obj = tmp / f"{arch}-{src.stem}.o"
            subprocess.run([cc, *compile_flags(arch, list(spec.cflags)), "-c", str(src), "-o", str(obj)], check=True)
            objs.append(str(obj))
        r = subprocess.run([size, "-t", *objs], capture_output=True, text=True, check=True)
        total = r.stdout.strip().splitlines()[-1].split()
        out[f"library_text_bytes_{arch}"] = int(total[0])
        # The 16x8 kernels alone (csrc/<set>/hx_*_s16.c): what the s16 support adds to the library.
        s16 = [o for o in objs if o.endswith("_s16.o")]
        r = subprocess.run([size, "-t", *s16], capture_output=True, text=True, check=True)
        out[f"s16_kernels_text_bytes_{arch}"] = int(r.stdout.strip().splitlines()[-1].split()[0])
        exe = build_hx_stream(arch, tmp / f"hx_stream-{arch}", cc, list(spec.cflags))
        r = subprocess.run([size, str(exe)], capture_output=True, text=True, check=True)
        out[f"hx_stream_text_bytes_{arch}"] = int(r.stdout.strip().splitlines()[-1].split()[0])
    return out


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--seconds", type=float, default=4.0, help="signal length per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-16x8", action="store_true", help="time the int8 graphs only")
    ap.add_argument("--keep-other-blocks", action="store_true",
                    help="keep the int8 rows of block sizes not timed now from the existing JSON (marked as such)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--cache", type=Path, default=cache_dir("bench-models"))
    args = ap.parse_args(argv)

    from runtime.backends.base import quantize
    from runtime.backends.ckernel import CKernelBackend
    from runtime.backends.ckernel_build import default_arch, find_compiler
    from runtime.backends.litert import LiteRTBackend
    from toolchain.export.ckernel import describe_blob, tflite_to_blob

    cc = shutil.which(find_compiler() or "cc")
    host_archs = ["ref"] + (["x86"] if default_arch() == "x86" else []) + (["neon"] if default_arch() == "neon" else [])
    audio = _corpus("test", max(1, int(np.ceil(args.seconds / 2.0))))[: int(args.seconds * 16000)]
    results = {"host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "cpu_count": os.cpu_count()},
               "threads": 1, "signal_seconds": audio.size / 16000.0, "repeats": args.repeats, "blocks": {}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        exes = {a: build_hx_stream(a, tmp / f"hx_stream-host-{a}", cc, ["-O3"]) for a in host_archs}
        for block in args.blocks:
            tfl = int8_model(block, args.cache)
            blob = tflite_to_blob(tfl)
            info = describe_blob(blob)
            lit = LiteRTBackend(tfl, num_threads=1)
            x_q = quantize(audio[: audio.size // block * block], *lit.input_quant)
            row = {"arena_bytes": info["arena_bytes"], "blob_bytes": info["blob_bytes"],
                   "macs_per_block": info["macs_per_block"], "timings": {}}
            tm = row["timings"]
            for a, exe in exes.items():
                tm[f"ckernel_inprocess_{a}"] = time_c_inprocess(exe, blob, x_q, args.repeats, tmp)
            # ckernel_inprocess_<arch> (above): the call timed inside C (csrc/tools/hx_stream -t).
            # ckernel_call_<arch>: one hx_model_process through cffi (buffers prepared), per host kernel set.
            # litert_*_invoke: the interpreter's Invoke alone (inputs set, the pybind call without the
            # Python wrapper's check), XNNPACK delegate / built-in kernels: the C call's counterpart.
            # *_step: one full block as the runtime backends' process_raw does it (state in and out).
            # The headline ratio: litert_xnnpack_invoke p50 / the fastest ckernel_call p50 (also on minima).
            runners = {f"ckernel_call_{a}": ckernel_invoker(blob, a) for a in host_archs}
            runners["litert_xnnpack_invoke"] = litert_invoker(tfl, block, xnnpack=True)
            runners["litert_builtin_invoke"] = litert_invoker(tfl, block, xnnpack=False)
            runners["litert_step"] = backend_stepper(lit)
            runners["ckernel_step"] = backend_stepper(CKernelBackend(blob))
            samples: dict[str, list[float]] = {k: [] for k in runners}
            blocks = [x_q[b * block:(b + 1) * block] for b in range(x_q.size // block)]
            for _ in range(args.repeats):  # interleaved, so every engine sees the same machine load
                for k, run in runners.items():
                    samples[k] += [run(blk) for blk in blocks]
            for k, v in samples.items():
                tm[k] = _stats(np.array(v))
            best_arch = min(host_archs, key=lambda a: tm[f"ckernel_call_{a}"]["p50_us"])
            best = tm[f"ckernel_call_{best_arch}"]
            row["fastest_host_arch"] = best_arch
            row["ratio_litert_xnnpack_invoke_over_ckernel"] = tm["litert_xnnpack_invoke"]["p50_us"] / best["p50_us"]
            row["ratio_litert_xnnpack_invoke_over_ckernel_min"] = tm["litert_xnnpack_invoke"]["min_us"] / best["min_us"]
            row["ratio_litert_builtin_invoke_over_ckernel"] = tm["litert_builtin_invoke"]["p50_us"] / best["p50_us"]
            row["ratio_litert_step_over_ckernel_step"] = tm["litert_step"]["p50_us"] / tm["ckernel_step"]["p50_us"]
            row["block_period_us"] = 1e6 * block / 16000.0
            results["blocks"][str(block)] = row
            print(f"block {block:4d}: C ({best_arch}) {best['p50_us']:7.2f} us | LiteRT XNNPACK "
                  f"{tm['litert_xnnpack_invoke']['p50_us']:7.2f} us "
                  f"(x{row['ratio_litert_xnnpack_invoke_over_ckernel']:.2f}) | built-in "
                  f"{tm['litert_builtin_invoke']['p50_us']:7.2f} us | steps: LiteRT {tm['litert_step']['p50_us']:.1f} us, "
                  f"C {tm['ckernel_step']['p50_us']:.1f} us | arena {info['arena_bytes']} B", flush=True)
        if not args.skip_16x8:
            results["int16x8"] = bench_16x8(args, audio, host_archs, exes, tmp)
        results["aarch64"] = aarch64_sizes(tmp)
    args.out.mkdir(parents=True, exist_ok=True)
    old_json = args.out / "ckernel_bench.json"
    if args.keep_other_blocks and old_json.is_file():
        old = json.loads(old_json.read_text())
        for b, row in old.get("blocks", {}).items():
            if b not in results["blocks"]:
                results["blocks"][b] = {**row, "from_earlier_run": True}
        results["blocks"] = dict(sorted(results["blocks"].items(), key=lambda kv: int(kv[0])))
    (args.out / "ckernel_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, args.out / "ckernel_bench.png")
    print(f"wrote {args.out / 'ckernel_bench.json'} and {args.out / 'ckernel_bench.png'}")
    print(json.dumps(results["aarch64"]))
    return 0


def bench_16x8(args, audio: np.ndarray, host_archs: list[str], exes: dict, tmp: Path) -> dict:
    """The 16x8 device graph at the default block against LiteRT's 16x8, with int8 block-16 C calls
    interleaved so the int16 and int8 MAC/s come from the same machine load.

    The prescription recipe's architecture (leaky ReLU, 48-tap convs, the NAL-R skip; random
    weights) through LiteRT's 16x8 quantiser and ``int16_graph.finalize_16x8``, as the device runs
    it; ``hx_model_process_s16`` against LiteRT's built-in 16x8 kernels and its default resolver.
    Reported: the C / LiteRT ratios (target >= 2), the p99 load (p99 / block period) of both, int16
    and int8 MAC/s, the blob's arena bytes and the aarch64 text bytes of the s16 kernels alone.
    """
    from runtime.backends.base import quantize
    from runtime.backends.ckernel import CKernelBackend
    from runtime.backends.litert import LiteRTBackend
    from toolchain.export.ckernel import describe_blob, tflite_to_blob

    block = 16
    tfl = int16x8_model(block, args.cache)
    blob = tflite_to_blob(tfl)
    info = describe_blob(blob)
    tfl8 = int8_model(block, args.cache)
    blob8 = tflite_to_blob(tfl8)
    info8 = describe_blob(blob8)
    lit = LiteRTBackend(tfl, num_threads=1, reference_kernels=True)
    lit_default = LiteRTBackend(tfl, num_threads=1)
    x_q = quantize(audio[: audio.size // block * block], *lit.input_quant, np.int16)
    x8 = quantize(audio[: audio.size // block * block], *LiteRTBackend(tfl8, num_threads=1).input_quant)
    c_be = CKernelBackend(blob)
    y_lit = np.concatenate([lit.process_raw(x_q[i:i + block]) for i in range(0, x_q.size, block)])
    exact = bool(np.array_equal(c_be.process(x_q), y_lit))
    c_be.reset()
    lit.reset()
    row = {"model": "prescription recipe architecture (leaky_relu, kernel 48, skip_taps 48), random weights, "
                    "finalize_16x8", "block": block, "block_period_us": 1e6 * block / 16000.0,
           "arena_bytes": info["arena_bytes"], "blob_bytes": info["blob_bytes"], "state_bytes": info["state_bytes"],
           "macs_per_block": info["macs_per_block"], "int8_macs_per_block": info8["macs_per_block"],
           "bit_exact_vs_litert_builtin_samples": int(x_q.size) if exact else 0, "timings": {}}
    tm = row["timings"]
    for a, exe in exes.items():
        tm[f"ckernel_inprocess_{a}"] = time_c_inprocess(exe, blob, x_q, args.repeats, tmp)
    runners = {f"ckernel_call_{a}": ckernel_invoker(blob, a) for a in host_archs}
    runners8 = {f"int8_ckernel_call_{a}": ckernel_invoker(blob8, a) for a in host_archs}
    runners["litert_builtin_invoke"] = litert_invoker(tfl, block, xnnpack=False, dtype=np.int16)
    runners["litert_default_invoke"] = litert_invoker(tfl, block, xnnpack=True, dtype=np.int16)
    runners["litert_step"] = backend_stepper(lit)
    runners["litert_default_step"] = backend_stepper(lit_default)
    runners["ckernel_step"] = backend_stepper(c_be)
    samples: dict[str, list[float]] = {k: [] for k in [*runners, *runners8]}
    blocks = [x_q[b * block:(b + 1) * block] for b in range(x_q.size // block)]
    blocks8 = [x8[b * block:(b + 1) * block] for b in range(x8.size // block)]
    for _ in range(args.repeats):  # interleaved, so every engine sees the same machine load
        for k, run in runners.items():
            samples[k] += [run(blk) for blk in blocks]
        for k, run in runners8.items():
            samples[k] += [run(blk) for blk in blocks8]
    for k, v in samples.items():
        tm[k] = _stats(np.array(v))
    best_arch = min(host_archs, key=lambda a: tm[f"ckernel_call_{a}"]["p50_us"])
    best = tm[f"ckernel_call_{best_arch}"]
    period = row["block_period_us"]
    row["fastest_host_arch"] = best_arch
    row["ratio_litert_builtin_invoke_over_ckernel"] = tm["litert_builtin_invoke"]["p50_us"] / best["p50_us"]
    row["ratio_litert_builtin_invoke_over_ckernel_min"] = tm["litert_builtin_invoke"]["min_us"] / best["min_us"]
    row["ratio_litert_default_invoke_over_ckernel"] = tm["litert_default_invoke"]["p50_us"] / best["p50_us"]
    row["ratio_litert_step_over_ckernel_step"] = tm["litert_step"]["p50_us"] / tm["ckernel_step"]["p50_us"]
    row["p99_load"] = {"ckernel_call": best["p99_us"] / period, "ckernel_step": tm["ckernel_step"]["p99_us"] / period,
                       "litert_builtin_invoke": tm["litert_builtin_invoke"]["p99_us"] / period,
                       "litert_step": tm["litert_step"]["p99_us"] / period,
                       "litert_default_step": tm["litert_default_step"]["p99_us"] / period}
    row["mac_per_s"] = {f"int16x8_{a}": info["macs_per_block"] / (tm[f"ckernel_call_{a}"]["p50_us"] * 1e-6)
                        for a in host_archs}
    row["mac_per_s"].update({f"int8_{a}": info8["macs_per_block"] / (tm[f"int8_ckernel_call_{a}"]["p50_us"] * 1e-6)
                             for a in host_archs})
    print(f"16x8 block {block}: C ({best_arch}) {best['p50_us']:.2f} us | LiteRT 16x8 built-in "
          f"{tm['litert_builtin_invoke']['p50_us']:.2f} us (x{row['ratio_litert_builtin_invoke_over_ckernel']:.2f}) | "
          f"p99 load C {row['p99_load']['ckernel_step']:.3f}, LiteRT {row['p99_load']['litert_step']:.3f} | "
          f"MAC/s {row['mac_per_s']} | arena {info['arena_bytes']} B | bit-exact {exact}", flush=True)
    return row


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = list(results["blocks"])
    keys = [k for k in results["blocks"][blocks[0]]["timings"]]
    r16 = results.get("int16x8")
    fig, axes = plt.subplots(1, 2 if r16 else 1, figsize=(17 if r16 else 12, 5),
                             gridspec_kw={"width_ratios": [3, 1.3]} if r16 else None, squeeze=False)
    ax = axes[0][0]
    width = 0.8 / len(keys)
    xs = np.arange(len(blocks))
    for i, k in enumerate(keys):
        vals = [results["blocks"][b]["timings"][k]["p50_us"] for b in blocks]
        ax.bar(xs + i * width, vals, width, label=k)
    for j, b in enumerate(blocks):
        r = results["blocks"][b]["ratio_litert_xnnpack_invoke_over_ckernel"]
        top = max(results["blocks"][b]["timings"][k]["p50_us"] for k in keys)
        ax.text(xs[j] + 0.4, top * 1.05, f"x{r:.1f}", ha="center")
    ax.set_xticks(xs + 0.4, [f"block {b}" for b in blocks])
    ax.set_ylabel("p50 compute time per block (µs), 1 thread")
    ax.set_yscale("log")
    ax.set_title("C kernel vs LiteRT, same int8 SEANet, 1 thread\n"
                 "(x = LiteRT XNNPACK Invoke p50 / C hx_model_process call p50, fastest host kernel set)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if r16:
        ax2 = axes[0][1]
        names = [k for k in r16["timings"] if not k.startswith("int8_")]
        vals = [r16["timings"][k]["p50_us"] for k in names]
        p99 = [r16["timings"][k]["p99_us"] for k in names]
        ys = np.arange(len(names))
        ax2.barh(ys, vals, color="tab:blue", label="p50")
        ax2.scatter(p99, ys, color="k", marker="|", s=120, label="p99")
        ax2.axvline(0.25 * r16["block_period_us"], color="tab:red", ls="--", label="25 % of the block period")
        ax2.set_yticks(ys, names, fontsize=7)
        ax2.set_xscale("log")
        ax2.set_xlabel("µs per block (16 samples), 1 thread")
        ax2.set_title(f"16x8 device graph: C vs LiteRT built-in x{r16['ratio_litert_builtin_invoke_over_ckernel']:.1f}"
                      f"\nbit-exact over {r16['bit_exact_vs_litert_builtin_samples']} samples", fontsize=9)
        ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
