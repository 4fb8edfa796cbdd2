"""Flash and RAM of a bare-metal firmware running the C kernel, against the board's budget.

A microcontroller board (``[budget] flash_bytes`` / ``ram_bytes`` in its TOML, e.g.
boards/cortex-m55.toml) runs the kernel inside the firmware of ``csrc/firmware/m55``: the model
blob is a const array in flash beside the code, the arena a static array in RAM below the stack.
The export knows the blob's size and arena, and adds the firmware's own share, which does not
depend on the model:

* flash: the driver, the reference kernels, the start-up code and libgcc (``.vectors`` +
  ``.text`` + ``.rodata`` less the blob + ``.ARM.exidx``): 14,108 bytes measured with Debian 12's
  arm-none-eabi-gcc 12.2 and the board's ``-O2 -mcpu=cortex-m55`` flags (18,708 with the 16x8 kernels); FIRMWARE_FLASH_BYTES
  rounds it up to 24 KiB.
* RAM: the stack the linker script reserves (m55.ld ``__stack_size__``; the firmware reports
  its high-water mark, 1,832 bytes measured over 2 s of speech), and the firmware's own buffers
  (two 4 KiB I/O chunks, the command line, the model struct: 8,704 bytes measured).

tests/csrc/test_cortex_m55.py builds the firmware for a real bundle and checks that the ELF's
sections and the measured stack stay within these figures, so they cannot silently go stale.
"""

from __future__ import annotations

from typing import Any, Mapping

from runtime.boards import Board

#: Firmware code and constants other than the model blob (bytes; 18,708 measured with the int16
#: kernels linked in beside the int8 ones).
FIRMWARE_FLASH_BYTES = 24 * 1024
#: Stack reserved by the linker script (m55.ld __stack_size__).
FIRMWARE_STACK_BYTES = 8 * 1024
#: Firmware .data + .bss other than the arena (I/O buffers, command line, model struct; measured 8,704).
FIRMWARE_RAM_BYTES = 9 * 1024


class DeviceMemoryError(ValueError):
    """The model's firmware would not fit the board's flash or RAM (one line)."""


def device_memory(board: Board, kernel: Mapping[str, Any]) -> dict[str, int]:
    """Flash and RAM the firmware needs for this blob, checked against the board's budget.

    ``kernel`` has ``kernel_blob_bytes`` and ``kernel_arena_bytes`` (pipeline._kernel_files).
    Returns the manifest metrics (empty for a board without a flash or RAM budget); raises
    :class:`DeviceMemoryError` naming the figure and the budget it exceeds.
    """
    b = board.budget
    if b.flash_bytes is None and b.ram_bytes is None:
        return {}
    blob, arena = int(kernel["kernel_blob_bytes"]), int(kernel["kernel_arena_bytes"])
    flash = blob + FIRMWARE_FLASH_BYTES
    ram = arena + FIRMWARE_STACK_BYTES + FIRMWARE_RAM_BYTES
    if b.flash_bytes is not None and flash > b.flash_bytes:
        raise DeviceMemoryError(
            f"target {board.name}: the firmware needs {flash:,} bytes of flash (model blob {blob:,} + firmware "
            f"{FIRMWARE_FLASH_BYTES:,}), over the board's budget.flash_bytes {b.flash_bytes:,}; export a smaller model")
    if b.ram_bytes is not None and ram > b.ram_bytes:
        raise DeviceMemoryError(
            f"target {board.name}: the firmware needs {ram:,} bytes of RAM (kernel arena {arena:,} + stack "
            f"{FIRMWARE_STACK_BYTES:,} + buffers {FIRMWARE_RAM_BYTES:,}), over the board's budget.ram_bytes "
            f"{b.ram_bytes:,}; export a smaller model")
    out = {"device_flash_bytes": flash, "device_ram_bytes": ram, "device_stack_bytes": FIRMWARE_STACK_BYTES}
    if b.flash_bytes is not None:
        out["device_flash_budget_bytes"] = b.flash_bytes
    if b.ram_bytes is not None:
        out["device_ram_budget_bytes"] = b.ram_bytes
    return out
