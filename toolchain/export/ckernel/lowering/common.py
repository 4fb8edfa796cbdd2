"""What every op's lowering shares: the graph being lowered, its activation type, and the checks on it."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolchain.export.ckernel.format import BlobError
from toolchain.export.ckernel.tflite_reader import TYPE_NAMES, TfliteTensor, act_shape

#: TFLite fused activations the C kernel clamps to (ActivationFunctionType codes).
FUSED = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


@dataclass
class Lowering:
    """The graph under lowering: its tensors, activation type and target arithmetic.

    ``bits`` is 8 (int8 graph) or 16 (16x8: int16 activations with zero point 0, int8 weights,
    int64 bias); ``act_dtype`` its TFLite tensor type. ``conv_rounding`` and ``add_mode`` name the
    LiteRT build's arithmetic (format.TARGETS). ``alias`` maps a RESHAPE's output to its input.
    """

    tensors: list[TfliteTensor]
    act_dtype: int
    bits: int
    elem: int                       # bytes per activation element
    conv_rounding: str
    add_mode: str
    alias: dict[int, int] = field(default_factory=dict)

    @property
    def s16(self) -> bool:
        return self.bits == 16

    @property
    def tname(self) -> str:
        return TYPE_NAMES[self.act_dtype]

    def act(self, t: TfliteTensor, what: str) -> tuple[int, int]:
        """(frames, channels) of an activation of the graph's type."""
        return act_shape(t, what, self.act_dtype)

    def symmetric(self, where: str, *ts: TfliteTensor) -> None:
        """TFLite's 16x8 kernels require zero point 0 on every int16 tensor."""
        for t in ts:
            if self.s16 and t.qparams()[1] != 0:
                raise BlobError(f"{where}: int16 tensor {t.name!r} has zero point {t.qparams()[1]}; 16x8 needs 0")
