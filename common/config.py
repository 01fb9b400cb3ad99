"""Pure loader for frozen settings dataclasses from TOML plus environment variables.

Each service defines one frozen dataclass of settings. ``load_settings`` fills it from, in
increasing priority: the dataclass defaults, a TOML table, and environment variables named
``{PREFIX}_{FIELD}`` (upper case). Only ``__main__``/CLI code passes ``os.environ`` in; nothing
below reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from common.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, raw: Any, typ: Any) -> Any:
    """Convert a TOML or env value to the field's declared type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw == ""):
            return None
        return _coerce(name, raw, args[0])
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            val = str(raw).strip().lower()
            if val in _TRUE:
                return True
            if val in _FALSE:
                return False
            raise ValueError(val)
        if typ is int:
            return int(raw)
        if typ is float:
            return float(raw)
        if typ is str:
            return str(raw)
        if typ is Path:
            return Path(str(raw)).expanduser()
        if origin is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            (inner, *_) = typing.get_args(typ) or (str,)
            return tuple(
                _coerce(name, i.strip() if isinstance(i, str) else i, inner) for i in items
            )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: cannot use {raw!r} as {typ}") from exc
    return raw


def load_settings(
    cls: type[T],
    *,
    env: Mapping[str, str] | None = None,
    prefix: str = "MEDCHAIN",
    toml_path: Path | None = None,
    table: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build a frozen settings dataclass.

    Parameters
    ----------
    cls : type
        A dataclass type.
    env : mapping, optional
        Environment variables (pass ``os.environ`` from ``__main__`` only).
    prefix : str
        Environment variable prefix; field ``broker_url`` reads ``{prefix}_BROKER_URL``.
    toml_path : Path, optional
        A TOML settings file.
    table : str, optional
        The TOML table to read (e.g. ``"aggregator"``); the top level when omitted.
    overrides : mapping, optional
        Explicit values (e.g. from CLI flags); highest priority, ``None`` values are ignored.

    Raises
    ------
    ConfigError
        On an unreadable TOML file, an unknown TOML key or a value of the wrong type.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if toml_path is not None:
        try:
            data = tomllib.loads(Path(toml_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {toml_path}: {exc}") from exc
        if table is not None:
            data = data.get(table, {})
        unknown = set(data) - fields
        if unknown:
            raise ConfigError(f"unknown settings in {toml_path}: {', '.join(sorted(unknown))}")
        values.update({k: _coerce(k, v, hints[k]) for k, v in data.items()})
    for name in fields:
        key = f"{prefix}_{name.upper()}"
        if env is not None and key in env:
            values[name] = _coerce(key, env[key], hints[name])
    for name, val in (overrides or {}).items():
        if val is None:
            continue
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r} for {cls.__name__}")
        values[name] = _coerce(name, val, hints[name])
    return cls(**values)
