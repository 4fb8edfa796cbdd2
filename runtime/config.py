"""Config plumbing shared by every layer: strict dataclass loading, TOML reading, the cache directory.

Recipes, board files, checkpoint configs and bundle manifests all refuse unknown keys and
wrong types with one line that names where the problem is; this module is that one
implementation. It sits in ``runtime/`` (the bottom layer), so it uses only the standard library.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CACHE_DIR_ENV", "ConfigError", "cache_dir", "check_keys", "read_toml", "strict_from_dict", "type_name"]

T = TypeVar("T")

#: Environment variable that moves every on-disk cache (C kernel builds, corpus, MSBG pairs, venv).
CACHE_DIR_ENV = "HX_CACHE_DIR"


class ConfigError(ValueError):
    """A bad config file or value; ``str()`` is one line (whitespace collapsed)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def cache_dir(sub: str) -> Path:
    """``$HX_CACHE_DIR/<sub>``, or ``~/.cache/hx/<sub>`` when HX_CACHE_DIR is unset or empty."""
    root = os.environ.get(CACHE_DIR_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hx"
    return base / sub


def read_toml(path: str | os.PathLike[str], *, what: str, where: str | None = None,
              missing_hint: str = "", error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """The table in a TOML file; every problem raises ``error`` with one line naming the file.

    ``what`` names the file's kind in messages ("recipe file", "board file"); ``where`` is how
    the file is shown (default: the path as given); ``missing_hint`` is added in parentheses
    when the file does not exist (e.g. the names that do).
    """
    p = Path(path)
    shown = str(p) if where is None else where
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{shown}: {what} not found" + (f" ({missing_hint})" if missing_hint else "")) from None
    except IsADirectoryError:
        raise error(f"{shown}: is a directory, not a {what}") from None
    except OSError as exc:
        raise error(f"{shown}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{shown}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise error(f"{shown}: invalid TOML: {exc}") from None


def check_keys(d: Mapping[str, Any], allowed: Iterable[str], *, where: str,
               error: type[Exception] = ConfigError) -> None:
    """Refuse keys of ``d`` outside ``allowed``, naming them and the allowed ones (typos are not defaults)."""
    allowed = list(allowed)
    unknown = sorted(k for k in d if k not in allowed)
    if unknown:
        raise error(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                    f"expected one of {', '.join(allowed)}")


def type_name(hint: Any) -> str:
    """A type hint in words, as a config file's author reads it ("a list of 2 numbers")."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {type_name(args[0])}s"
        return f"a list of {len(args)} {type_name(args[0])}s" if len(set(args)) == 1 \
            else f"a list of ({', '.join(type_name(a) for a in args)})"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if dataclasses.is_dataclass(hint):
        return f"a table of {hint.__name__} keys"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            type(None): "nothing"}.get(hint, getattr(hint, "__name__", str(hint)))


class _BadType(Exception):
    pass


def _coerce(value: Any, hint: Any, where: str, error: type[Exception]) -> Any:
    """``value`` checked against ``hint``: ints pass for floats, lists for tuples, tables for dataclasses."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg, where, error)
            except _BadType:
                continue
        raise _BadType
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _BadType
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where, error) for v in value)
        if len(value) != len(args):
            raise _BadType
        return tuple(_coerce(v, a, where, error) for v, a in zip(value, args))
    if hint is bool:
        if not isinstance(value, bool):
            raise _BadType
        return value
    if hint is int:
        # numbers.Integral: numpy integers too (configs built from arrays); bool is not a count.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _BadType
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise _BadType
        return float(value)
    if hint is type(None):
        if value is not None:
            raise _BadType
        return None
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return strict_from_dict(hint, value, where=where, error=error)
        raise _BadType
    if hint is Any:
        return value
    if isinstance(hint, type) and isinstance(value, hint):  # str and any other plain class
        return value
    raise _BadType


def strict_from_dict(cls: type[T], d: Mapping[str, Any], *, where: str,
                     error: type[Exception] = ConfigError) -> T:
    """``cls(**d)`` for a dataclass, refusing unknown keys, missing required keys and wrong types.

    Values are checked against the field annotations (ints are accepted for floats, lists for
    tuples, tables for nested dataclasses) and converted to them; the dataclass's own
    ``__post_init__`` checks the values afterwards and raises its own errors. ``where``
    (a file and section, or a config's name) starts every message; ``error`` is the type raised.
    """
    if not isinstance(d, Mapping):
        raise error(f"{where}: expected a table of keys, got {d!r}")
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    names = [f.name for f in fields]
    check_keys(d, names, where=where, error=error)
    missing = [f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        hint = hints[key]
        if isinstance(value, Mapping) and not dataclasses.is_dataclass(hint):
            raise error(f"{where}: {key} is a table; expected {type_name(hint)}")
        try:
            kwargs[key] = _coerce(value, hint, f"{where}.{key}", error)
        except _BadType:
            raise error(f"{where}: {key} = {value!r}: expected {type_name(hint)}") from None
    return cls(**kwargs)
