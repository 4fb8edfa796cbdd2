"""Streaming leaves: step over blocks == offline forward; transposed conv == nn.ConvTranspose1d."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from toolchain.models.compensators.streaming import CausalConv1d, CausalConvTranspose1d, StreamingGraph


def _stream(leaf, x, block):
    state = leaf.init_state(x.shape[0])
    ys = []
    for i in range(0, x.shape[-1], block):
        y, state = leaf.step(x[..., i:i + block], state)
        ys.append(y)
    return torch.cat(ys, -1)


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 5), cout=st.integers(1, 5), k=st.integers(1, 8), stride=st.integers(1, 4),
       blocks=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_causal_conv_streams_like_offline(cin, cout, k, stride, blocks, seed):
    if k < stride:
        with pytest.raises(ValueError):
            CausalConv1d(cin, cout, k, stride=stride)
        return
    torch.manual_seed(seed)
    leaf = CausalConv1d(cin, cout, k, stride=stride)
    block = stride * 4
    x = torch.randn(2, cin, block * blocks)
    off = leaf(x)
    assert off.shape[-1] == x.shape[-1] // stride
    torch.testing.assert_close(_stream(leaf, x, block), off, atol=1e-5, rtol=0)


def test_causal_conv_is_causal():
    torch.manual_seed(0)
    leaf = CausalConv1d(2, 3, 5)
    x = torch.randn(1, 2, 40)
    y = leaf(x)
    x2 = x.clone()
    x2[..., 20:] += 1.0
    assert torch.equal(leaf(x2)[..., :20], y[..., :20])
    assert not torch.equal(leaf(x2)[..., 20:], y[..., 20:])


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 5), cout=st.integers(1, 5), stride=st.integers(1, 4), taps=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_transposed_conv_pixel_shuffle_equals_torch(cin, cout, stride, taps, seed):
    torch.manual_seed(seed)
    leaf = CausalConvTranspose1d(cin, cout, stride, taps=taps)
    x = torch.randn(2, cin, 12)
    ref = nn.functional.conv_transpose1d(x, leaf.convtr.weight, leaf.convtr.bias, stride=stride)[..., : 12 * stride]
    torch.testing.assert_close(leaf(x), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(_stream(leaf, x, 3), ref, atol=1e-5, rtol=0)


def test_film_folding_equals_conditioning():
    torch.manual_seed(1)
    leaf = CausalConv1d(3, 4, 3, film_offset=2)
    film = torch.randn(1, 2 + 8)
    x = torch.randn(1, 3, 20)
    conditioned = leaf(x, film)
    leaf.fold_film(film)
    torch.testing.assert_close(leaf(x), conditioned, atol=1e-5, rtol=0)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = CausalConv1d(1, 4, 5)
        self.act = nn.PReLU(4)
        self.down = CausalConv1d(4, 6, 4, stride=2)
        self.up = CausalConvTranspose1d(6, 4, 2)
        self.out = CausalConv1d(4, 1, 3)

    def forward(self, x):
        h = self.act(self.a(x))
        return self.out(self.up(self.down(h)) + h) + x


def test_graph_states_at_equals_streamed_states():
    torch.manual_seed(2)
    g = StreamingGraph(_Tiny().eval())
    x = torch.randn(1, 1, 8 * 10)
    blocks, states = g.states_at(x, 8)
    st_ = g.init_state()
    with torch.no_grad():
        for k in range(10):
            assert torch.equal(blocks[k, 0], x[0, 0, 8 * k:8 * k + 8])
            for live, snap in zip(st_, states):
                torch.testing.assert_close(live[0], snap[k], atol=1e-6, rtol=0)
            _, st_ = g.step(x[..., 8 * k:8 * k + 8], st_)


def test_graph_rejects_wrong_state_count():
    g = StreamingGraph(_Tiny().eval())
    with pytest.raises(ValueError, match="state tensors"):
        g.step(torch.zeros(1, 1, 8), [])
