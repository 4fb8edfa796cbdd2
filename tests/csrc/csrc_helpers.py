"""Helpers for the C-kernel tests: the test model, LiteRT streaming, and building the C tools."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.atomic import atomic_write
from runtime.config import cache_dir

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
QEMU = shutil.which("qemu-aarch64")
AARCH64_CC = shutil.which("aarch64-linux-gnu-gcc")
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"
HOST_CC = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")

BLOCK = 16


def host_archs() -> list[str]:
    """Kernel sets this host can run: ref always, x86 (AVX2) where the CPU has it."""
    import platform

    from runtime.backends.ckernel_build import _cpu_has_avx2

    return ["ref"] + (["x86"] if platform.machine() in ("x86_64", "AMD64") and _cpu_has_avx2() else [])
AUDIOGRAM = [20, 25, 35, 45, 50, 55, 60, 65]
SEED = 1234


# --------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class SeanetCase:
    """The int8 SEANet step graph used across the C-kernel tests."""

    tflite: bytes          # full-integer TFLite
    blob: bytes            # tflite_to_blob(tflite) (conv rounding of an x86 host)
    audio_q: np.ndarray    # int8 test signal in the input quantisation (speech + noise, then loud)
    seconds: float         # its duration
    input_quant: tuple[float, int]
    output_quant: tuple[float, int]


def _sources_digest() -> str:
    import inspect

    h = hashlib.sha256()
    for rel in ("toolchain/models/compensators/seanet.py", "toolchain/models/compensators/streaming.py", "toolchain/export/tflite.py"):
        h.update((REPO / rel).read_bytes())
    for fn in (_random_seanet, build_test_tflite, _corpus, _states_nhwc):
        h.update(inspect.getsource(fn).encode())
    h.update(repr((BLOCK, AUDIOGRAM, SEED)).encode())
    try:
        from importlib.metadata import version

        h.update(version("tensorflow-cpu").encode())
    except Exception:  # pragma: no cover - any install works, the key just gets coarser
        pass
    return h.hexdigest()[:16]


def _random_seanet():
    import torch

    from toolchain.models.compensators.seanet import SEANet

    torch.manual_seed(SEED)
    m = SEANet()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                fan_in = mod.weight.shape[1] * mod.weight.shape[2]
                mod.weight.normal_(0.0, 0.5 / np.sqrt(fan_in))
                if mod.bias is not None:
                    mod.bias.normal_(0.0, 0.02)
        last = m.audiogram_encoder[-1]
        last.weight.normal_(0.0, 0.05)
        last.bias.normal_(0.0, 0.05)
    return m.fit(AUDIOGRAM).streaming()


def _corpus(split: str, n: int) -> np.ndarray:
    from toolchain.audio.data import CorpusConfig, SyntheticCorpus

    noisy, _ = SyntheticCorpus(split, CorpusConfig(seconds=2.0), size=n).batch(range(n))
    return noisy.reshape(-1).astype(np.float32)


def _states_nhwc(states) -> list[np.ndarray]:
    return [s.permute(0, 2, 1).numpy()[:, None].astype(np.float32) for s in states]


def _calibration_reps(g) -> list[list[np.ndarray]]:
    """Every 8th block of the corpus 'calib' split streamed through ``g``, with the state it met."""
    import torch

    x = _corpus("calib", 2)
    reps = []
    states = g.init_state()
    with torch.no_grad():
        for i in range(0, x.size - BLOCK + 1, BLOCK):
            xb = torch.from_numpy(x[i:i + BLOCK]).reshape(1, 1, BLOCK)
            if (i // BLOCK) % 8 == 0:
                reps.append([xb.numpy().reshape(1, 1, BLOCK, 1), *_states_nhwc(states)])
            _, states = g.step(xb, states)
    return reps


def _cached_tflite(path: Path, build) -> bytes:
    """``path``'s bytes, or ``build()``'s written there atomically (always rebuilt with HX_TEST_REBUILD)."""
    if path.is_file() and not os.environ.get("HX_TEST_REBUILD"):
        return path.read_bytes()
    tfl = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(tfl)
    return tfl


def build_test_tflite() -> bytes:
    """Random-weight SEANet, calibrated on the corpus 'calib' split through its own streaming graph."""
    from toolchain.export.tflite import build_keras_step, convert

    g = _random_seanet()
    reps = _calibration_reps(g)
    km = build_keras_step(g, BLOCK)
    return convert(km, len(g.slots), lambda: iter(reps)).int8


def load_test_model() -> SeanetCase:
    """Build (or load from ``$HX_CACHE_DIR/test-models``) the test model and its test signal."""
    from runtime.backends.base import quantize
    from toolchain.export.ckernel import tflite_to_blob

    root = cache_dir("test-models")
    calib = _corpus("calib", 2)
    key = hashlib.sha256((_sources_digest() + hashlib.sha256(calib.tobytes()).hexdigest()).encode()).hexdigest()[:20]
    tfl = _cached_tflite(root / f"seanet-int8-{key}.tflite", build_test_tflite)
    blob = tflite_to_blob(tfl)
    from runtime.backends.litert import LiteRTBackend

    lit = LiteRTBackend(tfl, reference_kernels=True)
    qi, qo = lit.input_quant, lit.output_quant
    speech = _corpus("test", 6)                      # 12 s of speech in noise at conversational levels
    loud = np.clip(speech[:2 * 16000] * 8.0, -1, 1)  # 2 s driven into saturation
    audio = np.concatenate([speech, loud])
    audio = audio[: audio.size // BLOCK * BLOCK]
    return SeanetCase(tfl, blob, quantize(audio, *qi), audio.size / 16000.0, qi, qo)


# ----------------------------------------------------------------------------- the 16x8 model
def _seanet16_config():
    """The prescription recipe's architecture (toolchain/train/recipes/default.toml: the shipped
    16x8 default): leaky ReLU, 48-tap input and output convs, the NAL-R FIR skip over 2 channels."""
    from toolchain.models.compensators.seanet import SEANetConfig

    return SEANetConfig(activation="leaky_relu", kernel_size=48, skip_taps=48, skip_channels=2, prescription="nalr")


def build_test_tflite16() -> bytes:
    """Random-weight prescription-config SEANet as the device runs it: LiteRT's 16x8 conversion, calibrated
    on the corpus 'calib' split through its own streaming graph, then finalize_16x8 (no QUANTIZE op,
    input scale 1/32768)."""
    from tests.helpers import randomised_seanet
    from toolchain.export.quant.int16_graph import finalize_16x8
    from toolchain.export.tflite import build_keras_step, convert

    g = randomised_seanet(SEED, _seanet16_config()).fit(AUDIOGRAM).streaming()
    reps = _calibration_reps(g)
    km = build_keras_step(g, BLOCK)
    return finalize_16x8(convert(km, len(g.slots), lambda: iter(reps), int16x8=True, fp32=False).int8)


def load_test_model16() -> SeanetCase:
    """Build (or load from ``$HX_CACHE_DIR/test-models``) the 16x8 test model; its signal: 12 s of speech in
    noise, then 2 s of it 30 dB louder, clipped at full scale, as 16-bit PCM codes."""
    import inspect

    from runtime.backends.base import quantize
    from runtime.backends.litert import LiteRTBackend
    from toolchain.export.ckernel import tflite_to_blob

    root = cache_dir("test-models")
    h = hashlib.sha256(_sources_digest().encode())
    for rel in ("toolchain/export/quant/int16_graph.py", "tests/helpers.py", "toolchain/fitting/prescription.py"):
        if (REPO / rel).is_file():
            h.update((REPO / rel).read_bytes())
    for fn in (_seanet16_config, build_test_tflite16):
        h.update(inspect.getsource(fn).encode())
    h.update(hashlib.sha256(_corpus("calib", 2).tobytes()).digest())
    tfl = _cached_tflite(root / f"seanet-16x8-{h.hexdigest()[:20]}.tflite", build_test_tflite16)
    lit = LiteRTBackend(tfl, reference_kernels=True)
    qi, qo = lit.input_quant, lit.output_quant
    speech = _corpus("test", 6)
    loud = np.clip(speech[:2 * 16000] * 32.0, -1, 1)  # 30 dB up: peaks clip at ±1.0 full scale
    audio = np.concatenate([speech, loud])
    audio = audio[: audio.size // BLOCK * BLOCK]
    return SeanetCase(tfl, tflite_to_blob(tfl), quantize(audio, *qi, np.int16), audio.size / 16000.0, qi, qo)


# ------------------------------------------------------------------------------------ LiteRT
def litert_stream(tflite: bytes, x_q: np.ndarray, *, reference: bool, resolver=None) -> np.ndarray:
    """Stream ``x_q`` (int8, or int16 for a 16x8 graph) block by block through the LiteRT interpreter, feeding
    the state back.

    ``reference=True``: OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES (TFLite's built-in kernels);
    ``False``: the default resolver (XNNPACK delegate). ``resolver`` overrides both (e.g. BUILTIN_REF).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if reference else {}
    if resolver is not None:
        kw = {"experimental_op_resolver_type": resolver}
    it = Interpreter(model_content=tflite, num_threads=1, **kw)
    it.allocate_tensors()
    ins = {d["name"]: d for d in it.get_input_details()}
    outs = {d["name"]: d for d in it.get_output_details()}
    run = it.get_signature_runner("serving_default")
    sig_in = run.get_input_details()
    states = {k: np.full(v["shape"], v["quantization"][1], v["dtype"]) for k, v in sig_in.items()
              if k.startswith("state_in")}
    dtype = sig_in["x"]["dtype"]  # int8, or int16 for a 16x8 graph
    del ins, outs
    ys = []
    for i in range(0, x_q.size, BLOCK):
        out = run(x=x_q[i:i + BLOCK].reshape(1, 1, BLOCK, 1).astype(dtype), **states)
        ys.append(out["y"].reshape(-1))
        states = {k.replace("state_out", "state_in"): v for k, v in out.items() if k.startswith("state_out")}
    return np.concatenate(ys).astype(dtype)


# ----------------------------------------------------------------------------------- C tools
def kernel_sources(arch: str) -> list[str]:
    from runtime.backends.ckernel_build import source_files

    return [str(p) for p in source_files(arch)]


def strict_flags(arch: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    from runtime.backends.ckernel_build import compile_flags

    return compile_flags(arch, list(extra), strict=True) + ["-pedantic"]


def build_tool(tool: str, out: Path, *, arch: str = "ref", cc: str | None = None,
               cflags: list[str] | tuple[str, ...] = ("-O2",), ldflags: list[str] | tuple[str, ...] = ()) -> Path:
    """Compile ``csrc/tools/<tool>.c`` + the library for ``arch`` into ``out`` (warnings are errors)."""
    cc = cc or HOST_CC
    cmd = [cc, *strict_flags(arch, list(cflags)), str(CSRC / "tools" / f"{tool}.c"), *kernel_sources(arch),
           "-o", str(out), *ldflags]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"build of {tool} ({arch}) failed:\n{' '.join(cmd)}\n{r.stderr[-4000:]}")
    return out


def run_aarch64(exe: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([QEMU, "-L", AARCH64_SYSROOT, str(exe), *args], capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------------------ blob editing
def recrc(blob: bytes | bytearray) -> bytes:
    """Fix the CRC trailer of an edited blob (so validation reaches the structural checks)."""
    import struct
    import zlib

    b = bytearray(blob)
    total = struct.unpack_from("<I", b, 12)[0]
    if not 68 <= total <= len(b):  # a damaged length field: checksum the whole buffer instead
        total = len(b)
    struct.pack_into("<I", b, total - 4, zlib.crc32(bytes(b[:total - 4])) & 0xFFFFFFFF)
    return bytes(b)


# ------------------------------------------------------------------------ random op cases
def _mult_shift(rng: np.random.Generator, lo: float, hi: float) -> tuple[int, int]:
    """A multiplier for a real drawn log-uniformly in [lo, hi]; sometimes exactly 1/2^k (rounding ties)."""
    from toolchain.export.ckernel.numpy_ref import quantize_multiplier

    if rng.random() < 0.25:
        return 1 << 30, -int(rng.integers(0, 12))
    return quantize_multiplier(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def random_conv_case(rng: np.random.Generator, *, c_in: int | None = None, c_out: int | None = None,
                     kernel: int | None = None, stride: int | None = None, dilation: int | None = None,
                     out_frames: int | None = None, rounding: int | None = None) -> dict:
    c_in = c_in or int(rng.integers(1, 40))
    c_out = c_out or int(rng.integers(1, 40))
    k = kernel or int(rng.integers(1, 9))
    s = stride or int(rng.integers(1, 5))
    d = dilation or (1 if rng.random() < 0.7 else int(rng.integers(2, 4)))
    t = out_frames or int(rng.integers(1, 7))
    w_in = (t - 1) * s + d * (k - 1) + 1
    ms = [_mult_shift(rng, 1e-5, 3.0) for _ in range(c_out)]
    lo = int(rng.integers(-128, 0)) if rng.random() < 0.3 else -128
    hi = int(rng.integers(lo, 128)) if rng.random() < 0.3 else 127
    return dict(kind="conv", in_frames=w_in, in_channels=c_in, out_frames=t, out_channels=c_out, kernel=k, stride=s,
                dilation=d, input_zp=int(rng.integers(-128, 128)), output_zp=int(rng.integers(-128, 128)),
                act_min=lo, act_max=hi, rounding=int(rounding if rounding is not None else rng.integers(0, 3)),
                x=rng.integers(-128, 128, size=(w_in, c_in)).astype(np.int8),
                w=rng.integers(-128, 128, size=(c_out, k, c_in)).astype(np.int8),
                bias=rng.integers(-(1 << 20), 1 << 20, size=c_out).astype(np.int32),
                mult=np.array([m for m, _ in ms], np.int32), shift=np.array([e for _, e in ms], np.int32))


def random_prelu_case(rng: np.random.Generator, *, frames: int | None = None, channels: int | None = None) -> dict:
    f = frames or int(rng.integers(1, 9))
    c = channels or int(rng.integers(1, 40))
    n_alpha = 1 if rng.random() < 0.4 else c
    m1, s1 = _mult_shift(rng, 0.05, 4.0)
    m2, s2 = _mult_shift(rng, 1e-4, 0.5)
    alpha = rng.integers(-128, 128, size=n_alpha).astype(np.int8)
    if n_alpha > 1 and rng.random() < 0.3:
        alpha[:] = alpha[0]  # many channels, one table
    return dict(kind="prelu", frames=f, channels=c, alpha_count=n_alpha, input_zp=int(rng.integers(-128, 128)),
                alpha_zp=int(rng.integers(-128, 128)), output_zp=int(rng.integers(-128, 128)),
                multiplier_pos=m1, shift_pos=s1, multiplier_neg=m2, shift_neg=s2,
                x=rng.integers(-128, 128, size=(f, c)).astype(np.int8), alpha=alpha)


def random_add_case(rng: np.random.Generator, *, count: int | None = None, mode: int | None = None) -> dict:
    from toolchain.export.ckernel.numpy_ref import add_multipliers

    n = count or int(rng.integers(1, 200))
    if rng.random() < 0.3:  # "round" decimal scales: exact rounding ties are frequent
        s1, s2, so = (float(v) for v in rng.choice([0.01, 0.012, 0.02, 0.005, 0.025, 0.04], size=3))
    else:
        s1, s2 = np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), size=2))
        so = float(max(s1, s2) * np.exp(rng.uniform(np.log(0.3), np.log(4.0))))
    m1, e1, m2, e2, mo, eo = add_multipliers(s1, s2, so)
    lo = int(rng.integers(-128, 0)) if rng.random() < 0.3 else -128
    hi = int(rng.integers(lo, 128)) if rng.random() < 0.3 else 127
    return dict(kind="add", count=n, input1_zp=int(rng.integers(-128, 128)), input2_zp=int(rng.integers(-128, 128)),
                output_zp=int(rng.integers(-128, 128)), left_shift=20, multiplier1=m1, shift1=e1, multiplier2=m2,
                shift2=e2, multiplier_out=mo, shift_out=eo, act_min=lo, act_max=hi,
                mode=int(mode if mode is not None else rng.integers(0, 2)),
                a=rng.integers(-128, 128, size=n).astype(np.int8), b=rng.integers(-128, 128, size=n).astype(np.int8))


def random_conv16_case(rng: np.random.Generator, *, c_in: int | None = None, c_out: int | None = None,
                       kernel: int | None = None, stride: int | None = None, dilation: int | None = None,
                       out_frames: int | None = None) -> dict:
    """A 16x8 CONV case: full-range int16 input, int8 weights, int64 bias up to ±2^40, shifts in [-31, 7]."""
    c_in = c_in or int(rng.integers(1, 40))
    c_out = c_out or int(rng.integers(1, 40))
    k = kernel or int(rng.integers(1, 9))
    s = stride or int(rng.integers(1, 5))
    d = dilation or (1 if rng.random() < 0.7 else int(rng.integers(2, 4)))
    t = out_frames or int(rng.integers(1, 7))
    w_in = (t - 1) * s + d * (k - 1) + 1
    ms = [_mult_shift(rng, 1e-7, 1e-2) for _ in range(c_out)]
    lo = int(rng.integers(-32768, 0)) if rng.random() < 0.3 else -32768
    hi = int(rng.integers(lo, 32768)) if rng.random() < 0.3 else 32767
    x = rng.integers(-32768, 32768, size=(w_in, c_in))
    if rng.random() < 0.2:  # the extreme products: every input at -32768 against -128 weights
        x[:] = -32768
    return dict(kind="conv16", in_frames=w_in, in_channels=c_in, out_frames=t, out_channels=c_out, kernel=k, stride=s,
                dilation=d, act_min=lo, act_max=hi, x=x.astype(np.int16),
                w=rng.integers(-128, 128, size=(c_out, k, c_in)).astype(np.int8),
                bias=rng.integers(-(1 << 40), 1 << 40, size=c_out).astype(np.int64),
                mult=np.array([m for m, _ in ms], np.int32), shift=np.array([e for _, e in ms], np.int32))


def random_leaky16_case(rng: np.random.Generator, *, count: int | None = None) -> dict:
    n = count or int(rng.integers(1, 300))
    m1, s1 = _mult_shift(rng, 0.05, 4.0)
    m2, s2 = _mult_shift(rng, 1e-3, 1.0)
    return dict(kind="leaky16", count=n, multiplier_identity=m1, shift_identity=s1, multiplier_alpha=m2, shift_alpha=s2,
                x=rng.integers(-32768, 32768, size=n).astype(np.int16))


def random_add16_case(rng: np.random.Generator, *, count: int | None = None, mode: int | None = None) -> dict:
    from toolchain.export.ckernel.numpy_ref import add_multipliers

    n = count or int(rng.integers(1, 200))
    if rng.random() < 0.3:  # power-of-two ratios: exact rounding ties are frequent
        s1 = float(2.0 ** -int(rng.integers(12, 18)))
        s2 = s1 * float(rng.choice([1.0, 0.5, 0.25, 0.75, 1.5]))
        so = max(s1, s2) * float(rng.choice([1.0, 2.0, 0.5]))
    else:
        s1, s2 = np.exp(rng.uniform(np.log(1e-7), np.log(1e-3), size=2))
        so = float(max(s1, s2) * np.exp(rng.uniform(np.log(0.3), np.log(4.0))))
    m1, e1, m2, e2, mo, eo = add_multipliers(s1, s2, so, 15)
    lo = int(rng.integers(-32768, 0)) if rng.random() < 0.3 else -32768
    hi = int(rng.integers(lo, 32768)) if rng.random() < 0.3 else 32767
    return dict(kind="add16", count=n, left_shift=15, multiplier1=m1, shift1=e1, multiplier2=m2, shift2=e2,
                multiplier_out=mo, shift_out=eo, act_min=lo, act_max=hi,
                mode=int(mode if mode is not None else rng.integers(0, 2)),
                a=rng.integers(-32768, 32768, size=n).astype(np.int16),
                b=rng.integers(-32768, 32768, size=n).astype(np.int16))


_ROUND_NAMES = ("double_away", "double_up", "single_up")
_ADD16_KEYS = ("left_shift", "multiplier1", "shift1", "multiplier2", "shift2", "multiplier_out", "shift_out", "act_min",
               "act_max")


def numpy_case(case: dict) -> list[np.ndarray]:
    """What each case must produce (flattened int8 arrays, in hx_opcheck's output order)."""
    from toolchain.export.ckernel import numpy_ref as R

    if case["kind"] == "conv16":
        y = R.conv_s16(case["x"], case["w"], case["bias"], case["mult"], case["shift"], stride=case["stride"],
                       dilation=case["dilation"], act_min=case["act_min"], act_max=case["act_max"])
        return [y.reshape(-1)]
    if case["kind"] == "leaky16":
        y = R.leaky_relu_s16(case["x"], **{k: case[k] for k in ("multiplier_identity", "shift_identity",
                                                                  "multiplier_alpha", "shift_alpha")})
        return [y, y]
    if case["kind"] == "add16":
        y = R.add_s16(case["a"], case["b"], mode=("vector16", "reference")[case["mode"]],
                      **{k: case[k] for k in _ADD16_KEYS})
        return [y]
    if case["kind"] == "conv":
        y = R.conv_s8(case["x"], case["w"], case["bias"], case["mult"], case["shift"], stride=case["stride"],
                      dilation=case["dilation"], input_zp=case["input_zp"], output_zp=case["output_zp"],
                      act_min=case["act_min"], act_max=case["act_max"], rounding=_ROUND_NAMES[case["rounding"]])
        return [y.reshape(-1)]
    if case["kind"] == "prelu":
        y = R.prelu_s8(case["x"], case["alpha"], input_zp=case["input_zp"], alpha_zp=case["alpha_zp"],
                       output_zp=case["output_zp"], multiplier_pos=case["multiplier_pos"], shift_pos=case["shift_pos"],
                       multiplier_neg=case["multiplier_neg"], shift_neg=case["shift_neg"])
        return [y.reshape(-1), y.reshape(-1)]
    y = R.add_s8(case["a"], case["b"], mode=("vector16", "reference")[case["mode"]], **{k: case[k] for k in (
        "input1_zp", "input2_zp", "output_zp", "left_shift", "multiplier1", "shift1", "multiplier2", "shift2",
        "multiplier_out", "shift_out", "act_min", "act_max")})
    return [y.reshape(-1)]


def opcheck_bytes(cases: list[dict]) -> bytes:
    """Serialise cases for csrc/tools/hx_opcheck.c."""
    import struct

    out = bytearray()

    def words(kind: int, vals: list[int]) -> None:
        out.extend(struct.pack("<i", kind))
        out.extend(struct.pack("<31i", *(list(vals) + [0] * (31 - len(vals)))))

    for c in cases:
        if c["kind"] == "conv":
            words(1, [c[k] for k in ("in_frames", "in_channels", "out_frames", "out_channels", "kernel", "stride",
                                     "dilation", "input_zp", "output_zp", "act_min", "act_max", "rounding")])
            out += c["x"].tobytes() + c["w"].tobytes()
            out += c["bias"].astype("<i4").tobytes() + c["mult"].astype("<i4").tobytes()
            out += c["shift"].astype("<i4").tobytes()
        elif c["kind"] == "conv16":
            words(4, [c[k] for k in ("in_frames", "in_channels", "out_frames", "out_channels", "kernel", "stride",
                                     "dilation", "act_min", "act_max")])
            out += c["x"].astype("<i2").tobytes() + c["w"].tobytes() + c["bias"].astype("<i8").tobytes()
            out += c["mult"].astype("<i4").tobytes() + c["shift"].astype("<i4").tobytes()
        elif c["kind"] == "leaky16":
            words(5, [c[k] for k in ("count", "multiplier_identity", "shift_identity", "multiplier_alpha",
                                     "shift_alpha")])
            out += c["x"].astype("<i2").tobytes()
        elif c["kind"] == "add16":
            words(6, [c["count"], *(c[k] for k in _ADD16_KEYS), c["mode"]])
            out += c["a"].astype("<i2").tobytes() + c["b"].astype("<i2").tobytes()
        elif c["kind"] == "prelu":
            words(2, [c[k] for k in ("frames", "channels", "alpha_count", "input_zp", "alpha_zp", "output_zp",
                                     "multiplier_pos", "shift_pos", "multiplier_neg", "shift_neg")])
            out += c["x"].tobytes() + c["alpha"].tobytes()
        else:
            words(3, [c[k] for k in ("count", "input1_zp", "input2_zp", "output_zp", "left_shift", "multiplier1",
                                     "shift1", "multiplier2", "shift2", "multiplier_out", "shift_out", "act_min",
                                     "act_max", "mode")])
            out += c["a"].tobytes() + c["b"].tobytes()
    return bytes(out)


def check_opcheck_output(cases: list[dict], raw: bytes) -> list[str]:
    """Compare hx_opcheck's output with numpy; returns a description of each mismatching case."""
    pos, bad = 0, []
    for i, c in enumerate(cases):
        for j, want in enumerate(numpy_case(c)):
            dt = np.dtype("<i2") if want.dtype == np.int16 else np.dtype(np.int8)
            nbytes = want.size * dt.itemsize
            have = np.frombuffer(raw[pos:pos + nbytes], dtype=dt)
            pos += nbytes
            if not np.array_equal(have, want):
                n = int(np.count_nonzero(have != want)) if have.size == want.size else -1
                bad.append(f"case {i} ({c['kind']}, output {j}): {n} of {want.size} differ")
    if pos != len(raw):
        bad.append(f"output length {len(raw)} != expected {pos}")
    return bad
