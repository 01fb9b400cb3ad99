"""Bounded fields of untrusted payload bodies: every decoder reads its fields through here.

A payload body is JSON from a device or a server (:mod:`common.protocol`). Anything read from it
is checked before it is used or stored: integers to their range (a 20-digit ``round_id`` would
overflow a database column), floats finite (a stored ``Infinity`` kills the reader), strings to
a length and a charset (PostgreSQL refuses a NUL in text), lists and objects to a length and a
depth. Each check raises :class:`~common.protocol.ProtocolError` only, naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from common.errors import MedchainError

INT64_MAX: Final = 2**63 - 1
# A time in ns since the epoch: year 2116 at 2**62, with headroom for the arithmetic done on it
# (windows of +-150 ms, durations) inside a signed 64-bit column.
MAX_NS: Final = 2**62
MAX_TEXT: Final = 256  # characters of a free-text field (status detail...)
MAX_NAME: Final = 64  # characters of a metric or detail key
MAX_METRICS: Final = 64  # entries of a metrics map
MAX_METRIC: Final = 1e15  # |value| of a metric (bytes, seconds, scores... all far below)
MAX_DEPTH: Final = 4  # nesting of a free JSON object (event details)

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# Printable text: no C0/C1 control characters (NUL among them), no lone surrogates.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class ProtocolError(MedchainError):
    """A topic or payload that does not follow the wire protocol."""


_MISSING: Final = object()


def _get(body: Mapping[str, Any], key: str, default: Any) -> Any:
    if key in body:
        return body[key]
    if default is _MISSING:
        raise ProtocolError(f"field {key!r} missing")
    return default


def require_field(body: Mapping[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    """Return ``body[key]`` if it is a ``typ``, else raise :class:`ProtocolError`.

    A JSON ``true``/``false`` never passes as a number (``bool`` is an ``int`` in Python).
    Prefer the bounded readers below; this one only checks the type.
    """
    val = body.get(key)
    if isinstance(val, bool) and typ is not bool:
        raise ProtocolError(f"field {key!r} has type bool")
    if not isinstance(val, typ):
        raise ProtocolError(f"field {key!r} missing or not {typ}")
    return val


def int_field(
    body: Mapping[str, Any], key: str, lo: int = 0, hi: int = INT64_MAX, default: Any = _MISSING
) -> int:
    """An integer in ``[lo, hi]`` (a JSON float or bool is refused)."""
    val = _get(body, key, default)
    if val is default and default is not _MISSING:
        return int(val)
    if isinstance(val, bool) or not isinstance(val, int):
        raise ProtocolError(f"field {key!r} is not an integer")
    if not lo <= val <= hi:
        raise ProtocolError(f"field {key!r} out of range [{lo}, {hi}]")
    return val


def number_field(
    body: Mapping[str, Any], key: str, lo: float, hi: float, default: Any = _MISSING
) -> float:
    """A finite number in ``[lo, hi]`` (same unit as the field), as float."""
    val = _get(body, key, default)
    if val is default and default is not _MISSING:
        return float(val)
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise ProtocolError(f"field {key!r} is not a number")
    if isinstance(val, int) and not -INT64_MAX <= val <= INT64_MAX:
        raise ProtocolError(f"field {key!r} out of range [{lo}, {hi}]")
    out = float(val)
    if not (math.isfinite(out) and lo <= out <= hi):
        raise ProtocolError(f"field {key!r}={out} outside [{lo}, {hi}]")
    return out


def optional_number(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    """Like :func:`number_field`, but absent or JSON ``null`` gives None."""
    if body.get(key) is None:
        return None
    return number_field(body, key, lo, hi)


def bool_field(body: Mapping[str, Any], key: str, default: Any = _MISSING) -> bool:
    """A JSON boolean."""
    val = _get(body, key, default)
    if not isinstance(val, bool):
        raise ProtocolError(f"field {key!r} is not a boolean")
    return val


def check_text(val: object, what: str, max_len: int = MAX_TEXT) -> str:
    """``val`` if it is a string of at most ``max_len`` printable characters."""
    if not isinstance(val, str):
        raise ProtocolError(f"{what} is not a string")
    if len(val) > max_len:
        raise ProtocolError(f"{what} is longer than {max_len} characters")
    if _CONTROL.search(val):
        raise ProtocolError(f"{what} holds control characters")
    return val


def text_field(
    body: Mapping[str, Any],
    key: str,
    max_len: int = MAX_TEXT,
    pattern: re.Pattern[str] | None = None,
    default: Any = _MISSING,
) -> str:
    """A printable string of at most ``max_len`` characters (matching ``pattern`` if given)."""
    val = _get(body, key, default)
    text = check_text(val, f"field {key!r}", max_len)
    if pattern is not None and not pattern.match(text):
        raise ProtocolError(f"field {key!r} has characters outside {pattern.pattern}")
    return text


def name_field(body: Mapping[str, Any], key: str, default: Any = _MISSING) -> str:
    """A short identifier: 1-64 of ``[A-Za-z0-9_.:-]``."""
    return text_field(body, key, MAX_NAME, _NAME, default)


def list_field(
    body: Mapping[str, Any], key: str, max_len: int, default: Any = _MISSING
) -> list[Any]:
    """A JSON array of at most ``max_len`` items (the items are checked by the caller)."""
    val = _get(body, key, default)
    if not isinstance(val, list):
        raise ProtocolError(f"field {key!r} is not a list")
    if len(val) > max_len:
        raise ProtocolError(f"field {key!r} holds {len(val)} items, limit {max_len}")
    return val


def metrics_field(
    body: Mapping[str, Any], key: str, max_items: int = MAX_METRICS, default: Any = _MISSING
) -> dict[str, float]:
    """A map of metric name (1-64 of ``[A-Za-z0-9_.:-]``) to a finite number, ``|v| <= 1e15``.

    Every entry is checked: one bad value refuses the payload (it is not silently dropped).
    """
    val = _get(body, key, default)
    if not isinstance(val, dict):
        raise ProtocolError(f"field {key!r} is not an object")
    if len(val) > max_items:
        raise ProtocolError(f"field {key!r} holds {len(val)} entries, limit {max_items}")
    out: dict[str, float] = {}
    for name in val:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProtocolError(f"field {key!r}: bad metric name {str(name)[:80]!r}")
        out[name] = number_field(val, name, -MAX_METRIC, MAX_METRIC)
    return out


def json_field(
    body: Mapping[str, Any], key: str, max_items: int = 32, default: Any = _MISSING
) -> dict[str, Any]:
    """A small free JSON object (event details): keys are names, at most :data:`MAX_DEPTH`
    levels, ``max_items`` entries per level, strings printable, numbers finite int64/float."""
    val = _get(body, key, default)
    if not isinstance(val, dict):
        raise ProtocolError(f"field {key!r} is not an object")
    _check_json(val, f"field {key!r}", max_items, MAX_DEPTH)
    return val


def _check_json(val: object, what: str, max_items: int, depth: int) -> None:
    if val is None or isinstance(val, bool):
        return
    if isinstance(val, int):
        if not -INT64_MAX <= val <= INT64_MAX:
            raise ProtocolError(f"{what}: integer out of the 64-bit range")
        return
    if isinstance(val, float):
        if not math.isfinite(val):
            raise ProtocolError(f"{what}: non-finite number")
        return
    if isinstance(val, str):
        check_text(val, what, MAX_TEXT)
        return
    if depth <= 0 or not isinstance(val, (dict, list)):
        raise ProtocolError(f"{what}: nested too deep or of an unknown type")
    if len(val) > max_items:
        raise ProtocolError(f"{what}: {len(val)} entries, limit {max_items}")
    if isinstance(val, dict):
        for k, v in val.items():
            if not isinstance(k, str) or not _NAME.match(k):
                raise ProtocolError(f"{what}: bad key {str(k)[:80]!r}")
            _check_json(v, what, max_items, depth - 1)
    else:
        for v in val:
            _check_json(v, what, max_items, depth - 1)
