"""A private JACK server on the dummy driver, for the loopback benchmark and the live-audio tests.

Host tooling: ``jackd``/``jack_lsp``/``jack_connect``/``jack_wait`` from apt ``jackd2``. Every
server this module starts is stopped at interpreter exit at the latest.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from runtime.harness.measure import BenchError


class JackServer:
    """A private JACK server on the dummy driver: ``jackd -n NAME -d dummy -r RATE -p PERIOD``.

    The name is unique, so parallel runs never meet; clients reach it through
    ``JACK_DEFAULT_SERVER`` (see :attr:`env`). Real-time scheduling is requested (``-R``) and
    jackd falls back to normal scheduling where it is not allowed. The server's messages are
    read with timestamps, so xruns can be counted for a time window. :meth:`stop` (also on
    ``with`` exit, and at interpreter exit) terminates the process group it started, SIGKILL
    after a timeout, and removes the server's files under /dev/shm.

    A server that died from a signal (killed to simulate a lost device, or crashed) never
    deregistered from JACK's server registry, which has 8 slots per machine and frees a dead
    server's slot only for a server of the same name: :meth:`stop` then starts and cleanly stops
    one such server (:meth:`release_registry_slot`), or after eight kills no JACK server could
    start on the machine any more. ``stop(reclaim=False)`` leaves that to the caller (a test that
    restarts the server under its name, which reclaims the slot too, and must not have a stand-in
    server appear while the "device" is meant to be gone).
    """

    def __init__(self, sample_rate: int, period: int, *, name: str | None = None, realtime: bool = True,
                 start_timeout: float = 15.0, jackd: str = "jackd") -> None:
        self.sample_rate = int(sample_rate)
        self.period = int(period)
        self.name = name or f"hx-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.realtime = realtime
        self.start_timeout = start_timeout
        self.jackd = jackd
        self.proc: subprocess.Popen | None = None
        self.lines: deque[tuple[float, str]] = deque(maxlen=20000)
        self._readers: list[threading.Thread] = []

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_AUDIO_RESERVATION="1",
                    JACK_NO_START_SERVER="1")

    @property
    def buffering_samples(self) -> int:
        """What the dummy driver buffers on a duplex round trip: one capture + one playback period."""
        return 2 * self.period

    def _tool(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
        exe = shutil.which(args[0])
        if exe is None:
            raise BenchError(f"{args[0]} not found (apt install jackd2)")
        try:
            return subprocess.run([exe, *args[1:]], env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{args[0]} did not answer within {timeout:g} s") from None

    def start(self) -> "JackServer":
        exe = shutil.which(self.jackd)
        if exe is None:
            raise BenchError(f"{self.jackd} not found: the loopback benchmark needs a JACK server (apt install jackd2)")
        # Real-time at priority 70 (clients get 65): above anything else this benchmark runs (its
        # stall monitor sits at 10), as an audio server on a device is.
        sched = ["-R", "-P", "70"] if self.realtime else ["--no-realtime"]
        cmd = [exe, "-n", self.name, *sched, "-d", "dummy", "-r", str(self.sample_rate), "-p", str(self.period)]
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        _LIVE_SERVERS.add(self)
        for pipe in (self.proc.stdout, self.proc.stderr):
            t = threading.Thread(target=self._read, args=(pipe,), daemon=True)
            t.start()
            self._readers.append(t)
        try:
            r = self._tool("jack_wait", "-w", "-t", str(max(1, int(self.start_timeout))), timeout=self.start_timeout + 5)
            if r.returncode != 0 or "available" not in r.stdout:
                raise BenchError(f"jackd did not come up: {self.log_tail()}")
            if self.proc.poll() is not None:
                raise BenchError(f"jackd exited with status {self.proc.returncode}: {self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append((time.time(), line.rstrip()))

    def log_tail(self, n: int = 3) -> str:
        useful = [ln for _, ln in self.lines if ln and not ln.startswith(("Copyright", "jackdmp", "under certain", "This is free", "no message"))]
        return " / ".join(useful[-n:]) or "no output"

    def xruns(self, t0: float, t1: float) -> dict[str, int]:
        """Server-side xrun messages logged between two ``time.time()`` stamps, by kind."""
        sel = [ln for t, ln in list(self.lines) if t0 <= t <= t1]
        driver = sum("JackTimedDriver::Process XRun" in ln for ln in sel)
        client = sum("JackEngine::XRun" in ln for ln in sel)
        return {"server_xruns": driver + client, "server_driver_xruns": driver, "server_client_xruns": client}

    def ports(self) -> list[str]:
        r = self._tool("jack_lsp")
        return [p.strip() for p in r.stdout.splitlines() if p.strip()]

    def connect(self, src: str, dst: str) -> None:
        r = self._tool("jack_connect", src, dst)
        if r.returncode != 0:
            raise BenchError(f"jack_connect {src} {dst} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")

    def disconnect(self, src: str, dst: str) -> None:
        self._tool("jack_disconnect", src, dst)

    def stop(self, timeout: float = 5.0, *, reclaim: bool = True) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        _LIVE_SERVERS.discard(self)
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: the group is jackd's alone
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout)
        for t in self._readers:
            t.join(1.0)
        self._died_by_signal = p.returncode is not None and p.returncode < 0
        if self._died_by_signal and reclaim and not getattr(self, "_reclaiming", False):
            self.release_registry_slot()
        # What a killed server leaves behind: its directory and semaphores, all named after it.
        shm = Path("/dev/shm")
        if (shm / f"jack-{os.getuid()}" / self.name).is_dir():
            shutil.rmtree(shm / f"jack-{os.getuid()}" / self.name, ignore_errors=True)
        for sem in [*shm.glob(f"jack_sem.{os.getuid()}_{self.name}_*"), *shm.glob(f"jack_{self.name}_*")]:
            try:
                sem.unlink()
            except OSError:
                pass

    def release_registry_slot(self) -> None:
        """Free the registry slot of this (dead) server's name: start and cleanly stop a namesake."""
        ghost = JackServer(self.sample_rate, self.period, name=self.name, realtime=False, jackd=self.jackd,
                           start_timeout=10.0)
        ghost._reclaiming = True
        try:
            ghost.start()
        except BenchError:
            return  # a namesake is running again (a restart beat us to it): it owns the slot now
        ghost.stop()

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_LIVE_SERVERS: set[JackServer] = set()


def _stop_all() -> None:  # interpreter exit: never leave a server behind
    for s in list(_LIVE_SERVERS):
        s.stop(timeout=2.0)


atexit.register(_stop_all)
