"""runtime.config: strict dataclass loading, TOML reading and the cache directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from runtime.config import ConfigError, cache_dir, check_keys, read_toml, strict_from_dict


@dataclass(frozen=True)
class Inner:
    gain_db: float = 0.0


@dataclass(frozen=True)
class Cfg:
    rate: int
    gain: float = 1.0
    taps: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.0, 1.0)
    name: str = "x"
    on: bool = False
    widths: tuple[int, ...] | None = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")


class MyError(ConfigError):
    pass


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_values_are_converted_to_the_annotations() -> None:
    c = strict_from_dict(Cfg, {"rate": np.int64(16000), "gain": 2, "taps": [3, 4], "pair": [1, 2.5],
                               "widths": [8, 4], "inner": {"gain_db": 6}}, where="cfg")
    assert c == Cfg(rate=16000, gain=2.0, taps=(3, 4), pair=(1.0, 2.5), widths=(8, 4), inner=Inner(6.0))
    assert type(c.rate) is int and type(c.gain) is float and type(c.inner.gain_db) is float
    assert strict_from_dict(Cfg, {"rate": 1, "widths": None}, where="cfg").widths is None


def test_unknown_key_names_it_and_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as e:
        strict_from_dict(Cfg, {"rate": 1, "raet": 2}, where="x.toml: [model]")
    msg = one_line(e)
    assert msg.startswith("x.toml: [model]: unknown key 'raet'; expected one of rate, gain, taps")
    with pytest.raises(ConfigError, match="unknown keys 'a', 'b'"):
        check_keys({"a": 1, "b": 2, "rate": 3}, ["rate"], where="cfg")
    check_keys({"rate": 3}, ["rate"], where="cfg")  # nothing unknown: no error


@pytest.mark.parametrize("key, value, expected", [
    ("rate", "16000", "integer"),
    ("rate", 1.5, "integer"),
    ("rate", True, "integer"),
    ("gain", float("nan"), "number"),
    ("gain", "loud", "number"),
    ("on", 1, "boolean"),
    ("name", 3, "string"),
    ("taps", 4, "a list of integers"),
    ("pair", [1.0], "a list of 2 numbers"),
    ("widths", ["a"], "a list of integers or nothing"),
])
def test_wrong_type_names_key_value_and_expected_type(key: str, value: object, expected: str) -> None:
    d = {"rate": 1, key: value}
    with pytest.raises(ConfigError) as e:
        strict_from_dict(Cfg, d, where="cfg")
    assert one_line(e) == f"cfg: {key} = {value!r}: expected {expected}"


def test_tables_missing_keys_and_the_error_type() -> None:
    with pytest.raises(ConfigError, match="cfg: gain is a table; expected number"):
        strict_from_dict(Cfg, {"rate": 1, "gain": {"x": 1}}, where="cfg")
    with pytest.raises(ConfigError, match=r"cfg.inner: unknown key 'gain'; expected one of gain_db"):
        strict_from_dict(Cfg, {"rate": 1, "inner": {"gain": 1}}, where="cfg")
    with pytest.raises(MyError, match="cfg: missing key 'rate'"):
        strict_from_dict(Cfg, {}, where="cfg", error=MyError)
    with pytest.raises(MyError, match="cfg: expected a table of keys, got 3"):
        strict_from_dict(Cfg, 3, where="cfg", error=MyError)  # type: ignore[arg-type]
    # The dataclass's own checks keep their own error.
    with pytest.raises(ValueError, match="rate must be positive") as e:
        strict_from_dict(Cfg, {"rate": -1}, where="cfg")
    assert not isinstance(e.value, ConfigError)


def test_read_toml(tmp_path: Path) -> None:
    p = tmp_path / "board.toml"
    p.write_text('[audio]\nblock = 16\n')
    assert read_toml(p, what="board file") == {"audio": {"block": 16}}


def test_toml_syntax_error_is_one_line_with_the_path_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[audio]\nblock = 16\nrate = = 3\n')
    with pytest.raises(MyError) as e:
        read_toml(p, what="board file", error=MyError)
    msg = one_line(e)
    assert msg.startswith(f"{p}: invalid TOML: ") and "line 3" in msg


def test_read_toml_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        read_toml(tmp_path / "absent.toml", what="recipe file", missing_hint="shipped recipes: a, b")
    assert one_line(e) == f"{tmp_path / 'absent.toml'}: recipe file not found (shipped recipes: a, b)"
    with pytest.raises(ConfigError, match="is a directory, not a board file"):
        read_toml(tmp_path, what="board file")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"shown.toml: board file is not UTF-8 text \(.* at byte 11\)"):
        read_toml(latin, what="board file", where="shown.toml")


def test_cache_dir_honours_hx_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HX_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir("ckernel") == tmp_path / "c" / "ckernel"
    monkeypatch.setenv("HX_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("corpus") == tmp_path / "home" / ".cache" / "hx" / "corpus"
    monkeypatch.delenv("HX_CACHE_DIR")
    assert cache_dir("msbg-pairs") == tmp_path / "home" / ".cache" / "hx" / "msbg-pairs"
