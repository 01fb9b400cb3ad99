"""Small helpers that read and validate form/JSON input with clear 400 messages.

Untrusted input is bounded here, at the edge: JSON numbers must be finite and fit 64 bits, text
must not hold control characters (PostgreSQL refuses NUL; none belongs in a name or a note).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from flask import abort, request
from werkzeug.routing import IntegerConverter

from common.protocol import ProtocolError, check_client_id

_LOGGER = logging.getLogger(__name__)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, newline, return allowed


USERNAME_MAX_LEN = 64  # a log-in name, as the log-in and its rate limit read it


def _bad(message: str) -> None:
    _LOGGER.info("rejected input on %s %s: %s", request.method, request.path, message)
    abort(400, description=message)


def _check_numbers(value: Any, depth: int = 0) -> None:
    """400 for a non-finite float or an integer beyond 64 bits anywhere in parsed JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float) and not math.isfinite(value):
        _bad("Numbers must be finite (no NaN or Infinity).")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        _bad("A whole number does not fit in 64 bits.")
    if isinstance(value, dict | list):
        if depth > 32:
            _bad("The JSON is nested too deeply.")
        for v in value.values() if isinstance(value, dict) else value:
            _check_numbers(v, depth + 1)


def json_body() -> Any:
    """The parsed JSON body; None if it is not JSON, or is malformed or nested too deeply."""
    try:
        return request.get_json(silent=True)
    except RecursionError:  # Python's parser gives up on deep nesting; silent= misses it
        return None


def payload() -> dict[str, Any]:
    """The request's fields: a JSON object, or the form. 400 on malformed JSON."""
    if request.is_json:
        data = json_body()
        if not isinstance(data, dict):
            abort(400, description="The request body must be a JSON object.")
        _check_numbers(data)
        return data
    return request.form.to_dict()


class Int64Converter(IntegerConverter):
    """``<int:...>`` URL parts bounded to signed 64 bits (400 beyond; the store cannot bind them)."""

    def to_python(self, value: str) -> int:
        """The integer, or 400 if it does not fit 64 bits."""
        out = int(super().to_python(value))
        if not INT64_MIN <= out <= INT64_MAX:
            _bad("A number in the address does not fit in 64 bits.")
        return out


def text(data: dict[str, Any], name: str, *, max_len: int = 200, required: bool = True) -> str:
    """A string field, stripped; 400 if missing (when required) or too long."""
    val = data.get(name, "")
    if not isinstance(val, str):
        abort(400, description=f"Field '{name}' must be text.")
    val = val.strip()
    if _CONTROL.search(val):
        _bad(f"Field '{name}' contains control characters.")
    if required and not val:
        abort(400, description=f"Field '{name}' is required.")
    if len(val) > max_len:
        abort(400, description=f"Field '{name}' is longer than {max_len} characters.")
    return val


def integer(data: dict[str, Any], name: str, *, lo: int, hi: int) -> int:
    """An integer field within ``[lo, hi]``; 400 otherwise."""
    val = data.get(name)
    if isinstance(val, bool):
        abort(400, description=f"Field '{name}' must be a whole number.")
    try:
        out = int(str(val).strip()) if not isinstance(val, int) else val
    except ValueError:
        abort(400, description=f"Field '{name}' must be a whole number.")
    if not lo <= out <= hi:
        abort(400, description=f"Field '{name}' must be between {lo} and {hi}.")
    return out


def choice(data: dict[str, Any], name: str, options: tuple[str, ...] | frozenset[str]) -> str:
    """A field restricted to ``options``; 400 otherwise."""
    val = text(data, name, max_len=64)
    if val not in options:
        abort(400, description=f"Field '{name}' must be one of: {', '.join(sorted(options))}.")
    return val


def client_id(value: str) -> str:
    """A syntactically valid client id; 404 otherwise (it cannot name a patient)."""
    try:
        return check_client_id(value)
    except ProtocolError:
        abort(404, description=f"Unknown patient {value[:64]!r}.")
