"""Board descriptions: one TOML file per export target under ``boards/``.

A board file says what the target is (CPU, compiler flags for the C kernel), how it runs
audio (sample rate, block, output limit, optional mic calibration), what it may spend
(latency and compute budget) and how the runtime starts (threads, default backend).

Standard library only: this module runs on the boards themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from runtime.config import ConfigError, read_toml
from runtime.package_data import packaged_dir

__all__ = [
    "ALIASES",
    "BOARDS_DIR",
    "KNOWN_ARCHS",
    "KNOWN_BACKENDS",
    "KNOWN_QUANTS",
    "AudioSpec",
    "Board",
    "BoardError",
    "BudgetSpec",
    "CompilerSpec",
    "CpuSpec",
    "RuntimeSpec",
    "boards_dir",
    "list_boards",
    "load_board",
    "resolve_target",
]

# The board files: the copy installed with the package (a wheel: runtime/_boards/), else the
# checkout's boards/ folder next to the runtime/ package (a checkout or an editable install).
BOARDS_DIR: Path = packaged_dir("boards")
#: Environment variable that points the loader at another folder of board files.
BOARDS_DIR_ENV = "HX_BOARDS_DIR"

#: Short names people type on the command line (`--target rpi`) → board file stem.
ALIASES: Mapping[str, str] = MappingProxyType({
    "rpi": "rpi4",
    "pi4": "rpi4",
    "pi5": "rpi5",
    "m55": "cortex-m55",
})

KNOWN_ARCHS = ("aarch64", "x86_64", "armv8.1-m")
KNOWN_BACKENDS = ("ckernel", "litert", "onnx")
KNOWN_QUANTS = ("16x8", "int8")


class BoardError(ConfigError):
    """A board file is missing, malformed or names an unknown target (one-line message)."""


# ---------------------------------------------------------------------------------------
# Data model
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSpec:
    """The application core the model runs on."""

    arch: str  # one of KNOWN_ARCHS
    core: str  # e.g. "cortex-a72"
    cores: int  # number of cores of that kind
    soc: str | None = None  # e.g. "BCM2711" (informational)
    clock_mhz: float | None = None  # nominal clock (informational, used by bench reports)


@dataclass(frozen=True)
class CompilerSpec:
    """How the C kernel is (cross-)compiled for this board."""

    triple: str  # GNU target triple, e.g. "aarch64-linux-gnu"
    cflags: tuple[str, ...]  # e.g. ("-O3", "-mcpu=cortex-a72")


@dataclass(frozen=True)
class AudioSpec:
    """Audio stream parameters of the device."""

    sample_rate: int  # Hz
    block: int  # samples per model step
    output_limit: float  # linear full-scale peak, in (0, 1]; maximum power output safety
    # dB SPL of a full-scale sine at the mic; None = the project's default calibration.
    mic_sensitivity_db_spl_full_scale: float | None = None


@dataclass(frozen=True)
class BudgetSpec:
    """What the model may cost on this board."""

    latency_ms: float  # total mic-to-receiver latency allowed
    compute_fraction: float  # share of one block period the model step may take, (0, 1]
    # Bare-metal boards: bytes of flash (code + constants: the firmware and the model blob) and of
    # RAM (the kernel arena, the stack, the firmware's buffers) the firmware may use; None: no limit.
    flash_bytes: int | None = None
    ram_bytes: int | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    """How the runtime starts on this board."""

    threads: int
    backend: str  # default backend, one of KNOWN_BACKENDS
    # Refuse unsigned bundles on this board (runtime/signing.py); needs trusted_keys.
    require_signature: bool = False
    # Ed25519 public keys (.pub files, or directories of them) bundles may be signed with;
    # relative paths in the TOML are relative to the board file's directory.
    trusted_keys: tuple[Path, ...] = ()
    # The device graph the export makes the bundle's default: "16x8" (int16 audio and
    # activations, int8 weights: 16-bit converters' precision) on application CPUs, "int8"
    # (full integer) where memory or the kernels allow nothing wider.
    quant: str = "16x8"


@dataclass(frozen=True)
class Board:
    """One export target, as read from ``boards/<name>.toml``."""

    name: str
    description: str
    cpu: CpuSpec
    compiler: CompilerSpec
    audio: AudioSpec
    budget: BudgetSpec
    runtime: RuntimeSpec
    # Where it was read from; not part of the board's identity (two copies compare equal).
    path: Path | None = field(default=None, compare=False)

    @property
    def block_period_ms(self) -> float:
        """Duration of one model block in milliseconds."""
        return 1000.0 * self.audio.block / self.audio.sample_rate

    @property
    def compute_budget_ms(self) -> float:
        """Time one model step may take: ``compute_fraction`` of a block period."""
        return self.block_period_ms * self.budget.compute_fraction


# ---------------------------------------------------------------------------------------
# Field checking: every check raises BoardError("<file>: <field> ...") on one line.
# ---------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # TOML true is not 1


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and v == v and v not in (float("inf"), float("-inf")))


class _Reader:
    """Pulls typed fields out of one parsed TOML table, naming the file on error."""

    def __init__(self, where: str, data: Mapping[str, Any]):
        self.where = where
        self.data = data

    def fail(self, msg: str) -> BoardError:
        return BoardError(f"{self.where}: {msg}")

    def table(self, key: str) -> Mapping[str, Any]:
        if key not in self.data:
            raise self.fail(f"missing table [{key}]")
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be a table ([{key}]), got {value!r}")
        return value

    def get(self, table: Mapping[str, Any], prefix: str, key: str, what: str,
            ok: Callable[[Any], bool], *, required: bool = True, default: Any = None) -> Any:
        field = f"{prefix}.{key}" if prefix else key
        if key not in table:
            if required:
                raise self.fail(f"missing field {field}")
            return default
        value = table[key]
        if not ok(value):
            raise self.fail(f"{field} must be {what}, got {value!r}")
        return value

    def no_unknown(self, table: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
        # Reject typos ("sample_rte") instead of silently using a default.
        for key in table:
            if key not in known:
                field = f"{prefix}.{key}" if prefix else key
                raise self.fail(f"unknown field {field} (expected one of: {', '.join(known)})")


_TABLES = ("cpu", "compiler", "audio", "budget", "runtime")


def _board_from_dict(data: Mapping[str, Any], where: str, path: Path | None) -> Board:
    r = _Reader(where, data)
    r.no_unknown(data, "", ("name", "description") + _TABLES)

    def nonempty_str(v: Any) -> bool:
        return isinstance(v, str) and v.strip() != ""

    def pos_int(v: Any) -> bool:
        return _is_int(v) and v > 0

    def pos_num(v: Any) -> bool:
        return _is_num(v) and v > 0

    def fraction(v: Any) -> bool:
        return _is_num(v) and 0 < v <= 1

    name = r.get(data, "", "name", "a non-empty string", nonempty_str)
    description = r.get(data, "", "description", "a string", lambda v: isinstance(v, str))

    t = r.table("cpu")
    r.no_unknown(t, "cpu", ("arch", "core", "cores", "soc", "clock_mhz"))
    cpu = CpuSpec(
        arch=r.get(t, "cpu", "arch", f"one of {', '.join(KNOWN_ARCHS)}",
                   lambda v: v in KNOWN_ARCHS),
        core=r.get(t, "cpu", "core", "a non-empty string", nonempty_str),
        cores=r.get(t, "cpu", "cores", "an integer > 0", pos_int),
        soc=r.get(t, "cpu", "soc", "a string", lambda v: isinstance(v, str), required=False),
        clock_mhz=_float_or_none(r.get(t, "cpu", "clock_mhz", "a number > 0", pos_num,
                                       required=False)),
    )

    t = r.table("compiler")
    r.no_unknown(t, "compiler", ("triple", "cflags"))
    compiler = CompilerSpec(
        triple=r.get(t, "compiler", "triple", "a non-empty string", nonempty_str),
        cflags=tuple(r.get(t, "compiler", "cflags", "a list of strings",
                           lambda v: isinstance(v, list)
                           and all(isinstance(s, str) for s in v))),
    )

    t = r.table("audio")
    r.no_unknown(t, "audio", ("sample_rate", "block", "output_limit",
                              "mic_sensitivity_db_spl_full_scale"))
    audio = AudioSpec(
        sample_rate=r.get(t, "audio", "sample_rate", "an integer > 0", pos_int),
        block=r.get(t, "audio", "block", "an integer > 0", pos_int),
        output_limit=float(r.get(t, "audio", "output_limit", "a number in (0, 1]", fraction)),
        mic_sensitivity_db_spl_full_scale=_float_or_none(
            r.get(t, "audio", "mic_sensitivity_db_spl_full_scale", "a finite number",
                  _is_num, required=False)),
    )

    t = r.table("budget")
    r.no_unknown(t, "budget", ("latency_ms", "compute_fraction", "flash_bytes", "ram_bytes"))
    budget = BudgetSpec(
        latency_ms=float(r.get(t, "budget", "latency_ms", "a number > 0", pos_num)),
        compute_fraction=float(r.get(t, "budget", "compute_fraction", "a number in (0, 1]",
                                     fraction)),
        flash_bytes=r.get(t, "budget", "flash_bytes", "an integer > 0 (bytes)", pos_int, required=False),
        ram_bytes=r.get(t, "budget", "ram_bytes", "an integer > 0 (bytes)", pos_int, required=False),
    )

    t = r.table("runtime")
    r.no_unknown(t, "runtime", ("threads", "backend", "require_signature", "trusted_keys", "quant"))
    runtime = RuntimeSpec(
        threads=r.get(t, "runtime", "threads", "an integer > 0", pos_int),
        backend=r.get(t, "runtime", "backend", f"one of {', '.join(KNOWN_BACKENDS)}",
                      lambda v: v in KNOWN_BACKENDS),
        require_signature=r.get(t, "runtime", "require_signature", "true or false",
                                lambda v: isinstance(v, bool), required=False, default=False),
        trusted_keys=tuple(
            (path.parent if path is not None else Path(".")) / k if not Path(k).is_absolute() else Path(k)
            for k in r.get(t, "runtime", "trusted_keys", "a list of public key paths (strings)",
                           lambda v: isinstance(v, list) and all(isinstance(s, str) and s.strip() for s in v),
                           required=False, default=[])),
        quant=r.get(t, "runtime", "quant", f"one of {', '.join(KNOWN_QUANTS)}", lambda v: v in KNOWN_QUANTS,
                    required=False, default="16x8"),
    )
    # A board that refuses unsigned bundles but names no key would refuse every bundle.
    if runtime.require_signature and not runtime.trusted_keys:
        raise r.fail("runtime.require_signature = true needs runtime.trusted_keys (the public keys "
                     "bundles for this board are signed with)")

    board = Board(name=name, description=description, cpu=cpu, compiler=compiler,
                  audio=audio, budget=budget, runtime=runtime, path=path)
    # The block has to fill before the model can answer, so a budget below one block
    # period can never be met: catch that here rather than in a benchmark.
    if budget.latency_ms < board.block_period_ms:
        raise r.fail(f"budget.latency_ms {budget.latency_ms:g} is shorter than one block "
                     f"({board.block_period_ms:g} ms at {audio.block} samples / "
                     f"{audio.sample_rate} Hz)")
    return board


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def boards_dir() -> Path:
    """The folder board names are looked up in: ``$HX_BOARDS_DIR`` if set, else BOARDS_DIR."""
    env = os.environ.get(BOARDS_DIR_ENV)
    return Path(env) if env else BOARDS_DIR


def _display(path: Path) -> str:
    """Path as a user would recognise it: relative to the cwd when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _looks_like_path(s: str) -> bool:
    return s.endswith(".toml") or "/" in s or os.sep in s


def _load_file(path: Path) -> Board:
    where = _display(path)
    data = read_toml(path, what="board file", where=where, error=BoardError)
    board = _board_from_dict(data, where, path)
    # resolve_target() finds boards by file name, so the two must agree.
    if board.name != path.stem:
        raise BoardError(f"{where}: name {board.name!r} does not match the file name "
                         f"{path.stem!r}")
    return board


def _known_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        raise BoardError(f"{_display(directory)}: board directory does not exist "
                         f"(set {BOARDS_DIR_ENV} to the folder with the board TOML files)")
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_board(path_or_name: str | os.PathLike[str]) -> Board:
    """Load a board from a TOML file path, or by target name / alias (see resolve_target)."""
    if isinstance(path_or_name, os.PathLike) or _looks_like_path(str(path_or_name)):
        return _load_file(Path(path_or_name))
    return resolve_target(str(path_or_name))


def list_boards() -> list[Board]:
    """Every board in the boards folder, sorted by name."""
    directory = boards_dir()
    return [_load_file(directory / f"{n}.toml") for n in _known_names(directory)]


def resolve_target(name: str) -> Board:
    """The board for a ``--target`` name: a board file stem or an alias (``rpi`` → rpi4)."""
    directory = boards_dir()
    known = _known_names(directory)
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in known:
        aliases = ", ".join(f"{a} → {t}" for a, t in sorted(ALIASES.items()) if t in known)
        raise BoardError(f"unknown target {name!r}; expected one of: {', '.join(known)}"
                         + (f" (aliases: {aliases})" if aliases else ""))
    return _load_file(directory / f"{key}.toml")
