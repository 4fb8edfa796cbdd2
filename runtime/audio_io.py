"""Live audio: a sounddevice (PortAudio) duplex stream through the engine, with xrun accounting.

:class:`DuplexRunner` opens one full-duplex stream; its callback hands each input buffer to
:meth:`runtime.engine.Engine.stream` and writes the result, so the callback does the work of
one host block and nothing else (no allocation beyond numpy temporaries, no I/O, no locks).
Over/underflow flags that PortAudio reports are counted as xruns (on the engine as well), a
callback that takes longer than its own period is counted as late, and the stream's latency
(PortAudio's input + output latency, plus the engine's stream delay) is reported.

``sounddevice`` is imported only when a stream is opened, so importing this module never
needs PortAudio.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["AudioIOError", "DuplexRunner", "StreamSummary", "check_devices", "import_sounddevice", "list_devices",
           "print_status", "status_line"]


class AudioIOError(RuntimeError):
    """The audio device/server could not be opened or failed (one-line message)."""


def import_sounddevice() -> Any:
    """``sounddevice``, imported with PortAudio's start-up chatter silenced.

    Initialising PortAudio probes every host API, and libjack / ALSA print to stderr when they
    find no server or card ("Cannot connect to server socket", "unable to open slave"); that is
    noise beside a one-line error, so stderr is pointed at /dev/null for the import only.
    """
    if "sounddevice" in sys.modules:
        return sys.modules["sounddevice"]
    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        saved = None
    try:
        # lazy: sounddevice needs PortAudio, which a board may lack; only live audio needs it
        import sounddevice as sd
    except OSError as e:  # PortAudio library missing
        raise AudioIOError(f"PortAudio is not available ({e}); install libportaudio2") from None
    except ImportError as e:
        raise AudioIOError(f"live audio needs sounddevice ({e}); pip install sounddevice") from None
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    return sd


def list_devices() -> str:
    sd = import_sounddevice()
    return str(sd.query_devices())


def _device(sd: Any, spec: str | int | None, kind: str) -> int | str | None:
    """A device index or name for sounddevice; ``None`` is the default; ``"jack"``/an API name picks its default."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, int) or (isinstance(spec, str) and spec.lstrip("-").isdigit()):
        return int(spec)
    low = str(spec).lower()
    for api in sd.query_hostapis():
        if low in (api["name"].lower(), api["name"].split()[0].lower()):
            dev = api["default_input_device" if kind == "input" else "default_output_device"]
            if dev < 0:
                raise AudioIOError(f"host API {api['name']!r} has no default {kind} device")
            return int(dev)
    return str(spec)


def check_devices(sample_rate: int, *, device: str | int | None = None, input_device: str | int | None = None,
                  output_device: str | int | None = None, channels: int = 1) -> tuple[Any, Any]:
    """Resolve and check the devices for a duplex stream before anything else is set up."""
    sd = import_sounddevice()
    ind = _device(sd, input_device if input_device is not None else device, "input")
    outd = _device(sd, output_device if output_device is not None else device, "output")
    try:
        sd.check_input_settings(device=ind, channels=channels, dtype="float32", samplerate=sample_rate)
        sd.check_output_settings(device=outd, channels=channels, dtype="float32", samplerate=sample_rate)
    except Exception as e:  # PortAudioError, ValueError for an unknown name
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "device -1" in msg:
            msg = "there is no default audio device; pick one with --device (list them: python -m runtime devices)"
        raise AudioIOError(f"cannot use the audio device at {sample_rate} Hz: {msg}") from None
    return ind, outd


@dataclass
class StreamSummary:
    """What a live run did."""

    seconds: float = 0.0
    callbacks: int = 0
    frames: int = 0
    xruns: int = 0                   # callbacks whose status carried an over/underflow flag
    input_overflows: int = 0
    output_underflows: int = 0
    late_callbacks: int = 0          # callback took longer (wall clock) than its own period
    overruns: int = 0                # callback thread's CPU time exceeded its period (in a VM this
                                     # includes time the host took the vCPU away)
    runtime_xruns: int = 0           # xruns reported right after an overrun
    max_callback_us: float = 0.0     # wall clock
    max_callback_cpu_us: float = 0.0  # CPU time of the callback thread
    latency_ms: float = 0.0          # PortAudio input + output latency + engine stream delay
    io_latency_ms: tuple[float, float] = (0.0, 0.0)
    engine: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_line(engine_stats: dict[str, Any], summary: StreamSummary) -> str:
    """One line of live status: load, latency, xruns, limiter."""
    lim = engine_stats.get("limiter_samples", 0)
    out = max(1, engine_stats.get("samples_out", 0))
    return (f"load {100 * engine_stats.get('load', 0):4.1f}% (p99 {100 * engine_stats.get('load_p99', 0):4.1f}%)"
            f" | latency {summary.latency_ms:5.2f} ms | xruns {summary.xruns} | late {summary.late_callbacks}"
            f" | limiter {100 * lim / out:4.1f}% | non-finite in {engine_stats.get('nonfinite_inputs', 0)}")


class DuplexRunner:
    """A full-duplex sounddevice stream with the engine in its callback.

    ``host_block`` is the PortAudio buffer size (default: the model block, 0 lets PortAudio
    choose and vary it). Of ``channels`` input channels, ``channel`` makes the mono input:
    ``mix`` averages them (the default), ``left``/``right`` take the first/second; the output is
    written to every output channel. ``source`` (a callable ``frames -> float32 (frames,)``)
    replaces the input, for tests and probes; ``tap`` receives ``(input, output)`` per callback.
    """

    def __init__(self, engine: Any, *, device: str | int | None = None, input_device: str | int | None = None,
                 output_device: str | int | None = None, host_block: int | None = None, channels: int = 1,
                 channel: str = "mix", latency: str | float = "low", source: Callable[[int], np.ndarray] | None = None,
                 tap: Callable[[np.ndarray, np.ndarray], None] | None = None) -> None:
        self.engine = engine
        self.sd = import_sounddevice()
        self.host_block = engine.block if host_block is None else int(host_block)
        if not 0 <= self.host_block <= 4096:
            raise AudioIOError(f"host block must be 0 (any) or 1..4096 samples, got {self.host_block}")
        self.channels = int(channels)
        if channel not in ("left", "right", "mix"):
            raise AudioIOError(f"unknown channel {channel!r}; expected left, right or mix")
        if channel == "right" and self.channels < 2:
            raise AudioIOError("--channel right needs --channels 2 or more (one channel is the left one)")
        self._pick = None if channel == "mix" else (0 if channel == "left" else 1)  # None: the mean
        self.source = source
        self.tap = tap
        self.summary = StreamSummary()
        self._error: BaseException | None = None
        self._last_overrun = False
        ind = _device(self.sd, input_device if input_device is not None else device, "input")
        outd = _device(self.sd, output_device if output_device is not None else device, "output")
        try:
            self.stream = self.sd.Stream(samplerate=engine.sample_rate, blocksize=self.host_block,
                                         channels=(self.channels, self.channels), dtype="float32",
                                         latency=latency, device=(ind, outd), callback=self._callback)
        except Exception as e:  # PortAudioError, ValueError for a bad device...
            raise AudioIOError(f"cannot open a duplex stream at {engine.sample_rate} Hz: {str(e).splitlines()[0]}") from None
        lat = self.stream.latency
        self.summary.io_latency_ms = (1000.0 * float(lat[0]), 1000.0 * float(lat[1]))
        self.summary.latency_ms = sum(self.summary.io_latency_ms) + 1000.0 * engine.stream_delay / engine.sample_rate

    # The audio thread. Keep it lean: any exception stops the stream (recorded, re-raised by run()).
    def _callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        s = self.summary
        if status:
            flags = (status.input_overflow, status.output_underflow, status.input_underflow, status.output_overflow)
            if any(flags):
                s.xruns += 1
                s.input_overflows += int(status.input_overflow)
                s.output_underflows += int(status.output_underflow)
                if self._last_overrun:
                    s.runtime_xruns += 1
                self.engine.note_xrun()
        try:
            x = self.source(frames) if self.source is not None else (
                indata[:, 0] if self.channels == 1 else
                indata.mean(axis=1) if self._pick is None else indata[:, self._pick])
            y = self.engine.stream(x)
            outdata[:] = y[:, None]
            if self.tap is not None:
                self.tap(np.asarray(indata[:, 0]), y)
        except BaseException as e:  # never let an exception vanish inside PortAudio
            self._error = e
            outdata.fill(0)
            raise self.sd.CallbackAbort from None
        s.callbacks += 1
        s.frames += frames
        dt = time.perf_counter() - t0
        cpu = time.thread_time() - c0
        rate = self.engine.sample_rate
        if dt * rate > frames:
            s.late_callbacks += 1
        self._last_overrun = cpu * rate > frames
        if self._last_overrun:
            s.overruns += 1
        us = 1e6 * dt
        if us > s.max_callback_us:
            s.max_callback_us = us
        if 1e6 * cpu > s.max_callback_cpu_us:
            s.max_callback_cpu_us = 1e6 * cpu

    def start(self) -> None:
        self._t0 = time.monotonic()
        self.stream.start()

    def stop(self) -> StreamSummary:
        try:
            self.stream.stop()
        finally:
            self.stream.close()
        self.summary.seconds = time.monotonic() - getattr(self, "_t0", time.monotonic())
        self.summary.engine = self.engine.stats()
        if self._error is not None:
            self.summary.error = f"{type(self._error).__name__}: {self._error}"
        return self.summary

    def check(self) -> None:
        """Raise in the caller's thread if the callback failed or the stream died."""
        if self._error is not None:
            raise AudioIOError(f"the audio callback failed: {type(self._error).__name__}: {self._error}")
        if not self.stream.active:
            raise AudioIOError("the audio stream stopped (device lost or server gone)")

    def run(self, seconds: float | None = None, *, status_every: float = 0.25,
            on_status: Callable[[str], None] | None = None) -> StreamSummary:
        """Run until ``seconds`` pass (None: until Ctrl-C); returns the summary. Ctrl-C ends cleanly."""
        end = math.inf if seconds is None else time.monotonic() + float(seconds)
        self.start()
        try:
            next_status = time.monotonic() + status_every
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                time.sleep(min(0.05, max(0.0, end - now)))
                self.check()
                if on_status is not None and time.monotonic() >= next_status:
                    next_status += status_every
                    on_status(status_line(self.engine.stats(), self.summary))
        except KeyboardInterrupt:
            pass
        finally:
            summary = self.stop()
        return summary


def print_status(line: str, stream: Any = None) -> None:
    """Rewrite one terminal line (``\\r``), padded so a shorter line erases a longer one."""
    stream = stream or sys.stderr
    stream.write("\r" + line.ljust(100)[:160])
    stream.flush()
