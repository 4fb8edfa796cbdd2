"""Cortex-M55: the bare-metal firmware (csrc/firmware/m55) with an exported model linked in, run in
qemu-system-arm's mps3-an547 (Corstone-300), streams speech bit-identically to the host build, and
fits the flash and RAM the export reported against boards/cortex-m55.toml."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from csrc_helpers import CSRC

from runtime.backends.base import quantize
from runtime.backends.ckernel import CKernelBackend
from runtime.boards import resolve_target
from tests.helpers import speech_clip
from toolchain.audio.audiogram import Audiogram
from toolchain.export import device_memory
from toolchain.export.pipeline import ExportError, ExportOptions, export_bundle

QEMU_SYSTEM = shutil.which("qemu-system-arm")
# A reduced export (short calibration and test sets): the firmware is under test, not the fitting.
KNOBS = dict(calib_clips=2, calib_blocks=200, test_clips=1, clip_seconds=1.0, drift_clips=1)
SECONDS = 2.5


def _tools() -> None:
    # A missing tool is a broken set-up, not a reason to skip: scripts/setup.sh installs both.
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed (run scripts/setup.sh, which installs gcc-arm-none-eabi and qemu-system-arm)")


@pytest.fixture(scope="module")
def m55_bundle(tmp_path_factory) -> Path:
    """The shipped compensator exported for the cortex-m55 board (int8 graph, C header form)."""
    out = tmp_path_factory.mktemp("m55") / "bundle"
    return export_bundle(ExportOptions(board=resolve_target("m55"), audiogram=Audiogram.preset("moderate-sloping"),
                                       out_dir=out, **KNOBS)).bundle.path


@pytest.fixture(scope="module")
def firmware(m55_bundle, tmp_path_factory) -> Path:
    """`make -C csrc cortex-m55` with the bundle's kernel/model_blob.h linked in."""
    _tools()
    out = tmp_path_factory.mktemp("m55-build")
    r = subprocess.run(["make", "-C", str(CSRC), "cortex-m55", f"HX_BLOB_H={m55_bundle / 'kernel' / 'model_blob.h'}",
                        f"M55_OUT={out}"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out / "hx_fw.elf"


def _sections(elf: Path) -> dict[str, int]:
    r = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", r.stdout, re.M)}


def _run_qemu(elf: Path, src: Path, dst: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([QEMU_SYSTEM, "-M", "mps3-an547", "-nographic", "-semihosting-config",
                           f"enable=on,target=native,arg=hx_fw,arg={src},arg={dst}", "-kernel", str(elf)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_cortex_m55_bundle_has_the_firmware_header_and_memory_figures(m55_bundle):
    from runtime.bundle import load_bundle

    m = load_bundle(m55_bundle).manifest
    header = (m55_bundle / "kernel" / "model_blob.h").read_text()
    assert "hx_model_blob[HX_MODEL_BLOB_LEN]" in header and f"HX_MODEL_BLOB_ARENA_BYTES {m.metrics['kernel_arena_bytes']}u" in header
    board = resolve_target("m55")
    assert m.metrics["device_flash_budget_bytes"] == board.budget.flash_bytes
    assert m.metrics["device_flash_bytes"] == m.metrics["kernel_blob_bytes"] + device_memory.FIRMWARE_FLASH_BYTES
    assert m.metrics["device_ram_bytes"] == (m.metrics["kernel_arena_bytes"] + device_memory.FIRMWARE_STACK_BYTES
                                             + device_memory.FIRMWARE_RAM_BYTES)
    assert m.metrics["device_ram_bytes"] <= board.budget.ram_bytes


def test_cortex_m55_firmware_streams_like_the_host_build(m55_bundle, firmware, tmp_path):
    """≥ 2 s of int8 speech (then driven into saturation) through the firmware under qemu-system-arm:
    the same bytes as the host's C kernel; sections and stack within the export's figures."""
    from runtime.bundle import load_bundle

    m = load_bundle(m55_bundle).manifest
    spec = m.graph("int8").inputs[0]
    speech = speech_clip("test", 1, seconds=2.0)
    audio = np.concatenate([speech, np.clip(speech[:8000] * 8.0, -1, 1)])[: int(SECONDS * 16000)]
    x_q = quantize(audio[: audio.size // m.block * m.block], spec.scale, spec.zero_point)
    src, dst = tmp_path / "in.raw", tmp_path / "out.raw"
    src.write_bytes(x_q.tobytes())

    t0 = time.perf_counter()
    r = _run_qemu(firmware, src, dst)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    # qemu writes the semihosting console (the firmware's "key value" lines) to its stderr.
    info = dict(line.split(" ", 1) for line in r.stderr.strip().splitlines() if " " in line)
    assert info.get("status") == "HX_OK" and info["arch"] == "ref"
    assert int(info["blocks"]) * m.block == x_q.size >= 2 * 16000

    y = np.frombuffer(dst.read_bytes(), np.int8)
    host = CKernelBackend((m55_bundle / "kernel" / "model.hxb").read_bytes(), arch="ref").process(x_q)
    n_diff = int(np.count_nonzero(y != host)) if y.size == host.size else -1
    assert n_diff == 0, f"{n_diff} of {host.size} samples differ from the host build"
    assert np.count_nonzero(y != y[0]) > 0, "the output is not constant"

    sec = _sections(firmware)
    flash = sum(sec.get(s, 0) for s in (".vectors", ".text", ".rodata", ".ARM.exidx", ".data"))
    ram_static = sec.get(".data", 0) + sec.get(".bss", 0)
    stack_used = int(info["stack_used_bytes"])
    blob = m.metrics["kernel_blob_bytes"]
    print(f"cortex-m55 under qemu-system-arm: {x_q.size / 16000:.2f} s of audio in {wall:.1f} s; flash (text+rodata) "
          f"{flash:,} B of which blob {blob:,} (export: {m.metrics['device_flash_bytes']:,}, budget "
          f"{m.metrics['device_flash_budget_bytes']:,}); RAM data+bss {ram_static:,} B (arena {info['arena_bytes']}) "
          f"+ stack {stack_used:,} used of {device_memory.FIRMWARE_STACK_BYTES:,} (export: {m.metrics['device_ram_bytes']:,}, "
          f"budget {m.metrics['device_ram_budget_bytes']:,})")
    assert flash - blob <= device_memory.FIRMWARE_FLASH_BYTES and flash <= m.metrics["device_flash_bytes"]
    assert int(info["arena_bytes"]) == m.metrics["kernel_arena_bytes"]
    assert ram_static - m.metrics["kernel_arena_bytes"] <= device_memory.FIRMWARE_RAM_BYTES
    assert 0 < stack_used <= device_memory.FIRMWARE_STACK_BYTES
    assert ram_static + device_memory.FIRMWARE_STACK_BYTES <= m.metrics["device_ram_bytes"] <= m.metrics["device_ram_budget_bytes"]


def test_cortex_m55_firmware_reports_a_missing_input(firmware, tmp_path):
    r = _run_qemu(firmware, tmp_path / "missing.raw", tmp_path / "out.raw", timeout=120)
    assert r.returncode == 3 and "cannot open" in r.stderr


def test_cortex_m55_export_refuses_a_model_over_budget(tmp_path):
    """A board whose flash cannot hold the blob: one line naming the figure and the budget, no bundle."""
    board = resolve_target("m55")
    small = dataclasses.replace(board, budget=dataclasses.replace(board.budget, flash_bytes=40_000))
    with pytest.raises(ExportError) as e:
        export_bundle(ExportOptions(board=small, audiogram=Audiogram.preset("mild-flat"), out_dir=tmp_path / "b",
                                    **KNOBS))
    msg = str(e.value)
    assert "\n" not in msg and "flash" in msg and "budget.flash_bytes 40,000" in msg and "cortex-m55" in msg
    assert not any(tmp_path.iterdir())


def test_cortex_m55_memory_check_without_export():
    board = resolve_target("m55")
    fits = device_memory.device_memory(board, {"kernel_blob_bytes": 60_000, "kernel_arena_bytes": 140_000})
    assert fits["device_flash_bytes"] == 60_000 + device_memory.FIRMWARE_FLASH_BYTES
    with pytest.raises(device_memory.DeviceMemoryError, match="RAM .* over the board's budget.ram_bytes 524,288"):
        device_memory.device_memory(board, {"kernel_blob_bytes": 60_000, "kernel_arena_bytes": 600_000})
    assert device_memory.device_memory(resolve_target("rpi"), {"kernel_blob_bytes": 10**9, "kernel_arena_bytes": 10**9}) == {}
