"""Self-noise and dynamic range of a device graph, in the terms a hearing-aid test box reports.

Measured at export on the graph the device runs, against the fp32 graph, written to the manifest
(round 2 · 1 of 6):

* **per-level SNR**: device vs fp32 on held-out speech at each of 45..85 dB SPL *separately*
  (pooling hides the soft levels, where quantisation noise matters). The speech reaches both as
  16-bit PCM (what a wav or a converter delivers), so the figure is the device graph's own error;
  the 16-bit input's own ceiling is reported beside it.
* **equivalent input noise** (ANSI S3.22's way): the output noise for a silent input, in dB SPL,
  minus the fitted gain at the high-frequency average (1000, 1600, 2500 Hz, pure tones at 60 dB
  SPL through the fp32 graph). A device whose output for silence is exactly zero is bounded by
  one output LSB of noise (``scale / sqrt(12)`` RMS), and the figure says "at most" that.
* **silence**: the output for digital silence in dB SPL RMS, DC included, its DC, and the largest
  excess of a block-rate harmonic (k · sample_rate / block) over the spectrum around it.
* **clip level**: the input level at which the input tensor clips (the largest sine it holds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from runtime.harness.measure import stream
from toolchain.audio.levels import DEFAULT_CALIBRATION, LevelCalibration

#: Speech levels of the per-level SNR table (dB SPL).
SNR_LEVELS_DB_SPL = (45.0, 55.0, 65.0, 75.0, 85.0)
#: ANSI S3.22 high-frequency average frequencies.
HFA_HZ = (1000.0, 1600.0, 2500.0)
#: Level of the HFA gain tones (dB SPL): ANSI S3.22's reference test gain input.
HFA_TONE_DB_SPL = 60.0


def pcm16(x: np.ndarray) -> np.ndarray:
    """``x`` as a 16-bit converter or wav delivers it: rounded to 1/32768, clipped to [-1, 1)."""
    return (np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10·log10(‖ref‖² / ‖ref − test‖²) over all samples (the export's one SNR)."""
    err = float(np.sum((np.asarray(reference, np.float64) - test) ** 2))
    sig = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return float("inf") if err == 0 else 10.0 * math.log10(sig / err)


def per_level_snr(device: Any, fp32: Any, clips_by_level: dict[float, Sequence[np.ndarray]],
                  output_limit: float | None = None) -> dict[str, dict[str, float]]:
    """{level: {device_vs_fp32_db, pcm16_input_ceiling_db, input_peak, fp32_above_limit}} per speech level.

    ``output_limit``: both outputs are compared as they reach the ear, clipped at the bundle's
    limit (the runtime's limiter never lets more out); what the fp32 graph would have played above
    it is reported as ``fp32_above_limit`` (fraction of samples), so a loud level that only
    measures the limit is visible as such.
    """
    out = {}
    lim = float("inf") if output_limit is None else float(output_limit)
    for level, clips in clips_by_level.items():
        x = [pcm16(c) for c in clips]
        ref = np.concatenate([stream(fp32, c) for c in x])
        dev = np.concatenate([stream(device, c) for c in x])
        unq = np.concatenate([stream(fp32, np.asarray(c, np.float32)) for c in clips])
        out[f"{level:g}"] = {"device_vs_fp32_db": round(snr_db(np.clip(ref, -lim, lim), np.clip(dev, -lim, lim)), 2),
                             "pcm16_input_ceiling_db": round(snr_db(np.clip(unq, -lim, lim), np.clip(ref, -lim, lim)), 2),
                             "input_peak": round(float(max(np.abs(c).max() for c in clips)), 4),
                             "fp32_above_limit": round(float(np.mean(np.abs(ref) > lim)), 5)}
    return out


def hfa_gain_db(fp32: Any, sample_rate: int, calibration: LevelCalibration = DEFAULT_CALIBRATION) -> float:
    """The fitted gain at the HFA frequencies (dB), pure tones at 60 dB SPL, steady-state half second."""
    n = sample_rate
    t = np.arange(n) / sample_rate
    gains = []
    for f in HFA_HZ:
        x = calibration.set_level(np.sin(2 * np.pi * f * t), HFA_TONE_DB_SPL).astype(np.float32)
        y = stream(fp32, x)[n // 2:]
        gains.append(float(calibration.level_db_spl(y)) - HFA_TONE_DB_SPL)
    return float(np.mean(gains))


@dataclass(frozen=True)
class SilenceFigures:
    output_db_spl: float          # RMS incl. DC; the one-LSB bound when the output is exactly zero
    output_exactly_zero: bool
    dc: float                     # mean output, full-scale units
    block_tone_excess_db: float   # worst block-rate harmonic above the median spectrum around it
    equivalent_input_noise_db_spl: float
    hfa_gain_db: float


def silence_figures(device: Any, fp32: Any, sample_rate: int, block: int, *, seconds: float = 3.0,
                    calibration: LevelCalibration = DEFAULT_CALIBRATION) -> SilenceFigures:
    """What the device plays for digital silence, and its equivalent input noise."""
    z = np.zeros(int(seconds * sample_rate) // block * block, np.float32)
    y = stream(device, z).astype(np.float64)
    y = y[len(y) // 3:]  # past any start-up transient of the state
    zero = not np.any(y)
    lsb = float(device.output_quant[0]) if getattr(device, "output_quant", None) else 1.0 / 32768.0
    rms = math.sqrt(float(np.mean(y ** 2))) if not zero else lsb / math.sqrt(12.0)
    out_db = float(calibration.rms_to_db_spl(rms))
    excess = 0.0
    if not zero:
        spec = np.abs(np.fft.rfft((y - y.mean()) * np.hanning(len(y)))) ** 2 + 1e-30
        hz = np.fft.rfftfreq(len(y), 1.0 / sample_rate)
        for k in range(1, block // 2 + 1):
            f0 = k * sample_rate / block
            at = int(np.argmin(np.abs(hz - f0)))
            near = spec[max(0, at - 40): at + 41]
            excess = max(excess, 10 * math.log10(float(spec[max(0, at - 1): at + 2].max()) / float(np.median(near))))
    gain = hfa_gain_db(fp32, sample_rate, calibration)
    return SilenceFigures(output_db_spl=round(out_db, 2), output_exactly_zero=zero, dc=round(float(y.mean()), 7),
                          block_tone_excess_db=round(excess, 2),
                          equivalent_input_noise_db_spl=round(out_db - gain, 2), hfa_gain_db=round(gain, 2))


def clip_level_db_spl(device: Any, calibration: LevelCalibration = DEFAULT_CALIBRATION) -> float:
    """The level (dB SPL) of the largest sine the device's input tensor holds without clipping."""
    scale, zp = device.input_quant
    info = np.iinfo(np.dtype(getattr(device, "io_dtype", np.int8)))
    peak = scale * min(info.max - zp, zp - info.min)
    return round(float(calibration.rms_to_db_spl(peak / math.sqrt(2.0))), 2)


def metrics(per_level: dict[str, dict[str, float]], silence: SilenceFigures, clip_db: float, prefix: str) -> dict[str, Any]:
    """Flat manifest metrics (``<prefix>_snr_<level>db_spl`` ...)."""
    m: dict[str, Any] = {}
    for level, d in per_level.items():
        m[f"{prefix}_vs_fp32_snr_db_at_{level}db_spl"] = d["device_vs_fp32_db"]
        m[f"{prefix}_fp32_above_limit_at_{level}db_spl"] = d["fp32_above_limit"]
    m[f"{prefix}_silence_output_db_spl"] = silence.output_db_spl
    m[f"{prefix}_silence_output_exactly_zero"] = "yes" if silence.output_exactly_zero else "no"
    m[f"{prefix}_silence_dc"] = silence.dc
    m[f"{prefix}_silence_block_tone_excess_db"] = silence.block_tone_excess_db
    m[f"{prefix}_equivalent_input_noise_db_spl"] = silence.equivalent_input_noise_db_spl
    m["hfa_gain_db"] = silence.hfa_gain_db
    m[f"{prefix}_input_clip_level_db_spl"] = clip_db
    return m


__all__ = ["HFA_HZ", "SNR_LEVELS_DB_SPL", "SilenceFigures", "clip_level_db_spl", "hfa_gain_db", "metrics",
           "pcm16", "per_level_snr", "silence_figures", "snr_db"]
