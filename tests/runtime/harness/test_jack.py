"""The private JACK dummy-driver server of the harness: it starts, stops, cleans up after itself and
never uses up JACK's server registry."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from runtime.harness.jack import JackServer
from runtime.harness.measure import BenchError
from tests.conftest import process_alive


def test_jack_server_reports_a_missing_jackd():
    with pytest.raises(BenchError, match="not found"):
        JackServer(16000, 16, jackd="jackd-that-does-not-exist").start()


def test_jack_server_stops_and_cleans_up(default_bundle):
    server = JackServer(16000, 16)
    server.start()
    pid = server.proc.pid
    ports = server.ports()
    assert "system:capture_1" in ports and "system:playback_1" in ports
    server.stop()
    assert not process_alive(pid)
    assert not (Path("/dev/shm") / f"jack-{os.getuid()}" / server.name).exists()
    server.stop()  # idempotent


@pytest.mark.timeout(240)
def test_killed_servers_do_not_use_up_jacks_server_registry():
    """JACK's registry has 8 server slots per machine and a SIGKILLed server never frees its own;
    JackServer.stop reclaims it, so killing more than 8 servers (as these tests do) leaves the
    machine able to start a server."""
    for _ in range(9):
        s = JackServer(16000, 16, realtime=False).start()
        os.killpg(s.proc.pid, signal.SIGKILL)
        s.stop()  # reclaims the slot
        assert not list(Path("/dev/shm").glob(f"jack_{s.name}_*"))
    with JackServer(16000, 16, realtime=False) as s:
        assert "system:capture_1" in s.ports()
