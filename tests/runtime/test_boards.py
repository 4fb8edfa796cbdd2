"""Board TOML files: the shipped ones load, targets resolve, bad files fail on one line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from runtime.boards import (
    ALIASES,
    BOARDS_DIR,
    Board,
    BoardError,
    list_boards,
    load_board,
    resolve_target,
)

SHIPPED = ("cortex-m55", "host", "rpi4", "rpi5", "zero2w")

GOOD = """\
name = "{name}"
description = "test board"

[cpu]
arch = "aarch64"
core = "cortex-a72"
cores = 4

[compiler]
triple = "aarch64-linux-gnu"
cflags = ["-O3", "-mcpu=cortex-a72"]

[audio]
sample_rate = 16000
block = 16
output_limit = 0.891

[budget]
latency_ms = 5.0
compute_fraction = 0.5

[runtime]
threads = 1
backend = "litert"
"""


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture
def board_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty boards folder that the loader uses instead of the repo's."""
    d = tmp_path / "boards"
    d.mkdir()
    monkeypatch.setenv("HX_BOARDS_DIR", str(d))
    return d


def write(d: Path, name: str, text: str) -> Path:
    p = d / f"{name}.toml"
    p.write_text(text)
    return p


# --- shipped boards -----------------------------------------------------------------


def test_boards_dir_is_the_repo_folder() -> None:
    assert BOARDS_DIR == Path(__file__).resolve().parents[2] / "boards"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_board_loads(name: str) -> None:
    b = load_board(BOARDS_DIR / f"{name}.toml")
    assert isinstance(b, Board)
    assert b.name == name
    assert b.audio.sample_rate == 16000 and b.audio.block == 16
    assert b.block_period_ms == pytest.approx(1.0)
    assert 0 < b.audio.output_limit <= 1
    assert b.runtime.backend in ("ckernel", "litert")
    assert b.runtime.require_signature is False
    assert all(isinstance(f, str) for f in b.compiler.cflags)
    # Host objects must run on other machines too.
    assert "-march=native" not in b.compiler.cflags


def test_list_boards_finds_all_shipped() -> None:
    assert [b.name for b in list_boards()] == list(SHIPPED)


def test_shipped_board_details() -> None:
    assert load_board("rpi4").cpu.core == "cortex-a72"
    assert "-mcpu=cortex-a76" in load_board("rpi5").compiler.cflags
    assert load_board("zero2w").cpu.core == "cortex-a53"
    m55 = load_board("cortex-m55")
    assert m55.cpu.arch == "armv8.1-m"
    assert m55.compiler.triple == "arm-none-eabi"
    assert m55.compiler.cflags == ("-O2", "-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard")
    assert m55.runtime.threads == 1 and m55.runtime.backend == "ckernel"
    assert load_board("host").cpu.arch == "x86_64"


@pytest.mark.parametrize("alias,target", sorted(ALIASES.items()))
def test_aliases(alias: str, target: str) -> None:
    assert resolve_target(alias) == resolve_target(target)
    assert resolve_target(alias).name == target


def test_required_aliases_present() -> None:
    assert resolve_target("rpi").name == "rpi4"
    assert resolve_target("pi4").name == "rpi4"
    assert resolve_target("pi5").name == "rpi5"
    assert resolve_target("m55").name == "cortex-m55"
    assert resolve_target("RPI4").name == "rpi4"  # command-line case does not matter


def test_unknown_target_lists_valid_names() -> None:
    with pytest.raises(BoardError) as e:
        resolve_target("rpi9")
    msg = one_line(e)
    assert msg.startswith("unknown target 'rpi9'; expected one of: "
                          "cortex-m55, host, rpi4, rpi5, zero2w")
    assert "rpi → rpi4" in msg


def test_board_error_is_value_error() -> None:
    assert issubclass(BoardError, ValueError)


def test_hx_boards_dir_overrides(board_dir: Path) -> None:
    write(board_dir, "mine", GOOD.format(name="mine"))
    assert [b.name for b in list_boards()] == ["mine"]
    assert resolve_target("mine").path == board_dir / "mine.toml"
    with pytest.raises(BoardError, match="expected one of: mine"):
        resolve_target("rpi4")


def test_same_board_from_two_files_compares_equal(board_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "copy"
    other.mkdir()
    a = load_board(write(board_dir, "x", GOOD.format(name="x")))
    b = load_board(write(other, "x", GOOD.format(name="x")))
    assert a == b and a.path != b.path


def test_budget_properties(board_dir: Path) -> None:
    b = load_board(write(board_dir, "x", GOOD.format(name="x").replace("block = 16",
                                                                        "block = 32")))
    assert b.block_period_ms == pytest.approx(2.0)
    assert b.compute_budget_ms == pytest.approx(1.0)


def test_optional_fields(board_dir: Path) -> None:
    text = GOOD.format(name="x")
    b = load_board(write(board_dir, "x", text))
    assert b.audio.mic_sensitivity_db_spl_full_scale is None
    assert b.runtime.require_signature is False
    text = text.replace("output_limit = 0.891",
                        "output_limit = 1\nmic_sensitivity_db_spl_full_scale = 94")
    text += 'require_signature = true\ntrusted_keys = ["keys/vendor.pub", "/etc/hx/keys"]\n'
    b = load_board(write(board_dir, "x", text))
    assert b.audio.mic_sensitivity_db_spl_full_scale == 94.0
    assert b.audio.output_limit == 1.0
    assert b.runtime.require_signature is True
    # Relative key paths are relative to the board file, not to wherever the runtime was started.
    assert b.runtime.trusted_keys == (board_dir / "keys" / "vendor.pub", Path("/etc/hx/keys"))


def test_require_signature_without_trusted_keys_is_refused(board_dir: Path) -> None:
    text = GOOD.format(name="x") + "require_signature = true\n"
    with pytest.raises(BoardError) as e:
        load_board(write(board_dir, "x", text))
    assert "runtime.require_signature = true needs runtime.trusted_keys" in str(e.value)
    for bad in ('trusted_keys = "k.pub"', "trusted_keys = [1]", 'trusted_keys = [""]'):
        with pytest.raises(BoardError) as e:
            load_board(write(board_dir, "x", GOOD.format(name="x") + bad + "\n"))
        assert "runtime.trusted_keys must be a list of public key paths" in str(e.value)


# --- malformed files ----------------------------------------------------------------


def _drop_line(text: str, startswith: str) -> str:
    return "\n".join(l for l in text.splitlines() if not l.startswith(startswith)) + "\n"


@pytest.mark.parametrize("field", [
    "name", "description", "cpu.arch", "cpu.core", "cpu.cores", "compiler.triple",
    "compiler.cflags", "audio.sample_rate", "audio.block", "audio.output_limit",
    "budget.latency_ms", "budget.compute_fraction", "runtime.threads", "runtime.backend",
])
def test_missing_field_is_named(board_dir: Path, field: str) -> None:
    key = field.split(".")[-1]
    text = _drop_line(GOOD.format(name="x"), f"{key} =")
    with pytest.raises(BoardError) as e:
        load_board(write(board_dir, "x", text))
    msg = one_line(e)
    assert msg.endswith(f"x.toml: missing field {field}")


def test_missing_table_is_named(board_dir: Path) -> None:
    text = GOOD.format(name="x")
    text = text[: text.index("[runtime]")]
    with pytest.raises(BoardError, match=r"x\.toml: missing table \[runtime\]"):
        load_board(write(board_dir, "x", text))


def test_missing_field_message_uses_path_relative_to_cwd(
        board_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(board_dir.parent)
    write(board_dir, "x", _drop_line(GOOD.format(name="x"), "block ="))
    with pytest.raises(BoardError) as e:
        load_board("boards/x.toml")
    assert one_line(e) == "boards/x.toml: missing field audio.block"


@pytest.mark.parametrize("old,new,expected", [
    ("block = 16", 'block = "abc"', "audio.block must be an integer > 0, got 'abc'"),
    ("block = 16", "block = 0", "audio.block must be an integer > 0, got 0"),
    ("block = 16", "block = 16.0", "audio.block must be an integer > 0, got 16.0"),
    ("block = 16", "block = true", "audio.block must be an integer > 0, got True"),
    ("sample_rate = 16000", "sample_rate = -1", "audio.sample_rate must be an integer > 0"),
    ("output_limit = 0.891", "output_limit = 1.5", "audio.output_limit must be a number in (0, 1]"),
    ("output_limit = 0.891", "output_limit = 0", "audio.output_limit must be a number in (0, 1]"),
    ("output_limit = 0.891", "output_limit = nan", "audio.output_limit must be a number in (0, 1]"),
    ("cores = 4", 'cores = "4"', "cpu.cores must be an integer > 0, got '4'"),
    ('arch = "aarch64"', 'arch = "mips"', "cpu.arch must be one of aarch64, x86_64, armv8.1-m"),
    ('cflags = ["-O3", "-mcpu=cortex-a72"]', 'cflags = "-O3"',
     "compiler.cflags must be a list of strings, got '-O3'"),
    ('backend = "litert"', 'backend = "torch"', "runtime.backend must be one of"),
    ("compute_fraction = 0.5", "compute_fraction = 2",
     "budget.compute_fraction must be a number in (0, 1]"),
    ("latency_ms = 5.0", "latency_ms = 0.5", "budget.latency_ms 0.5 is shorter than one block"),
])
def test_wrong_type_is_named(board_dir: Path, old: str, new: str, expected: str) -> None:
    text = GOOD.format(name="x")
    assert old in text
    with pytest.raises(BoardError) as e:
        load_board(write(board_dir, "x", text.replace(old, new, 1)))
    msg = one_line(e)
    assert "x.toml: " in msg and expected in msg


def test_table_of_wrong_type(board_dir: Path) -> None:
    text = GOOD.format(name="x")
    start, end = text.index("[audio]"), text.index("[budget]")
    text = text[:start].replace('description = "test board"',
                                'description = "test board"\naudio = 3') + text[end:]
    with pytest.raises(BoardError) as e:
        load_board(write(board_dir, "x", text))
    assert "x.toml: audio must be a table ([audio]), got 3" in one_line(e)


def test_unknown_field_is_refused(board_dir: Path) -> None:
    text = GOOD.format(name="x").replace("block = 16", "block = 16\nblok = 32")
    with pytest.raises(BoardError) as e:
        load_board(write(board_dir, "x", text))
    assert "x.toml: unknown field audio.blok" in one_line(e)


def test_invalid_toml_names_file_and_line(board_dir: Path) -> None:
    text = GOOD.format(name="x").replace("block = 16", "block 16")
    with pytest.raises(BoardError) as e:
        load_board(write(board_dir, "x", text))
    msg = one_line(e)
    assert "x.toml: invalid TOML" in msg
    line = text.splitlines().index("block 16") + 1
    assert re.search(rf"line {line}\b", msg), msg
    # Still the standard error underneath, for callers that want it.
    assert isinstance(e.value.__context__, tomllib.TOMLDecodeError)


def test_name_must_match_file(board_dir: Path) -> None:
    with pytest.raises(BoardError, match=r"x\.toml: name 'y' does not match the file name"):
        load_board(write(board_dir, "x", GOOD.format(name="y")))


def test_missing_file(board_dir: Path) -> None:
    with pytest.raises(BoardError, match=r"nope\.toml: board file not found"):
        load_board(board_dir / "nope.toml")


def test_missing_boards_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HX_BOARDS_DIR", str(tmp_path / "absent"))
    with pytest.raises(BoardError, match="board directory does not exist"):
        list_boards()


def test_bad_board_in_folder_fails_resolve_with_its_name(board_dir: Path) -> None:
    write(board_dir, "bad", "name = \n")
    with pytest.raises(BoardError) as e:
        resolve_target("bad")
    assert "bad.toml: invalid TOML" in one_line(e)
