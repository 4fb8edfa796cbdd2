"""ICNet / ψ-ICNet (seeds 001 / 000): architecture, causality, and the Keras weight importer.

The expected numbers are worked out by hand from the seed text, not from the code under test:
001 §DNN models (1)–(4) and §Time-variant multi-branch architecture, 000 Fig. 1 and Eq. 1.
TensorFlow is imported only in the Keras-equivalence test (a reference Keras model of the same
architecture, random weights); everything else reads and writes HDF5 with h5py.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from toolchain.verify.midbrain.icnet import (
    FS_AUDIO,
    FS_MUA,
    ICNet,
    ICNetConfig,
    PsiICNet,
    PsiICNetConfig,
    time_transfer,
)
from toolchain.verify.midbrain.icnet_keras_import import (
    ICNetImportError,
    export_legacy_h5,
    import_icnet,
    read_config_yaml,
    write_config_yaml,
)

# Seed 001 §DNN models, parameters per layer (kernel + bias + PReLU slopes):
SINC = 2 * 48                                    # (1) SincNet: a low cut-off and a band per filter
CONV1 = 64 * 48 * 128 + 128 + 128                # (2) first conv: 48 → 128, size 64
CONV = 64 * 128 * 128 + 128 + 128                # (2) convs 2..5: 128 → 128, size 64
BOTTLENECK = 64 * 128 * 64 + 64 + 64             # (3) 128 → 64, size 64
TIME = 1 * 1 * 64 + 64 + 64                      # multi-branch: time input → 64 filters of size 1 with bias + PReLU
DECODER_CE = 64 * 512 * 5                        # (4) no bias, 512 × Nc filters of size 1, Nc = 5
DECODER_POISSON = 64 * 512 * 1                   # Nc = 1
ENCODER = SINC + CONV1 + 4 * CONV + BOTTLENECK


@pytest.fixture(scope="module")
def icnet() -> ICNet:
    torch.manual_seed(0)
    m = ICNet()
    with torch.no_grad():  # non-trivial slopes and biases so that nothing hides behind zeros
        for name, p in m.named_parameters():
            if name.endswith("act.weight"):
                p.uniform_(0.0, 0.3)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.05)
    return m.eval()


def test_constants_follow_seed_001():
    assert FS_AUDIO == 24414.0625
    assert FS_MUA == pytest.approx(762.9395, abs=1e-4)
    c = ICNetConfig()
    assert (c.context, c.decimation, c.crop) == (2048, 32, 64)  # "2,048 divided by ... 2^5 resulted in 64"


def test_layer_shapes_and_parameter_counts_match_the_seed(icnet: ICNet):
    rows = {name: (shape, n) for name, shape, n in icnet.layer_summary(8192 + 2048)}
    assert rows["sinc"] == ((48, 10240), SINC)
    assert rows["conv1"] == ((128, 5120), CONV1)
    for i, length in zip(range(2, 6), (2560, 1280, 640, 320)):
        assert rows[f"conv{i}"] == ((128, length), CONV)
    assert rows["bottleneck"] == ((64, 320), BOTTLENECK)
    assert rows["cropped_output"] == ((64, 256), 0)  # 8192 samples → 256 bins at 762.9 Hz
    for i in range(9):
        assert rows[f"time{i}"] == ((64, 256), TIME)
        assert rows[f"decoder{i}"] == ((512, 256, 5), DECODER_CE)
    assert icnet.parameter_count() == ENCODER + 9 * (TIME + DECODER_CE) == 6_589_600

    # The real forward pass produces those shapes layer by layer.
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [mod.register_forward_hook(lambda _m, _i, out, key=key: seen.__setitem__(key, tuple(out.shape[1:])))
             for key, mod in [("sinc", icnet.encoder.sinc)] + [(f"conv{i + 1}", c) for i, c in enumerate(icnet.encoder.convs)]
             + [("bottleneck", icnet.encoder.bottleneck)]]
    try:
        with torch.inference_mode():
            out = icnet(torch.randn(1, 10240) * 0.01, branches=[0])
    finally:
        for h in hooks:
            h.remove()
    for key, (shape, _) in rows.items():
        if key in seen:
            assert seen[key] == shape, key
    assert out.shape == (1, 1, 256, 512, 5)
    assert torch.allclose(out.sum(-1), torch.ones(1, 1, 256, 512), atol=1e-5)  # softmax over the 5 count classes


def test_poisson_variant_has_softplus_rates():
    m = ICNet(ICNetConfig(n_classes=1, n_branches=1)).eval()
    assert m.parameter_count() == ENCODER + TIME + DECODER_POISSON
    with torch.inference_mode():
        out = m(torch.randn(2, 2048 + 64) * 0.01)
    assert out.shape == (2, 1, 2, 512, 1)
    assert torch.all(out > 0)


def test_icnet_is_causal(icnet: ICNet):
    """Changing the input after sample t never changes an output bin computed before t."""
    torch.manual_seed(1)
    x = torch.randn(1, 2048 + 1024) * 0.02
    t = 2048 + 32 * 12 + 7  # a sample inside output bin 12
    y = x.clone()
    y[0, t:] += torch.randn(y.shape[1] - t) * 0.05
    with torch.inference_mode():
        ra, rb = icnet.bottleneck(x), icnet.bottleneck(y)
        a, b = icnet.decode(ra, branches=[0, 5]), icnet.decode(rb, branches=[0, 5])
    # Output bin k sees frame samples up to 32k (Keras causal padding of kernel − 1 on every layer).
    last_unaffected = (t - 2048 - 1) // 32
    assert torch.equal(ra[..., : last_unaffected + 1], rb[..., : last_unaffected + 1])
    assert torch.equal(a[:, :, : last_unaffected + 1], b[:, :, : last_unaffected + 1])
    assert not torch.allclose(a[:, :, last_unaffected + 1:], b[:, :, last_unaffected + 1:])


@pytest.mark.parametrize("n_psi", [3, 6])
def test_psi_icnet_architecture_and_causality(n_psi: int):
    cfg = PsiICNetConfig(n_psi=n_psi)
    assert cfg.expand_channels == (n_psi, 2 * n_psi, 3 * n_psi)  # 000 Fig. 1: Nψ, 2Nψ, 3Nψ kernels
    widths = cfg.fusion_widths()
    assert len(widths) == 4 and widths[-1] == 64  # "4 convolutional layers ... back to 320 × 64"
    assert all(a > b for a, b in zip((64 + 3 * n_psi,) + widths, widths))  # "progressively fewer kernels"
    torch.manual_seed(0)
    m = PsiICNet(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("act.weight"):
                p.uniform_(0.0, 0.3)
    expand = sum(a * b + b + b for a, b in zip((n_psi,) + cfg.expand_channels, cfg.expand_channels))  # size-1 convs + PReLU
    fusion = sum(16 * a * b + b + b for a, b in zip((64 + 3 * n_psi,) + widths, widths))  # size 16 + PReLU
    conditioning = 5 * 9 * n_psi  # μ, log σ², s_t, W_t, o_t per animal and ψ
    assert m.parameter_count() == ENCODER + expand + fusion + DECODER_CE + conditioning
    assert all(c.conv.conv.kernel_size == (16,) for c in m.fusion)

    x = torch.randn(2, 2048 + 320) * 0.02
    psi = m.condition(torch.tensor([[1.0] * n_psi, [-3.0] * n_psi]))
    with torch.inference_mode():
        a = m(x, psi)
        y = x.clone()
        y[:, 2048 + 32 * 4 + 3:] += 0.5
        b = m(y, psi)
    assert a.shape == (2, 10, 512, 5)
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.equal(a[:, 5:], b[:, 5:])
    assert not torch.allclose(a[0], a[1])  # ψ changes the response


def test_time_transfer_function_eq1():
    psi = torch.tensor([1.0, -2.0, 0.5])
    s, w, o = torch.tensor([4.0, 20.0, 0.0]), torch.tensor([30.0, 10.0, 5.0]), torch.tensor([0.2, 0.05, 0.5])
    assert torch.equal(time_transfer(psi, 0.04, s, w, o), psi)  # before every onset: unchanged
    at = time_transfer(psi, torch.tensor([0.2, 0.05, 0.5]), s, w, o)
    assert torch.allclose(at, psi, atol=1e-6)  # continuous at t = o_t (the intercept I removes the jump)
    late = time_transfer(psi, 100.0, s, w, o)
    sig6 = 1.0 / (1.0 + math.exp(6.0))
    assert torch.allclose(late, psi + s * (1.0 - sig6), atol=1e-5)  # saturates at ψ + s_t (1 − σ(−6))
    # Out-of-range parameters are clamped to 000's ranges: s ≤ 20, W ≤ 50, o ∈ [0.05, 0.5].
    clamped = time_transfer(psi, 100.0, torch.full((3,), 99.0), torch.full((3,), 99.0), torch.full((3,), 9.0))
    assert torch.allclose(clamped, psi + 20.0 * (1.0 - sig6), atol=1e-4)
    t = torch.linspace(0.0, 1.0, 50)
    curve = torch.stack([time_transfer(psi, float(v), s, w, o) for v in t])
    assert torch.all(curve[1:] - curve[:-1] >= -1e-6)  # monotonic in time


# ------------------------------------------------------------------------------ importer
def _write(tmp_path, model: ICNet, **config_overrides):
    weights = tmp_path / "model_weights.hdf5"
    export_legacy_h5(model, weights)
    write_config_yaml(tmp_path / "config.yaml", model.config)
    if config_overrides:
        text = (tmp_path / "config.yaml").read_text()
        for k, v in config_overrides.items():
            lines = [f"{k}: {v}" if line.startswith(f"{k}:") else line for line in text.splitlines()]
            text = "\n".join(lines) + "\n"
        (tmp_path / "config.yaml").write_text(text)
    return weights


def test_released_config_fields_parse(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "#### ICNet model parameters\ncontext_size: 2048 # samples - left context\nfs_audio: 24414.0625 # Hz\n"
        "fs_MUA: 762.939453125 # Hz\nds_factor: 32 # downsampling factor\np0: 0.00002 # dB SPL reference\n"
        "audio_normalisation: 0.04 # 1/25\ntime_normalisation: "
        "0.0000277777777777777791089371117738693328647059388458728790283203125 # 1/36000\n"
        "decoder_channels: 512\nn_decoders: 9\nbottleneck_channels: 64\nn_classes: 5")
    cfg = read_config_yaml(tmp_path / "config.yaml")
    assert cfg["fs_audio"] == 24414.0625 and cfg["n_decoders"] == 9 and cfg["p0"] == 2e-5


def test_export_import_round_trip(tmp_path):
    torch.manual_seed(3)
    m = ICNet(ICNetConfig(n_branches=2))
    weights = _write(tmp_path, m)
    got, rep = import_icnet(weights)
    assert rep.layout == "keras-legacy-h5" and rep.config == str(tmp_path / "config.yaml")
    for k, v in m.state_dict().items():
        assert torch.equal(got.state_dict()[k], v), k


@pytest.mark.parametrize("field, value, words", [
    ("bottleneck_channels", 32, "bottleneck"),
    ("ds_factor", 16, "decimation"),
    ("fs_audio", 16000, "audio rate"),
    ("n_classes", 3, "n_classes"),
    ("n_decoders", 3, "n_decoders"),
])
def test_config_that_does_not_match_is_a_one_line_error(tmp_path, field, value, words):
    weights = _write(tmp_path, ICNet(ICNetConfig(n_branches=2)), **{field: value})
    with pytest.raises(ICNetImportError) as e:
        import_icnet(weights)
    msg = str(e.value)
    assert "\n" not in msg and words in msg and "config.yaml" in msg


def test_missing_or_malformed_weights_are_one_line_errors(tmp_path):
    with pytest.raises(ICNetImportError, match="not found"):
        import_icnet(tmp_path / "nope.hdf5")
    bad = tmp_path / "bad.hdf5"
    bad.write_text("this is not HDF5")
    with pytest.raises(ICNetImportError, match="not an HDF5"):
        import_icnet(bad)
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:  # a Keras file of some other model
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"dense"])
        lg = g.create_group("dense")
        lg.attrs["weight_names"] = np.array([b"dense/kernel:0"])
        lg.create_dataset("dense/kernel:0", data=np.zeros((3, 4), np.float32))
    with pytest.raises(ICNetImportError) as e:
        import_icnet(wrong)
    assert "\n" not in str(e.value) and str(wrong) in str(e.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_import_equivalence(tmp_path):
    """A Keras model of the same architecture with random weights, saved as Keras writes it
    (legacy ``model.save("x.h5")`` and Keras 3 ``save_weights("x.weights.h5")``): torch equals Keras."""
    import keras
    from keras import layers, ops

    fs = FS_AUDIO

    class Sinc(layers.Layer):  # SincNet as 001 ref. 36 / the released layer: 48 filters, 64 + 1 taps
        def __init__(self, **kw):
            super().__init__(**kw)
            self.taps = 65

        def build(self, input_shape):
            self.filt_b1 = self.add_weight(name="filt_b1", shape=(48, 1), initializer="zeros")
            self.filt_band = self.add_weight(name="filt_band", shape=(48, 1), initializer="zeros")

        def call(self, x):
            t = (np.linspace(1.0, 32.0, 32) / fs).astype("float32")[None, :]
            n = np.arange(65)
            window = (0.54 - 0.46 * np.cos(2 * np.pi * n / 65)).astype("float32")[None, :]

            def sinc(f):
                arg = 2 * np.pi * f * fs * t
                right = ops.sin(arg) / arg
                return ops.concatenate([ops.flip(right, axis=1), ops.ones((48, 1)), right], axis=1)

            beg = ops.abs(self.filt_b1) + 50.0 / fs
            end = beg + ops.abs(self.filt_band) + 50.0 / fs
            bp = 2 * end * sinc(end) - 2 * beg * sinc(beg)
            bp = bp / ops.max(bp, axis=1, keepdims=True)
            k = ops.reshape(ops.transpose(bp * window), (65, 1, 48))
            y = ops.conv(ops.pad(x, ((0, 0), (64, 0), (0, 0))), k, strides=1, padding="valid")
            return ops.sign(y) * ops.log(ops.abs(y) + 1.0)

    class Block(layers.Layer):  # conv + PReLU in one layer, as the released ConvEncoderBlock
        def __init__(self, channels, kernel_size, strides=1, **kw):
            super().__init__(**kw)
            self.conv = layers.Conv1D(channels, kernel_size, strides=strides, padding="causal", name=f"{self.name}_conv")
            self.out = layers.PReLU(shared_axes=[1], name=f"{self.name}_out")

        def call(self, x):
            return self.out(self.conv(x))

    def build(blocks: bool, time_order: list[int]):
        audio = keras.Input((None, 1), name="audio")
        times = [keras.Input((None, 1), name=f"time_{i}") for i in range(2)]

        def conv_act(h, ch, k, s, name):
            if blocks:
                return Block(ch, k, s, name=name)(h)
            h = layers.Conv1D(ch, k, strides=s, padding="causal", name=f"{name}_conv")(h)
            return layers.PReLU(shared_axes=[1], name=f"{name}_prelu")(h)

        h = Sinc(name="sinc_net_block")(audio)
        for i in range(5):
            h = conv_act(h, 128, 64, 2, f"encoder_{i}")
        h = conv_act(h, 64, 64, 1, "bottleneck")
        h = layers.Cropping1D((64, 0), name="cropped_output")(h)
        tb = {i: conv_act(times[i], 64, 1, 1, f"time_{'ab'[i]}") for i in time_order}
        outs = []
        for i in range(2):
            d = layers.Conv1D(512 * 5, 1, use_bias=False, name=f"decoder_{i}")(layers.Multiply()([h, tb[i]]))
            outs.append(layers.Softmax(axis=-1)(layers.Reshape((-1, 512, 5))(d)))
        return keras.Model([audio, times], outs)

    rng = np.random.default_rng(0)
    model = build(True, [0, 1])
    mel = np.linspace(80.0, 2595 * np.log10(1 + fs / 2 / 700), 48)
    f = 700 * (10 ** (mel / 2595) - 1)
    b1, b2 = np.roll(f, 1), np.roll(f, -1)
    b1[0], b2[-1] = 30.0, fs / 2 - 100
    for layer in model.layers:
        ws = layer.get_weights()
        if isinstance(layer, Sinc):
            jit = rng.uniform(0.9, 1.1, 48)
            layer.set_weights([(b1 * jit / fs)[:, None].astype("float32"), ((b2 - b1) * jit / fs)[:, None].astype("float32")])
        elif ws:
            new = []
            for w in ws:
                if w.ndim == 3:
                    scale = 8.0 if w.shape[0] == 1 and w.shape[1] == 64 else 1.5  # lively decoders
                    new.append(rng.normal(0, scale / np.sqrt(w.shape[0] * w.shape[1]), w.shape))
                elif w.ndim == 1:
                    new.append(rng.normal(0, 0.05, w.shape))
                else:
                    new.append(rng.uniform(0.0, 0.3, w.shape))
            layer.set_weights([a.astype("float32") for a in new])
    legacy, k3 = tmp_path / "model_weights.hdf5", tmp_path / "icnet.weights.h5"
    model.save(legacy)
    model.save_weights(k3)
    write_config_yaml(tmp_path / "config.yaml", ICNetConfig(n_branches=2))

    x = (rng.standard_normal((1, 2048 + 1024, 1)) * 0.05).astype("float32")
    tin = np.full((1, 32, 1), 7200 / 36000, np.float32)  # 2 h, the released example's time input
    probe = keras.Model(model.inputs, model.outputs + [model.get_layer("cropped_output").output])
    *want, want_rb = [np.asarray(o) for o in probe({"audio": x, "time_0": tin, "time_1": tin})]
    assert np.std((want[0] * np.arange(5)).sum(-1)) > 0.05  # the reference is not a constant

    errors = {}
    for path in (legacy, k3):
        net, rep = import_icnet(path)
        with torch.inference_mode():
            rb = net.bottleneck(torch.from_numpy(x[..., 0]))
            got = net.decode(rb, torch.from_numpy(tin[..., 0]))
        errors[rep.layout] = max(float(np.abs(got[0, i].numpy() - want[i][0]).max()) for i in range(2))
        assert np.abs(rb.numpy().transpose(0, 2, 1) - want_rb).max() < 1e-4 * max(1.0, np.abs(want_rb).max())
    assert set(errors) == {"keras-legacy-h5", "keras3-weights-h5"}
    assert max(errors.values()) < 1e-4, errors
    print(f"Keras import max abs error: {errors}")

    # Standalone Conv1D + PReLU layers and time branches built in another order: the legacy file's
    # graph pairs every PReLU with its conv and every decoder with its own time branch.
    other = build(False, [1, 0])
    by_name = {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}
    for layer in other.layers:
        n = layer.name
        if n.endswith("_conv") and n[:-5] in by_name:
            layer.set_weights(by_name[n[:-5]][:2])
        elif n.endswith("_prelu") and n[:-6] in by_name:
            layer.set_weights(by_name[n[:-6]][2:])
        elif n in by_name:
            layer.set_weights(by_name[n])
    other.save(tmp_path / "other.h5")
    net_a, _ = import_icnet(legacy)
    net_b, rep_b = import_icnet(tmp_path / "other.h5", tmp_path / "config.yaml")
    assert rep_b.graph_traced
    for k, v in net_a.state_dict().items():
        assert torch.equal(net_b.state_dict()[k], v), k
