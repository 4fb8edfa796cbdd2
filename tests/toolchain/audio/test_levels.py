"""Tests for the one dB SPL calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.audio.levels import (
    DEFAULT_CALIBRATION,
    LevelCalibration,
    level_db_spl,
    set_level,
)


def _sine(amplitude: float, n: int = 16000, freq: float = 1000.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(n) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_full_scale_sine_is_100_db_spl() -> None:
    assert DEFAULT_CALIBRATION.full_scale_sine_db_spl == 100.0
    assert DEFAULT_CALIBRATION.level_db_spl(_sine(1.0)) == pytest.approx(100.0, abs=1e-3)
    assert DEFAULT_CALIBRATION.rms_to_db_spl(1 / math.sqrt(2)) == pytest.approx(100.0)
    # Half amplitude is 6.02 dB less.
    assert DEFAULT_CALIBRATION.level_db_spl(_sine(0.5)) == pytest.approx(100.0 - 6.0206, abs=1e-3)


def test_board_override_shifts_every_level() -> None:
    cal = LevelCalibration(full_scale_sine_db_spl=110.0)
    assert cal.level_db_spl(_sine(1.0)) == pytest.approx(110.0, abs=1e-3)
    assert LevelCalibration.from_mapping({"full_scale_sine_db_spl": 94}).full_scale_sine_db_spl == 94.0
    assert LevelCalibration.from_mapping({}) == DEFAULT_CALIBRATION


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "100", True, None])
def test_calibration_rejects_bad_values(bad: object) -> None:
    with pytest.raises(ValueError):
        LevelCalibration(full_scale_sine_db_spl=bad)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=-20.0, max_value=140.0), st.floats(min_value=80.0, max_value=130.0))
def test_rms_db_round_trip(db: float, fs: float) -> None:
    cal = LevelCalibration(full_scale_sine_db_spl=fs)
    assert cal.rms_to_db_spl(cal.db_spl_to_rms(db)) == pytest.approx(db, abs=1e-9)
    assert cal.power_to_db_spl(cal.db_spl_to_power(db)) == pytest.approx(db, abs=1e-9)


def test_power_and_rms_agree_and_vectorise() -> None:
    rms = np.array([0.001, 0.01, 0.1, 1.0])
    via_power = DEFAULT_CALIBRATION.power_to_db_spl(rms**2)
    via_rms = DEFAULT_CALIBRATION.rms_to_db_spl(rms)
    assert isinstance(via_power, np.ndarray) and via_power.shape == (4,)
    np.testing.assert_allclose(via_power, via_rms, atol=1e-9)
    # Mean square 0.5 is a full-scale sine.
    assert DEFAULT_CALIBRATION.power_to_db_spl(0.5) == pytest.approx(100.0)
    assert isinstance(DEFAULT_CALIBRATION.power_to_db_spl(0.5), float)


def test_silence_is_minus_inf_and_negative_is_error() -> None:
    assert DEFAULT_CALIBRATION.level_db_spl(np.zeros(100, np.float32)) == -math.inf
    assert DEFAULT_CALIBRATION.power_to_db_spl(0.0) == -math.inf
    with pytest.raises(ValueError):
        DEFAULT_CALIBRATION.rms_to_db_spl(-1.0)
    with pytest.raises(ValueError):
        DEFAULT_CALIBRATION.power_to_db_spl(np.array([1.0, -0.1]))


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=20.0, max_value=100.0), st.integers(min_value=0, max_value=2**31))
def test_set_level_round_trip(db: float, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    y = set_level(x, db)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert level_db_spl(y) == pytest.approx(db, abs=1e-4)


def test_set_level_per_row() -> None:
    x = np.random.default_rng(0).standard_normal((3, 256)) * np.array([[0.1], [1.0], [3.0]])
    y = DEFAULT_CALIBRATION.set_level(x, 65.0, axis=-1)
    np.testing.assert_allclose(DEFAULT_CALIBRATION.level_db_spl(y, axis=-1), 65.0, atol=1e-4)


def test_set_level_rejects_silence_and_nonfinite() -> None:
    with pytest.raises(ValueError, match="silent"):
        set_level(np.zeros(64, np.float32), 60.0)
    with pytest.raises(ValueError, match="non-finite"):
        set_level(np.array([0.1, np.nan], np.float32), 60.0)
    with pytest.raises(ValueError):
        set_level(np.ones(4, np.float32), float("nan"))


def test_tensor_helper_duck_types_on_torch() -> None:
    import torch

    p = torch.tensor([0.5, 0.05, 0.0], requires_grad=True)
    db = DEFAULT_CALIBRATION.power_to_db_spl_tensor(p, floor_power=1e-10)
    assert db[0].item() == pytest.approx(100.0, abs=1e-4)
    assert db[1].item() == pytest.approx(90.0, abs=1e-4)
    assert db[2].item() == pytest.approx(DEFAULT_CALIBRATION.power_to_db_spl(1e-10), abs=1e-3)
    db[:2].sum().backward()
    assert torch.isfinite(p.grad).all()


def test_levels_module_does_not_import_torch() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys, toolchain.audio.levels; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root, env=env)
    assert out.stdout.strip() == "False"
