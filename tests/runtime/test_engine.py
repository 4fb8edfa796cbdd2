"""Engine: host block-size invariance on every backend, state snapshots, the limiter and
non-finite input safety (property-based), the fast int8 paths against their references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.backends import open_backend
from runtime.backends.base import quantize
from runtime.bundle import load_bundle
from runtime.engine import Engine, Limiter, _Quantizer

BACKENDS = ["litert", "ckernel", "onnx", "litert-fp32", "torch"]
HOST_BLOCKS = [1, 7, 16, 100, 333, 4096]


@pytest.fixture(scope="module")
def bundle(default_bundle):
    return load_bundle(default_bundle)


def make_engine(bundle, name: str, **kw) -> Engine:
    if name == "torch":
        from toolchain.export.torch_backend import TorchBackend

        return Engine(bundle, TorchBackend(bundle), **kw)
    return Engine(bundle, name, **kw)


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = rng.standard_normal(n) * 0.08 * (0.3 + np.sin(2 * np.pi * 3 * t) ** 2) + 0.2 * np.sin(2 * np.pi * 440 * t)
    return x.astype(np.float32)


def feed(engine: Engine, x: np.ndarray, sizes) -> np.ndarray:
    """Stream x in pieces of the given sizes (cycled), then flush; output trimmed to len(x)."""
    engine.reset()
    out, i, k = [], 0, 0
    sizes = list(sizes)
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(engine.process(x[i:i + n]))
        i += n
        k += 1
    out.append(engine.flush())
    return np.concatenate(out)[: len(x)]


@pytest.mark.parametrize("name", BACKENDS)
def test_output_does_not_depend_on_host_block_size(bundle, name):
    n = 1600 if name == "torch" else 8000  # the torch reference steps in Python (~ms per block)
    x = speechlike(n, seed=1)
    eng = make_engine(bundle, name)
    ref = eng.run(x)
    assert ref.shape == x.shape and ref.dtype == np.float32
    assert np.abs(ref).max() > 1e-3, "the model should produce sound"
    for hb in HOST_BLOCKS:
        y = feed(eng, x, [hb])
        assert np.array_equal(y, ref), f"{name}: host block {hb} changed the output"
    rng = np.random.default_rng(5)
    y = feed(eng, x, rng.integers(1, 700, size=50).tolist())  # a jittery audio API
    assert np.array_equal(y, ref), f"{name}: variable host blocks changed the output"
    assert eng.stats()["samples_out"] >= len(x)


@pytest.mark.parametrize("name", BACKENDS)
def test_state_snapshot_and_restore_reproduce_the_output(bundle, name):
    n = 1280 if name == "torch" else 6400
    x = speechlike(n, seed=2)
    cut = n // 2 + 5  # mid-block: the FIFO's partial block is part of the snapshot
    eng = make_engine(bundle, name)
    ref = eng.run(x)
    eng.reset()
    first = eng.process(x[:cut])
    snap = eng.get_state()
    rest1 = np.concatenate([eng.process(x[cut:]), eng.flush()])
    # Scribble over the state, then restore the snapshot: the continuation must be identical.
    eng.process(speechlike(999, seed=9))
    eng.set_state(snap)
    rest2 = np.concatenate([eng.process(x[cut:]), eng.flush()])
    assert np.array_equal(rest1, rest2)
    assert np.array_equal(np.concatenate([first, rest1])[:n], ref)
    # The same snapshot restores into a second engine (a second device, or after a restart).
    other = make_engine(bundle, name)
    other.set_state(snap)
    assert np.array_equal(np.concatenate([other.process(x[cut:]), other.flush()]), rest1)
    # reset() is a fresh device.
    eng.reset()
    assert np.array_equal(eng.run(x), ref)


@pytest.mark.parametrize("name", ["litert", "ckernel"])
def test_stream_is_the_offline_output_delayed_by_one_block(bundle, name):
    x = speechlike(4000, seed=3)
    eng = make_engine(bundle, name)
    ref = eng.run(x)
    for hb in (1, 10, 16, 48, 129):
        eng.reset()
        y = np.concatenate([eng.stream(x[i:i + hb]) for i in range(0, len(x), hb)])
        assert len(y) == len(x)
        d = eng.stream_delay
        assert d == eng.block
        assert np.array_equal(y[:d], np.zeros(d, np.float32))
        assert np.array_equal(y[d:], ref[: len(x) - d]), hb
        assert eng.stats()["underruns"] == 0
    low = make_engine(bundle, name, stream_delay=0)  # host block a multiple of the model block
    y = np.concatenate([low.stream(x[i:i + 32]) for i in range(0, 3200, 32)])
    assert np.array_equal(y, ref[:3200]) and low.stats()["underruns"] == 0


def test_int8_fast_paths_are_bit_identical_to_the_references(bundle):
    """The litert hot path (tensor views + Invoke) equals the signature runner; the engine's
    quantiser equals base.quantize; the engine equals the backends' own float process()."""
    x = speechlike(3200, seed=4)
    fast = open_backend(bundle, "litert")
    ref = open_backend(bundle, "litert")
    assert fast._fast
    s, z = fast.input_quant
    for i in range(0, len(x), 16):
        xq = quantize(x[i:i + 16], s, z)
        assert np.array_equal(fast.process_raw(xq), ref.process_signature(xq))
    for name in ("litert", "ckernel"):
        be = open_backend(bundle, name)
        direct = np.concatenate([be.process(x[i:i + 16]) for i in range(0, len(x), 16)])
        assert np.array_equal(Engine(bundle, name, output_limit=bundle.manifest.output_limit).run(x),
                              Limiter(bundle.manifest.output_limit, bundle.manifest.sample_rate).process(direct)[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=64),
       st.floats(1e-4, 1.0), st.integers(-128, 127))
def test_quantiser_matches_base_quantize(values, scale, zp):
    x = np.array(values, np.float32)
    x = np.where(np.isnan(x), np.float32(0), x)  # the engine hands it finite samples only (NaN → 0 before)
    with np.errstate(invalid="ignore"):
        assert np.array_equal(_Quantizer(scale, zp)(x), quantize(x, scale, zp))
    # Exact .5 ties, both signs.
    ties = (np.arange(-300, 301) * 0.5 * scale).astype(np.float32)
    assert np.array_equal(_Quantizer(scale, zp)(ties), quantize(ties, scale, zp))


# --------------------------------------------------------------------------- safety
class WildBackend:
    """A model gone wrong: huge gain, NaN and inf bursts, DC offsets. The engine must stay safe."""

    name = "wild"

    def __init__(self, block: int, seed: int) -> None:
        self.block = block
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def process(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            y = np.asarray(x, np.float32) * np.float32(self.rng.choice([0.5, 1.0, 40.0, 1e30]))
        k = self.rng.integers(0, 6)
        if k == 0:
            y[self.rng.integers(0, self.block)] = np.nan
        elif k == 1:
            y[:] = np.inf
        elif k == 2:
            y[:] = -np.inf
        elif k == 3:
            y = y + np.float32(3.0)
        return y.astype(np.float32)

    def get_state(self):
        return []

    def set_state(self, state):
        pass


def signals():
    n = st.integers(16, 3000)
    special = st.sampled_from([np.nan, np.inf, -np.inf, 1.0, -1.0, 0.0, 1e38, -1e38, 1e-45])
    random = st.builds(lambda n, s, a: (np.random.default_rng(s).standard_normal(n) * a).astype(np.float32),
                       n, st.integers(0, 2 ** 31), st.floats(0, 4))
    square = st.builds(lambda n, p: np.where((np.arange(n) // p) % 2 == 0, 1.0, -1.0).astype(np.float32),
                       n, st.integers(1, 200))
    dc = st.builds(lambda n, v: np.full(n, v, np.float32), n, st.floats(-2, 2))
    with_holes = st.builds(lambda x, idx, v: _poke(x, idx, v), st.one_of(random, square, dc),
                           st.lists(st.integers(0, 10 ** 6), max_size=20), special)
    return st.one_of(random, square, dc, with_holes)


def _poke(x: np.ndarray, idx: list[int], v: float) -> np.ndarray:
    x = x.copy()
    for i in idx:
        x[i % len(x)] = v
    return x


@pytest.fixture(scope="module")
def litert_engine(bundle):
    return Engine(bundle, "litert")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(x=signals(), hb=st.integers(1, 600))
def test_engine_output_is_always_finite_and_within_the_limit(litert_engine, bundle, x, hb):
    limit = np.float32(bundle.manifest.output_limit)
    eng = litert_engine
    eng.reset()
    y = np.concatenate([eng.process(x[i:i + hb]) for i in range(0, len(x), hb)] + [eng.flush()])
    assert np.isfinite(y).all()
    assert np.abs(y).max(initial=0) <= limit
    st_ = eng.stats()
    assert st_["nonfinite_inputs"] == int(np.count_nonzero(~np.isfinite(x)))
    assert st_["samples_in"] == len(x)
    # Full-scale square waves and DC far above the limit must engage the limiter or the model must be quiet.
    assert st_["min_limiter_gain"] <= 1.0


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=signals(), seed=st.integers(0, 2 ** 31), hb=st.integers(1, 700))
def test_limiter_holds_even_when_the_model_misbehaves(bundle, x, seed, hb):
    m = bundle.manifest
    eng = Engine(bundle, WildBackend(m.block, seed))
    y = np.concatenate([eng.process(x[i:i + hb]) for i in range(0, len(x), hb)] + [eng.flush()])
    assert np.isfinite(y).all()
    assert np.abs(y).max(initial=0) <= np.float32(m.output_limit)
    s = eng.stats()
    assert s["nonfinite_inputs"] == int(np.count_nonzero(~np.isfinite(x)))
    assert 0.0 <= s["min_limiter_gain"] <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=400), st.integers(1, 64),
       st.floats(0.05, 1.0), st.floats(0.5, 200))
def test_limiter_is_exactly_sequential_and_chunking_invariant(values, chunk, limit, release_ms):
    x = np.array(values, np.float32)
    whole = Limiter(limit, 16000, release_ms)
    y, _, _ = whole.process(x)
    # The plain per-sample definition.
    ref = Limiter(limit, 16000, release_ms)
    u, out = 0.0, []
    for v in x.astype(np.float64):
        need = 1.0 - limit / abs(v) if abs(v) > limit else 0.0
        u = u * ref.release  # gain reduction: exponential release ...
        u = 0.0 if u < Limiter.SNAP else u
        u = max(need, u)  # ... and instant attack
        out.append(np.float32(v * (1.0 - u)))
    lim32 = np.float32(limit) if float(np.float32(limit)) <= limit else np.nextafter(np.float32(limit), np.float32(0))
    assert np.array_equal(y, np.clip(np.array(out, np.float32), -lim32, lim32))
    assert float(np.abs(y).max()) <= limit
    parts = Limiter(limit, 16000, release_ms)
    y2 = np.concatenate([parts.process(x[i:i + chunk])[0] for i in range(0, len(x), chunk)])
    assert np.array_equal(y, y2)


def test_limiter_recovers_and_counts(bundle):
    lim = Limiter(0.5, 16000, 10.0)
    y, n, g = lim.process(np.full(160, 2.0, np.float32))
    assert np.abs(y).max() <= np.float32(0.5) and n == 160 and g == pytest.approx(0.25)
    y, n, g = lim.process(np.full(16000, 0.1, np.float32))
    assert lim.gain == 1.0 and lim.reduction == 0.0 and y[-1] == np.float32(0.1)  # fully released
    assert y[0] < y[-1] and np.all(np.diff(y) >= 0)  # smoothly, not snapped back
    # Chunked the same as whole, across the release and the snap back to gain 1.
    x = np.concatenate([np.full(100, 3.0), np.full(20000, 0.2), np.full(50, -0.9)]).astype(np.float32)
    whole = Limiter(0.5, 16000, 10.0).process(x)[0]
    lim = Limiter(0.5, 16000, 10.0)
    assert np.array_equal(np.concatenate([lim.process(x[i:i + 333])[0] for i in range(0, len(x), 333)]), whole)


def test_engine_counts_nonfinite_input_and_replaces_it_with_silence(bundle):
    eng = Engine(bundle, "litert")
    silence = eng.run(np.zeros(1600, np.float32))
    eng.reset()
    x = np.zeros(1600, np.float32)
    x[[3, 100, 1500]] = [np.nan, np.inf, -np.inf]
    y = np.concatenate([eng.process(x), eng.flush()])[:1600]
    assert eng.stats()["nonfinite_inputs"] == 3
    assert np.array_equal(y, silence)


def test_engine_stats_expose_the_counters(bundle):
    eng = Engine(bundle, "litert")
    eng.run(speechlike(1600))
    eng.note_xrun(2)
    s = eng.stats()
    for k in ("blocks", "xruns", "late_blocks", "limiter_samples", "min_limiter_gain", "nonfinite_inputs",
              "max_block_us", "recent_p50_us", "recent_p99_us", "load", "load_p99", "underruns"):
        assert k in s, k
    assert s["xruns"] == 2 and s["blocks"] == 100 and 0 < s["recent_p50_us"] <= s["recent_p99_us"]
    assert len(eng.block_times_us()) == 100


def test_engine_refuses_a_limit_above_the_bundle_and_a_mismatched_backend(bundle):
    with pytest.raises(ValueError, match="limit"):
        Engine(bundle, "litert", output_limit=1.0)

    class Wrong(WildBackend):
        pass

    with pytest.raises(ValueError, match="block"):
        Engine(bundle, Wrong(bundle.manifest.block * 2, 0))


@pytest.mark.parametrize("limit", [0.3, 0.5346, 0.891, 1.0])
def test_limiter_never_exceeds_a_limit_that_float32_rounds_up(limit):
    """float32(0.3) is 0.30000001: clipping there would emit samples one ulp above the limit."""
    lim = Limiter(limit, 16000)
    x = np.array([5.0, -5.0, limit, -limit, np.inf, -np.inf, np.nan, 0.1], np.float32)
    for _ in range(3):  # attack, then the release path with the gain state carried over
        y, _, _ = lim.process(x)
        assert np.isfinite(y).all() and float(np.max(np.abs(y))) <= limit
