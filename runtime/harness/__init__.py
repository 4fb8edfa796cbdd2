"""The measuring harness: how a bundle is measured on a host or a board, not what the board runs.

``bench`` (per-block timing, the report of ``python -m runtime bench``), ``measure`` (streaming
from a fresh state, latency by impulse), ``loopback`` (round trip through a JACK server),
``jack`` (that private JACK server), ``soak`` (hours of audio, checked for drift and leaks) and
``emulation`` (the Raspberry Pi under qemu-aarch64). The harness imports the board core
(runtime/ outside this package); the core never imports the harness (tests/runtime/test_imports.py
checks), so a board's audio path does not depend on measuring code.
"""
