"""The SEANet compensator: budgets, fitting, streaming == offline, causality, latency."""

import pytest
import torch

from tests.helpers import MODERATE, randomised_seanet
from toolchain.models.compensators.seanet import SEANet, SEANetConfig, load_seanet, save_seanet


def test_default_config_meets_the_budgets():
    m = SEANet()
    assert m.config.total_stride <= 16            # ≤ 1 ms at 16 kHz (DESIGN.md)
    assert m.deployed_parameters() <= 150_000
    assert m.macs_per_second() <= 100e6


def test_macs_count_matches_hooks():
    """The analytic MAC count equals one counted by hooks on one second of a real forward pass."""
    m = randomised_seanet().fit(MODERATE)
    counted = 0

    def conv_hook(mod, inp, out):
        nonlocal counted
        counted += out.shape[-1] * mod.in_channels * mod.out_channels * mod.kernel_size[0]

    def convtr_hook(mod, inp, out):
        nonlocal counted
        counted += inp[0].shape[-1] * mod.in_channels * mod.out_channels * mod.kernel_size[0]

    handles = [c.register_forward_hook(conv_hook) for c in m.modules() if type(c) is torch.nn.Conv1d]
    handles += [c.register_forward_hook(convtr_hook) for c in m.modules() if type(c) is torch.nn.ConvTranspose1d]
    with torch.no_grad():
        m(torch.zeros(1, 1, m.config.sample_rate))
    for h in handles:
        h.remove()
    assert counted == m.macs_per_second()


@pytest.mark.parametrize("block", [16, 32, 48, 160])
def test_streaming_equals_offline(block):
    m = randomised_seanet(3).fit(MODERATE)
    torch.manual_seed(5)
    x = torch.randn(1, 1, 160 * 6) * 0.1
    with torch.no_grad():
        off = m(x)
        g = m.streaming()
        for _ in range(2):  # the second pass starts from a reset (fresh) state
            state = g.init_state()
            ys = []
            for i in range(0, x.shape[-1], block):
                y, state = g.step(x[..., i:i + block], state)
                ys.append(y)
            assert (torch.cat(ys, -1) - off).abs().max().item() <= 1e-5


def test_fit_folds_the_audiogram():
    m = randomised_seanet(4)
    x = torch.randn(1, 1, 640) * 0.1
    a = torch.from_numpy(MODERATE)[None]
    with torch.no_grad():
        conditioned = m(x, a)
        fitted = m.fit(MODERATE)
        assert fitted.is_fitted and not m.is_fitted
        assert torch.allclose(fitted(x), conditioned, atol=1e-5)
        assert torch.equal(fitted.fitted_audiogram, a[0])
    with pytest.raises(ValueError, match="already fitted"):
        fitted.fit(MODERATE)
    with pytest.raises(ValueError, match="fit"):
        m.streaming()


def test_audiogram_changes_the_output():
    m = randomised_seanet(4)
    x = torch.randn(1, 1, 640) * 0.1
    with torch.no_grad():
        a = m(x, torch.zeros(1, 8))
        b = m(x, torch.full((1, 8), 60.0))
    assert (a - b).abs().max() > 1e-3


def test_block_causal():
    """Output before the frame holding sample t never depends on input at or after t."""
    m = randomised_seanet(6).fit(MODERATE)
    x = torch.randn(1, 1, 320) * 0.1
    with torch.no_grad():
        y = m(x)
        for t in (37, 160, 201):
            x2 = x.clone()
            x2[..., t:] = torch.randn(1, 1, 320 - t)
            y2 = m(x2)
            frame = t // m.config.total_stride * m.config.total_stride
            assert torch.equal(y2[..., :frame], y[..., :frame])
            assert not torch.equal(y2[..., frame:], y[..., frame:])


def test_untrained_model_is_a_pass_through():
    m = SEANet().fit(MODERATE)
    x = torch.randn(1, 1, 320) * 0.1
    with torch.no_grad():
        assert torch.allclose(m(x), x, atol=1e-6)


def test_latency_and_block_checks():
    m = SEANet()
    assert m.algorithmic_latency_samples(16) == 16
    assert m.algorithmic_latency_samples(32) == 32
    for bad in (0, 8, 24):
        with pytest.raises(ValueError, match="multiple of the model's total stride 16"):
            m.check_block(bad)


def test_checkpoint_round_trip(tmp_path):
    m = randomised_seanet(7)
    p = tmp_path / "m.pt"
    save_seanet(m, str(p), extra={"seed": 7})
    m2 = load_seanet(str(p))
    x = torch.randn(1, 1, 320) * 0.1
    a = torch.from_numpy(MODERATE)[None]
    with torch.no_grad():
        assert torch.equal(m(x, a), m2(x, a))
    assert [f.name for f in tmp_path.iterdir()] == ["m.pt"]


def test_config_validation():
    with pytest.raises(ValueError, match="activation"):
        SEANetConfig(activation="gelu")
    with pytest.raises(ValueError, match="SEANet config: unknown key .channelz.; expected one of sample_rate"):
        SEANetConfig.from_dict({"channelz": 3})
    assert SEANetConfig.from_dict(SEANetConfig().to_dict()) == SEANetConfig()


SKIP = SEANetConfig(skip_taps=7)


def test_filter_skip_starts_as_the_identity_and_streams():
    m = SEANet(SKIP)
    x = torch.randn(2, 1, 320) * 0.1
    with torch.no_grad():
        assert torch.equal(m(x, torch.from_numpy(MODERATE).expand(2, -1)), x)
    r = randomised_seanet(8, SKIP)
    a = torch.from_numpy(MODERATE)[None]
    fitted = r.fit(MODERATE)
    assert fitted.skip_in.film_offset is None                       # FiLM folded into its taps
    with torch.no_grad():
        assert torch.allclose(fitted(x[:1]), r(x[:1], a), atol=1e-5)
        g = fitted.streaming()
        state, ys = g.init_state(), []
        for i in range(0, 320, 16):
            y, state = g.step(x[:1, :, i:i + 16], state)
            ys.append(y)
        assert (torch.cat(ys, -1) - fitted(x[:1])).abs().max().item() <= 1e-5
    assert r.deployed_parameters() == SEANet().deployed_parameters() + 4 * 7 + 4 + 4 + 1
    assert r.macs_per_second() == SEANet().macs_per_second() + 16000 * (4 * 7 + 4)


def test_skip_config_validation():
    with pytest.raises(ValueError, match="must equal kernel_size"):
        SEANetConfig(skip_taps=15)
    with pytest.raises(ValueError, match="needs input_skip"):
        SEANetConfig(skip_taps=7, input_skip=False)
    with pytest.raises(ValueError, match="skip_channels"):
        SEANetConfig(skip_taps=7, skip_channels=0)
    assert SEANetConfig.from_dict(SKIP.to_dict()) == SKIP
