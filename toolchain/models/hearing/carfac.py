"""CARFAC v2 cochlea in torch: cascade of asymmetric resonators, OHC AGC loops, two-cap IHC, NAP.

Seed 004 (DAL) trains SEANet through CARFAC (Lyon, "Human and Machine Hearing", 2017; the CARFAC
v2 description, 2024). This is our own torch formulation of the model that google/carfac's numpy
reference implements (its default parameters, ``ihc_style='two_cap'``, one ear, no synapse
model), written to be batched and differentiable:

* the per-sample recurrence runs in one TorchScript loop (no Python per sample);
* the channel ripple of the cascade, ``y[c] = g[c] * (y[c-1] + h[c] z2[c])``, is a first-order
  linear recurrence across channels and is solved in closed form with a cumulative product and
  a cumulative sum (g is in (0.5, 0.95), so the products stay well scaled);
* the AGC's spatial FIR smoothing of each stage is folded into one (channels x channels) matrix.

Hearing loss: ``ohc_health`` (0..1 per channel) scales the OHC undamping as in the reference;
``ihc_gain`` (0..1 per channel) attenuates the BM drive of the inner hair cell, for losses the
OHCs alone cannot produce (see :mod:`toolchain.models.hearing.carfac_fit`).

Coefficients are designed in float64 and cast to the input's dtype and device at each call, so
a float64 input runs the whole model in float64 (the reference-vector test does that).
Speed is measured by ``benchmarks/bench_carfac.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class CarfacParams:
    """CARFAC design parameters; the defaults are google/carfac's (CarParams, AgcParams, two-cap IHC)."""

    # CAR (cascade of asymmetric resonators)
    velocity_scale: float = 0.1
    v_offset: float = 0.04
    min_zeta: float = 0.10
    max_zeta: float = 0.35
    first_pole_theta: float = 0.85 * math.pi
    zero_ratio: float = math.sqrt(2.0)
    high_f_damping_compression: float = 0.5
    erb_per_step: float = 0.5
    min_pole_hz: float = 30.0
    erb_break_freq: float = 165.3
    erb_q: float = 1000.0 / (24.7 * 4.37)
    ac_corner_hz: float = 20.0
    # AGC (four decimated, spatially smoothed loops feeding the OHC damping)
    agc_time_constants: tuple[float, ...] = (0.002, 0.008, 0.032, 0.128)
    agc_stage_gain: float = 2.0
    agc_decimation: tuple[int, ...] = (8, 2, 2, 2)
    agc1_scales: tuple[float, ...] = tuple(math.sqrt(2.0) ** k for k in range(4))
    agc2_scales: tuple[float, ...] = tuple(1.65 * math.sqrt(2.0) ** k for k in range(4))
    # IHC, two-capacitor (v2) model
    tau_lpf: float = 0.000080
    tau1_out: float = 0.000500
    tau1_in: float = 0.000200
    tau2_out: float = 0.001
    tau2_in: float = 0.010
    extra: dict = field(default_factory=dict, compare=False, repr=False)


def hz_to_erb(cf_hz: np.ndarray | float, break_freq: float, erb_q: float) -> np.ndarray | float:
    """Glasberg & Moore ERB with CARFAC's break frequency: (break + cf) / Q."""
    return (break_freq + cf_hz) / erb_q


def pole_frequencies(fs: float, p: CarfacParams) -> np.ndarray:
    """Pole frequencies of the channels, base (high CF) to apex, half an ERB apart.

    Rounded to float32 as the reference stores them, so channel for channel they agree.
    """
    freqs = []
    pole_hz = p.first_pole_theta * fs / (2 * math.pi)
    while pole_hz > p.min_pole_hz:
        freqs.append(pole_hz)
        pole_hz = pole_hz - p.erb_per_step * hz_to_erb(pole_hz, p.erb_break_freq, p.erb_q)
    return np.asarray(freqs, dtype=np.float32).astype(np.float64)


def ihc_detect(x: Tensor | np.ndarray | float) -> Tensor | np.ndarray | float:
    """IHC sigmoidal detection (Lyon 2017, section 18.3): conductance in [0, ~1.34]."""
    if isinstance(x, Tensor):
        z = torch.clamp(x + 0.175, min=0.0)
    else:
        z = np.maximum(0.0, np.asarray(x, dtype=np.float64) + 0.175)
    z2 = z * z
    return z2 * z / (z2 * z + z2 + 0.1)


def _fir_design(n_taps: int, variance: float, delay: float, n_iter: int) -> tuple[list[float], bool]:
    """3- or 5-tap smoothing FIR matching a mean (delay) and variance (moment matching)."""
    delay, variance = delay / n_iter, variance / n_iter
    m2 = variance + delay * delay
    if n_taps == 3:
        a, b = (m2 - delay) / 2, (m2 + delay) / 2
        return [a, 1 - a - b, b], 1 - a - b >= 0.25
    a = (m2 * 2 / 5 - delay * 2 / 3) / 2
    b = (m2 * 2 / 5 + delay * 2 / 3) / 2
    return [a / 2, 1 - a - b, b / 2], 1 - a - b >= 0.15


def _smoothing_matrix(n_ch: int, n_taps: int, fir: list[float], n_iter: int) -> np.ndarray:
    """The spatial FIR (edges replicated the reference's way) as a matrix S: new = S @ old."""
    idx = np.arange(n_ch)
    right1 = np.concatenate([[0], idx[:-1]])
    left1 = np.concatenate([idx[1:], [n_ch - 1]])
    right2 = np.concatenate([[0, 1], idx[:-2]])
    left2 = np.concatenate([idx[2:], [n_ch - 1, n_ch - 2]])
    one = np.zeros((n_ch, n_ch))
    for shift, coeff in ((right1, fir[0]), (idx, fir[1]), (left1, fir[2])):
        one[idx, shift] += coeff
    if n_taps == 5:
        one[idx, right2] += fir[0]
        one[idx, left2] += fir[2]
    return np.linalg.matrix_power(one, n_iter)


@dataclass(frozen=True)
class CarfacDesign:
    """Coefficients of one CARFAC design (float64 numpy), computed once from the parameters."""

    fs: float
    pole_freqs: np.ndarray
    vectors: dict[str, np.ndarray]   # per-channel coefficient vectors
    scalars: dict[str, float]
    agc_smooth: np.ndarray           # (stages, n_ch, n_ch)
    agc_epsilon: tuple[float, ...]

    @property
    def n_ch(self) -> int:
        """Number of channels (cochlear places)."""
        return int(self.pole_freqs.shape[0])


def design(fs: float, params: CarfacParams | None = None) -> CarfacDesign:
    """Design CAR, AGC and IHC coefficients for sample rate ``fs`` (the reference's maths)."""
    p = params or CarfacParams()
    pf = pole_frequencies(fs, p)
    n_ch = pf.shape[0]
    if n_ch < 3:
        raise ValueError(f"sample rate {fs} Hz gives {n_ch} CARFAC channels; need at least 3")
    theta = pf * (2 * math.pi / fs)
    c0, a0 = np.sin(theta), np.cos(theta)
    x = theta / math.pi
    zr = math.pi * (x - p.high_f_damping_compression * x**3)
    r1 = 1 - zr * p.max_zeta
    min_zetas = p.min_zeta + 0.25 * (hz_to_erb(pf, p.erb_break_freq, p.erb_q) / pf - p.min_zeta)
    zr_coeffs = zr * (p.max_zeta - min_zetas)
    h = c0 * (p.zero_ratio**2 - 1)

    def stage_g_exact(undamping: float) -> np.ndarray:
        r = r1 + zr_coeffs * undamping
        return (1 - 2 * r * a0 + r**2) / (1 - 2 * r * a0 + h * r * c0 + r**2)

    g0, g1, ghalf = stage_g_exact(0.0), stage_g_exact(1.0), stage_g_exact(0.5)
    ga = 2 * (g0 + g1 - 2 * ghalf)
    gb = 4 * ghalf - 3 * g0 - g1

    # AGC: per stage epsilon and spatial smoother (google/carfac design_agc).
    smooth, eps = [], []
    decim = 1
    for stage, tau in enumerate(p.agc_time_constants):
        decim *= p.agc_decimation[stage]
        eps.append(1 - math.exp(-decim / (tau * fs)))
        ntimes = tau * (fs / decim)
        delay = (p.agc2_scales[stage] - p.agc1_scales[stage]) / ntimes
        spread_sq = (p.agc1_scales[stage] ** 2 + p.agc2_scales[stage] ** 2) / ntimes
        n_taps, n_iter = 3, 1
        fir, ok = _fir_design(n_taps, spread_sq, delay, n_iter)
        if not ok:
            n_taps = 5
            fir, ok = _fir_design(n_taps, spread_sq, delay, n_iter)
        while not ok:
            n_iter += 1
            if n_iter > 16:
                raise ValueError("CARFAC AGC design needs more than 16 smoothing iterations")
            fir, ok = _fir_design(n_taps, spread_sq, delay, n_iter)
        smooth.append(_smoothing_matrix(n_ch, n_taps, fir, n_iter))
    total_dc_gain = sum(p.agc_stage_gain**k for k in range(len(p.agc_time_constants)))

    # Two-capacitor IHC (google/carfac design_ihc, IhcTwoCapParams).
    g1_max = float(ihc_detect(10.0))
    r1min = 1 / g1_max
    c1 = p.tau1_out * g1_max
    r1_ihc = p.tau1_in / c1
    rest_current1 = 1 / (r1_ihc + 1 / float(ihc_detect(0.0)))
    cap1_rest = 1 - rest_current1 * r1_ihc
    g2max = r1_ihc / (r1min + r1_ihc)
    r2min = 1 / g2max
    c2 = p.tau2_out * g2max
    r2 = p.tau2_in / c2
    sat_current2 = 1 / (2 * r2min + r2)
    rest_current2 = 1 / (r2 + 1 / (r1_ihc * rest_current1))
    cap2_rest = 1 - rest_current2 * r2

    scalars = {
        "velocity_scale": p.velocity_scale, "v_offset": p.v_offset,
        "ac_coeff": 2 * math.pi * p.ac_corner_hz / fs,
        "lpf_coeff": 1 - math.exp(-1 / (p.tau_lpf * fs)),
        "out1_rate": r1min / (p.tau1_out * fs), "in1_rate": 1 / (p.tau1_in * fs),
        "out2_rate": r2min / (p.tau2_out * fs), "in2_rate": 1 / (p.tau2_in * fs),
        "output_gain": 1 / (sat_current2 - rest_current2),
        "rest_output": rest_current2 / (sat_current2 - rest_current2),
        "rest_cap1": cap1_rest, "rest_cap2": cap2_rest,
        "detect_scale": 1 / total_dc_gain, "agc_stage_gain": p.agc_stage_gain,
    }
    vectors = {"r1": r1, "zr": zr_coeffs, "a0": a0, "c0": c0, "h": h,
               "ga": ga, "gb": gb, "gc": g0}
    return CarfacDesign(fs=float(fs), pole_freqs=pf, vectors=vectors, scalars=scalars,
                        agc_smooth=np.stack(smooth), agc_epsilon=tuple(eps))


_VECTOR_ORDER = ("r1", "zr", "a0", "c0", "h", "ga", "gb", "gc")


@torch.jit.script
def _carfac_loop(x: Tensor, vec: Tensor, ohc_health: Tensor, ihc_gain: Tensor,
                 smooth: Tensor, eps: list[float], decim: list[int], s: list[float]) -> Tensor:
    """Run CARFAC over ``x`` (batch, n) and return the NAP (batch, n, n_ch).

    ``vec`` stacks the per-channel vectors in _VECTOR_ORDER; ``s`` holds the scalars
    [velocity_scale, v_offset, ac_coeff, lpf_coeff, out1_rate, in1_rate, out2_rate, in2_rate,
    output_gain, rest_output, rest_cap1, rest_cap2, detect_scale, agc_stage_gain].
    """
    r1, zr, a0, c0, h, ga, gb, gc = vec[0], vec[1], vec[2], vec[3], vec[4], vec[5], vec[6], vec[7]
    vs, voff, ac_coeff, lpf_coeff = s[0], s[1], s[2], s[3]
    out1, in1, out2, in2 = s[4], s[5], s[6], s[7]
    out_gain, rest_out, rest_cap1, rest_cap2 = s[8], s[9], s[10], s[11]
    detect_scale, stage_gain = s[12], s[13]
    batch, n = x.shape[0], x.shape[1]
    n_ch = r1.shape[0]
    zeros = torch.zeros(batch, n_ch, dtype=x.dtype, device=x.device)
    z1, z2, za, ac = zeros, zeros, zeros, zeros
    undamp0 = ohc_health.expand(batch, n_ch)
    zb = zr * undamp0
    g = ga * undamp0 * undamp0 + gb * undamp0 + gc
    dzb, dg = zeros, zeros
    cap1 = zeros + rest_cap1
    cap2 = zeros + rest_cap2
    lpf1 = zeros + rest_out
    n_stages = len(eps)
    agc_mem = [zeros for _ in range(n_stages)]
    agc_acc = [zeros for _ in range(n_stages)]
    period = [1 for _ in range(n_stages)]
    acc_period = 1
    for k in range(n_stages):
        acc_period = acc_period * decim[k]
        period[k] = acc_period
    ones_col = torch.ones(batch, 1, dtype=x.dtype, device=x.device)
    out = []
    for t in range(n):
        x_t = x[:, t:t + 1]
        # --- CAR step (cascade of asymmetric resonators with OHC undamping)
        g = g + dg
        zb = zb + dzb
        v = z2 - za
        u = v * vs + voff
        nlf = 1.0 / (1.0 + u * u)
        r = r1 + zb * nlf
        za = z2
        z1_new = r * (a0 * z1 - c0 * z2)
        z2 = r * (c0 * z1 + a0 * z2)
        part = h * z2
        # ripple y[c] = g[c] * (y[c-1] + part[c]), y[-1] = x: closed form
        prod = torch.cumprod(g, dim=1)
        prod_prev = torch.cat([ones_col, prod[:, :-1]], dim=1)
        y = prod * (x_t + torch.cumsum(part / prod_prev, dim=1))
        z1 = z1_new + torch.cat([x_t, y[:, :-1]], dim=1)
        bm = y - ac
        ac = ac + ac_coeff * bm
        # --- IHC, two capacitors
        zz = torch.clamp(bm * ihc_gain + 0.175, min=0.0)
        zz2 = zz * zz
        cond = zz2 * zz / (zz2 * zz + zz2 + 0.1)
        cap1 = cap1 - cond * cap1 * out1 + (1.0 - cap1) * in1
        ihc = (1.0 - cap1) * cap2
        cap2 = cap2 - ihc * out2 + (1.0 - cap2) * in2
        lpf1 = lpf1 + lpf_coeff * (ihc * out_gain - lpf1)
        nap = lpf1 - rest_out
        out.append(nap)
        # --- AGC: accumulate, update the decimated stages (slowest first), close the loop
        agc_acc[0] = agc_acc[0] + detect_scale * nap
        if (t + 1) % period[0] == 0:
            top = 0
            for k in range(1, n_stages):
                if (t + 1) % period[k] == 0:
                    top = k
            ins = [zeros for _ in range(n_stages)]
            for k in range(top + 1):
                ins[k] = agc_acc[k] / float(decim[k])
                agc_acc[k] = zeros
                if k + 1 < n_stages:
                    agc_acc[k + 1] = agc_acc[k + 1] + ins[k]
            for k in range(top, -1, -1):
                drive = ins[k]
                if k + 1 < n_stages:
                    drive = drive + stage_gain * agc_mem[k + 1]
                state = agc_mem[k] + eps[k] * (drive - agc_mem[k])
                agc_mem[k] = state @ smooth[k].t()
            undamping = (1.0 - agc_mem[0]) * ohc_health
            new_g = ga * undamping * undamping + gb * undamping + gc
            dzb = (zr * undamping - zb) / float(decim[0])
            dg = (new_g - g) / float(decim[0])
    return torch.stack(out, dim=1)


class Carfac(nn.Module):
    """CARFAC v2 cochlea: ``forward(x)`` maps audio (batch, n) or (n,) to the NAP (batch, n_ch, n).

    ``ohc_health`` and ``ihc_gain`` (per channel, 1 = healthy) make it a hearing-impaired ear.
    Channels run from base (highest CF) to apex, as in the reference. The model is causal:
    NAP sample t depends on input samples up to t only.
    """

    def __init__(self, fs: float = 22050.0, params: CarfacParams | None = None,
                 ohc_health: np.ndarray | None = None, ihc_gain: np.ndarray | None = None) -> None:
        super().__init__()
        self.params = params or CarfacParams()
        self.design = design(fs, self.params)
        n_ch = self.design.n_ch
        vec = np.stack([self.design.vectors[k] for k in _VECTOR_ORDER])
        self.register_buffer("_vec", torch.from_numpy(vec), persistent=False)
        self.register_buffer("_smooth", torch.from_numpy(self.design.agc_smooth), persistent=False)
        health = np.ones(n_ch) if ohc_health is None else np.asarray(ohc_health, dtype=np.float64)
        gain = np.ones(n_ch) if ihc_gain is None else np.asarray(ihc_gain, dtype=np.float64)
        for name, arr in (("ohc_health", health), ("ihc_gain", gain)):
            if arr.shape != (n_ch,):
                raise ValueError(f"{name} must have {n_ch} values (one per channel), got {arr.shape}")
            if not np.all((arr >= 0) & (arr <= 1)):
                raise ValueError(f"{name} must lie in [0, 1]")
        self.register_buffer("ohc_health", torch.from_numpy(health.copy()), persistent=False)
        self.register_buffer("ihc_gain", torch.from_numpy(gain.copy()), persistent=False)
        sc = self.design.scalars
        self._scalars = [float(sc[k]) for k in (
            "velocity_scale", "v_offset", "ac_coeff", "lpf_coeff", "out1_rate", "in1_rate",
            "out2_rate", "in2_rate", "output_gain", "rest_output", "rest_cap1", "rest_cap2",
            "detect_scale", "agc_stage_gain")]
        self.requires_grad_(False)

    @property
    def fs(self) -> float:
        """Sample rate the model was designed for (Hz)."""
        return self.design.fs

    @property
    def n_ch(self) -> int:
        """Number of channels."""
        return self.design.n_ch

    @property
    def pole_freqs(self) -> np.ndarray:
        """Channel pole frequencies in Hz, base to apex."""
        return self.design.pole_freqs

    def forward(self, x: Tensor, ohc_health: Tensor | None = None, ihc_gain: Tensor | None = None) -> Tensor:
        """NAP of ``x`` (batch, n) or (n,) as (batch, n_ch, n) or (n_ch, n); dtype/device of x.

        ``ohc_health`` / ``ihc_gain`` (batch, n_ch) replace the model's own per example, so one
        pass runs ears of different listeners side by side (the loop's cost is per sample, not per
        row, so a normal and an impaired ear in one batch cost little more than one).
        """
        if x.dim() not in (1, 2):
            raise ValueError(f"CARFAC input must be (n,) or (batch, n), got shape {tuple(x.shape)}")
        squeeze = x.dim() == 1
        xb = x.unsqueeze(0) if squeeze else x
        if not xb.is_floating_point():
            raise ValueError("CARFAC input must be a floating-point tensor")
        like = dict(dtype=xb.dtype, device=xb.device)
        per_row = []
        for name, given, own in (("ohc_health", ohc_health, self.ohc_health), ("ihc_gain", ihc_gain, self.ihc_gain)):
            if given is None:
                per_row.append(own.to(**like))
                continue
            if tuple(given.shape) != (xb.shape[0], self.n_ch):
                raise ValueError(f"{name} must be (batch, n_ch) = {(xb.shape[0], self.n_ch)}, got {tuple(given.shape)}")
            per_row.append(given.to(**like))
        # One intra-op thread for the loop: its thousands of tiny ops per clip gain nothing from a
        # second thread, and on shared cores the hand-offs made it many times slower (bench_carfac.py).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            nap = _carfac_loop(xb, self._vec.to(**like), per_row[0],
                               per_row[1], self._smooth.to(**like),
                               list(self.design.agc_epsilon), list(self.params.agc_decimation),
                               self._scalars)
        finally:
            torch.set_num_threads(threads)
        nap = nap.transpose(1, 2)
        return nap[0] if squeeze else nap


@dataclass(frozen=True)
class SaiParams:
    """Stabilised auditory image settings (google/carfac's SAIParams), in samples."""

    sai_width: int
    future_lags: int
    num_triggers_per_frame: int
    trigger_window_width: int
    input_segment_width: int

    @classmethod
    def for_rate(cls, fs: float) -> SaiParams:
        """Defaults for ``fs``: 20 ms of lag (half of it future), 2 triggers of 25 ms, a 10 ms hop."""
        width = int(round(0.020 * fs))
        return cls(sai_width=width, future_lags=width // 2, num_triggers_per_frame=2,
                   trigger_window_width=int(round(0.025 * fs)), input_segment_width=int(round(0.010 * fs)))

    @property
    def buffer_width(self) -> int:
        """Samples of NAP each frame looks at."""
        return self.sai_width + int((1 + (self.num_triggers_per_frame - 1) / 2) * self.trigger_window_width)


def sai(nap: Tensor, p: SaiParams) -> Tensor:
    """SAI frames (batch, frames, n_ch, sai_width) of a NAP (batch, n_ch, n), one per hop.

    The reference's algorithm (trigger on the windowed peak, blend the following lags into a
    running image with weight (0.025 + peak) / (0.5 + peak)), vectorised over batch and channels.
    It is causal (frame f sees NAP up to sample (f+1) * hop) and differentiable in the NAP values;
    the trigger positions themselves are a choice (argmax) and carry no gradient.
    """
    if p.trigger_window_width <= p.sai_width or p.input_segment_width >= p.buffer_width:
        raise ValueError(f"inconsistent SAI parameters: {p}")
    batch, n_ch, n = nap.shape
    hop, W, width = p.input_segment_width, p.trigger_window_width, p.sai_width
    buf = p.buffer_width
    n_frames = n // hop
    padded = torch.cat([nap.new_zeros(batch, n_ch, buf), nap], dim=2)
    window = torch.sin(torch.linspace(math.pi / W, math.pi, W, dtype=nap.dtype, device=nap.device))
    w_hop = W // 2
    window_start = (buf - W) - (p.num_triggers_per_frame - 1) * w_hop
    range_start = window_start - p.future_lags
    offset_start = 1 + window_start - width
    if offset_start <= 0:
        raise ValueError(f"SAI parameters leave no room for the lags: {p}")
    lags = torch.arange(width, device=nap.device)
    image = nap.new_zeros(batch, n_ch, width)
    frames = []
    for f in range(n_frames):
        end = buf + (f + 1) * hop
        seg = padded[:, :, end - buf:end]
        for w in range(p.num_triggers_per_frame):
            start = range_start + w * w_hop
            peak, idx = (seg[:, :, start:start + W] * window).max(dim=2)
            fallback = int(torch.argmax(window))
            quiet = peak <= 0
            peak = torch.where(quiet, window[fallback].expand_as(peak), peak)
            idx = torch.where(quiet, torch.full_like(idx, fallback), idx)
            pos = (idx + w * w_hop + offset_start).unsqueeze(-1) + lags
            alpha = ((0.025 + peak) / (0.5 + peak)).unsqueeze(-1)
            image = image * (1 - alpha) + alpha * torch.gather(seg, 2, pos)
        frames.append(image)
    if not frames:
        return nap.new_zeros(batch, 0, n_ch, width)
    return torch.stack(frames, dim=1)
