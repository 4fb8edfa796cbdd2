"""The torch fake-quant twin computes what LiteRT's int8 graph computes, and fine-tuning through it works."""

import numpy as np
import pytest
import torch

from runtime.backends.base import quantize
from runtime.backends.litert import LiteRTBackend
from runtime.bundle import load_bundle
from tests.helpers import speech_clip
from toolchain.export.ckernel import numpy_ref
from toolchain.export.pipeline import DEFAULT_CHECKPOINT
from toolchain.export.quant import qat
from toolchain.models.compensators.seanet import load_seanet


@pytest.fixture(scope="module")
def bundle_case(default_bundle):
    b = load_bundle(default_bundle)
    audiogram = b.manifest.audiogram["thresholds_db_hl"]
    return b.graph_file("int8").read_bytes(), audiogram


def _stream_int8(backend, xq):
    """A LiteRT backend's int8 output for int8 input, streamed in 16-sample blocks."""
    return np.concatenate([backend.process_raw(xq[i:i + 16]) for i in range(0, len(xq), 16)]).astype(np.int64)


def _fitted(audiogram, dtype=torch.float64, checkpoint=DEFAULT_CHECKPOINT):
    return load_seanet(str(checkpoint)).fit(audiogram).to(dtype)


#: A trained model whose output comes out of its nonlinear trunk (the distilled student, PReLU):
#: the shipped default is the NAL-R FIR plus a correction that stayed near zero, where neither float
#: rounding nor fine-tuning has anything to act on.
TRUNK_CHECKPOINT = DEFAULT_CHECKPOINT.parent / "seanet_distil.pt"


@pytest.fixture(scope="module")
def trunk_case():
    """The distilled student's int8 graph (moderate-sloping), converted here with a short calibration."""
    from tests.helpers import MODERATE
    from toolchain.export import tflite

    graph = _fitted(MODERATE, torch.float32, TRUNK_CHECKPOINT).streaming()
    clip = speech_clip("calib", 0, seconds=1.0)
    n = len(clip) // 16 * 16
    xb, states = graph.states_at(torch.from_numpy(clip[:n]).reshape(1, 1, n), 16, list(range(0, n // 16, 3)))
    nhwc = lambda t: t.permute(0, 2, 1).unsqueeze(1).numpy().astype(np.float32)  # noqa: E731
    xs, st = nhwc(xb), [nhwc(s) for s in states]
    reps = [[xs[k:k + 1]] + [s[k:k + 1] for s in st] for k in range(len(xs))]
    int8 = tflite.convert(tflite.build_keras_step(graph, 16), len(graph.slots), lambda: iter(reps), fp32=False).int8
    return int8, MODERATE


def test_fake_quant_equals_litert_int8_within_one_lsb(bundle_case, one_thread):
    """The shipped default's int8 graph vs its fake-quant twin, streamed block by block with state."""
    int8, audiogram = bundle_case
    fq = qat.build_fake_quant(_fitted(audiogram).streaming(), int8)
    x = speech_clip("test", 5, seconds=1.0)
    x = x[: len(x) // 16 * 16]
    lit = LiteRTBackend(int8, reference_kernels=True)
    xq = quantize(x, *lit.input_quant)
    y_lit = _stream_int8(lit, xq)

    stream_blocks = 48                     # block by block through the step function, state fed back
    states = fq.init_state(dtype=torch.float64)
    ys = []
    with torch.no_grad():
        for i in range(0, 16 * stream_blocks, 16):
            y, states = fq.step(torch.from_numpy(x[i:i + 16].astype(np.float64)).reshape(1, 1, 16), states)
            ys.append(qat.quantize_output(y, fq).ravel())
        # the rest of the second offline (zero history = the streaming start, the same graph)
        whole = qat.quantize_output(fq(torch.from_numpy(x.astype(np.float64)).reshape(1, 1, -1)), fq).ravel()
    y_step = np.concatenate(ys)
    assert np.array_equal(y_step, whole[: y_step.size])          # streaming == offline, bit for bit
    d = np.abs(whole - y_lit)
    equal = float(np.mean(d == 0))
    xnn = LiteRTBackend(int8)
    y_xnn = _stream_int8(xnn, xq)
    dx = np.abs(whole - y_xnn)
    print(f"fake-quant vs LiteRT int8 builtin kernels: {d.size} samples, {equal:.4%} equal, max |diff| {d.max()} LSB; "
          f"vs LiteRT default (XNNPACK): {np.mean(dx == 0):.2%} equal, max {dx.max()} LSB")
    assert d.max() <= 1
    assert equal >= 0.999
    assert np.ptp(y_lit) > 50                                   # a real signal, not silence


def test_float_rounding_alone_would_not_be_within_one_lsb(trunk_case, one_thread):
    """Why the twin carries TFLite's integer arithmetic: plain float fake-quant drifts by several LSB."""
    int8, audiogram = trunk_case
    fq = qat.build_fake_quant(_fitted(audiogram, checkpoint=TRUNK_CHECKPOINT).streaming(), int8)
    x = speech_clip("test", 5, seconds=0.5)
    x = x[: len(x) // 16 * 16]
    lit = LiteRTBackend(int8, reference_kernels=True)
    y_lit = _stream_int8(lit, quantize(x, *lit.input_quant))
    with torch.no_grad(), _float_only():
        y = qat.quantize_output(fq(torch.from_numpy(x.astype(np.float64)).reshape(1, 1, -1)), fq).ravel()
    assert np.abs(y - y_lit).max() > 1


class _float_only:
    """Replace the integer forward values by the float fake-quant ones (for the contrast test)."""

    def __enter__(self):
        self.saved = qat._exact
        qat._exact = lambda y_float, y_int, q: qat.fake_quant(y_float, q)

    def __exit__(self, *exc):
        qat._exact = self.saved


def test_integer_helpers_equal_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 24), 1 << 24, size=4000)
    m = rng.integers(1 << 30, (1 << 31) - 1, size=4000)
    s = rng.integers(-12, 3, size=4000)
    for mode in numpy_ref.ROUNDING_MODES:
        got = qat.requantize(torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(s), mode).numpy()
        assert np.array_equal(got, numpy_ref.requantize(x, m, s, mode)), mode
    qa, qb, qo = qat.QParams(0.011, -7), qat.QParams(0.0043, 12), qat.QParams(0.013, 3)
    a = rng.integers(-128, 128, size=(1, 6, 40))           # (B, C, frames): 240 elements, 15 chunks of 16
    b = rng.integers(-128, 128, size=(1, 6, 40))
    mults = numpy_ref.add_multipliers(qa.scale, qb.scale, qo.scale)
    for mode in numpy_ref.ADD_MODES:
        got = qat._add_int(torch.from_numpy(a), torch.from_numpy(b), qa, qb, qo, mode, mults).numpy()
        want = numpy_ref.add_s8(a[0].T.reshape(-1), b[0].T.reshape(-1), input1_zp=qa.zero_point, input2_zp=qb.zero_point,
                                output_zp=qo.zero_point, left_shift=20, multiplier1=mults[0], shift1=mults[1],
                                multiplier2=mults[2], shift2=mults[3], multiplier_out=mults[4], shift_out=mults[5],
                                mode=mode)
        assert np.array_equal(got[0].T.reshape(-1), want.astype(np.int64)), mode


def test_fake_quant_rounding_and_straight_through_gradient():
    q = qat.QParams(0.5, 3)
    x = torch.tensor([0.25, -0.25, 0.74, 100.0, -100.0], requires_grad=True)
    y = qat.fake_quant(x, q)
    # ties go away from zero (TFLite's std::round), saturation at the int8 range
    assert y.tolist() == [0.5, -0.5, 0.5, (127 - 3) * 0.5, (-128 - 3) * 0.5]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]      # clipped STE
    w = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0]])
    s = qat.symmetric_scales(w)
    assert s.tolist() == [pytest.approx(1 / 127), 1.0]
    assert qat.fake_quant_weight(w)[0].tolist() == pytest.approx([1.0, -64 / 127, 32 / 127])


def test_bias_codes_use_the_converters_float32_arithmetic():
    """A bias whose b / (s_in·s_w) is 155418.4927 in float64 but exactly .5 in TFLite's float32
    ``b · float(1 / (s_in·s_w))``: the converter wrote 155419 (a default bundle on a new machine)."""
    b = torch.tensor([0.14530566334724426, -0.14530566334724426])
    ws = torch.tensor([0.001247611828148365, 0.001247611828148365])
    s_in = 0.0007493770099245012
    assert float(b[0].double() / (ws[0].double() * s_in)) == pytest.approx(155418.4927, abs=1e-4)
    assert qat.bias_integers(b, ws, s_in).tolist() == [155419.0, -155419.0]
    # the fake-quant value is the code times s_in·s_w, with a straight-through gradient
    bb = b.clone().requires_grad_(True)
    y = qat.fake_quant_bias(bb, ws, s_in)
    assert y[0].item() == pytest.approx(155419 * 0.001247611828148365 * s_in, rel=1e-7)
    y.sum().backward()
    assert bb.grad.tolist() == [1.0, 1.0]


def test_weight_codes_are_half_away_at_full_scale():
    w = torch.tensor([[2.0, -1.0, 1.0 / 127 * 2 * 0.5, 0.0]])
    q = qat.weight_integers(w)
    assert q.tolist() == [[127.0, -64.0, 1.0, 0.0]]       # -63.5 and 0.5 go away from zero
    assert qat.weight_integers(torch.zeros(2, 3)).abs().sum() == 0


def test_weight_scales_are_checked_against_the_tflite(bundle_case):
    int8, audiogram = bundle_case
    m = _fitted(audiogram, torch.float32)
    with torch.no_grad():
        m.dec_res[1].conv1.conv.weight[3].mul_(2.0)           # not what was converted any more
    with pytest.raises(qat.QATError, match="dec_res.1.conv1: weight scales") as e:
        qat.build_fake_quant(m.streaming(), int8)
    assert "\n" not in str(e.value)


def test_gradients_reach_every_float_parameter(bundle_case, one_thread):
    int8, audiogram = bundle_case
    m = _fitted(audiogram, torch.float32)
    fq = qat.build_fake_quant(m.streaming(), int8)
    x = torch.from_numpy(speech_clip("test", 6, seconds=0.25)[:4000]).reshape(1, 1, -1)
    fq(x).square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert not missing


def test_finetuning_moves_the_shared_weights_towards_the_float_output(trunk_case, one_thread):
    """A few steps on one fixed segment raise the fake-quant-vs-float SNR on it; the float model trains in place."""
    int8, audiogram = trunk_case
    m = _fitted(audiogram, torch.float32, TRUNK_CHECKPOINT)
    graph = m.streaming()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ref_model = _fitted(audiogram, torch.float32, TRUNK_CHECKPOINT)
    seg = speech_clip("calib", 3, seconds=0.25)[:2048]
    x = torch.from_numpy(seg).reshape(1, 1, -1)

    def snr(twin) -> float:
        with torch.no_grad():
            return -10 * np.log10(float(qat.snr_loss(twin(x), ref_model(x))))

    start = snr(qat.build_fake_quant(graph, int8))
    res = qat.qat_finetune(graph, int8, [seg], 16, lr=1e-4, batch=1, segment=2048)
    end = snr(res.model)
    print(f"fake-quant vs float SNR on the training segment: {start:.2f} dB -> {end:.2f} dB after 16 steps")
    assert res.steps == 16 and len(res.history) == 16
    assert res.history[0] == pytest.approx(start, abs=1e-3)    # the loop measures the same thing
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    # deterministic (seeded, one thread): the gain is printed above
    # +0.34 dB alone, +0.19 dB inside the whole suite (the float kernels run other code paths there)
    assert end > start + 0.1 and res.history[-1] > res.history[0]


def test_bad_arguments_are_refused(bundle_case):
    int8, audiogram = bundle_case
    g = _fitted(audiogram, torch.float32).streaming()
    with pytest.raises(qat.QATError, match="steps must be >= 1"):
        qat.qat_finetune(g, int8, [np.zeros(5000, np.float32)], 0)
    with pytest.raises(qat.QATError, match="at least 4096 samples"):
        qat.qat_finetune(g, int8, [np.zeros(100, np.float32)], 1)
    with pytest.raises(qat.QATError, match="target 'riscv'"):
        qat.build_fake_quant(g, int8, target="riscv")


def test_quantize_into_reproduces_the_converter_and_the_twin(bundle_case, one_thread):
    """Weights written into the int8 graph with its activation scales kept: the unchanged weights give the
    converter's graph back (same outputs), changed weights give exactly what the twin computes."""
    from toolchain.export.ckernel import tflite_to_blob

    int8, audiogram = bundle_case
    x = speech_clip("test", 6, seconds=0.5)
    x = x[: len(x) // 16 * 16]

    def run(model: bytes) -> np.ndarray:
        be = LiteRTBackend(model, reference_kernels=True)
        return _stream_int8(be, quantize(x, *be.input_quant))

    m = _fitted(audiogram, torch.float32)
    same = qat.quantize_into(int8, m.streaming())
    assert np.array_equal(run(same), run(int8))
    assert len(same) <= len(int8) + 64                    # buffers rewritten in place, not appended
    torch.manual_seed(0)
    with torch.no_grad():                                   # a stand-in for fine-tuned weights
        for p in m.parameters():
            p.mul_(1.0 + 0.02 * torch.randn_like(p))
    tuned = qat.quantize_into(int8, m.streaming())
    twin = qat.build_fake_quant(m.double().streaming(), tuned)
    with torch.no_grad():
        y = qat.quantize_output(twin(torch.from_numpy(x.astype(np.float64)).reshape(1, 1, -1)), twin).ravel()
    assert np.array_equal(y, run(tuned))
    assert not np.array_equal(y, run(int8))
    tflite_to_blob(tuned)                                  # the C kernel takes it too


@pytest.mark.parametrize("slope", [0.2, 0.0])
def test_leaky_relu_twin_is_tflite_arithmetic(slope):
    """LeakyReLU's forward values: PRELU arithmetic with one alpha code of 1 and the slope in the
    multiplier (the C-kernel tests show this equals LiteRT's LEAKY_RELU bit for bit)."""
    from torch import nn

    qi, qo = qat.QParams(0.013, -20), qat.QParams(0.011, -70)
    act = qat.FakeQuantActivation(nn.LeakyReLU(slope), qi, qo)
    codes = np.arange(-128, 128).reshape(1, 1, -1)
    y = act(torch.from_numpy((codes - qi.zero_point) * qi.scale))
    got = np.round(y.numpy() / qo.scale).astype(np.int64) + qo.zero_point
    m1, s1, m2, s2 = numpy_ref.prelu_multipliers(qi.scale, slope, qo.scale)
    want = numpy_ref.prelu_s8(codes.reshape(-1, 1), np.ones(1, np.int8), input_zp=qi.zero_point, alpha_zp=0,
                              output_zp=qo.zero_point, multiplier_pos=m1, shift_pos=s1, multiplier_neg=m2, shift_neg=s2)
    assert np.array_equal(got.ravel(), want.ravel().astype(np.int64))
