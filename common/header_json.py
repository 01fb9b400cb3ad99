"""The JSON of an envelope header (:mod:`common.protocol`): integers bounded, numbers finite.

Untrusted header text may hold literals Python parses into values no store column or reader
takes: integers of thousands of digits, ``1e999`` (infinity), ``NaN``, ``Infinity``. Refusing
them with ``json`` hooks costs a Python call per number, on every message; yet such a literal
shows in the text as one of three patterns, which a translated copy of it reveals in a few
C-speed searches (:func:`_may_hold_unbounded`). A header without them is parsed by the plain C
decoder, any other (and any the plain parse refuses) by the hooks, which name what is wrong:
every header gives exactly what the hooked parse alone gave.
"""

from __future__ import annotations

import json
import re
from typing import Any

from common.wire_fields import ProtocolError

__all__ = ["MAX_INT_DIGITS", "parse_header"]

MAX_INT_DIGITS = 19  # a JSON integer longer than this cannot fit a 64-bit column


def _role(byte: int) -> int:
    """What a byte may be next to a JSON number: a digit, "." or "e", a byte that may come
    before or after a number in valid JSON (",", ":", brackets, "-", whitespace), or other."""
    char = chr(byte)
    if char in "0123456789":
        return ord("0")
    if char in ".eE":
        return ord(char.lower())
    return ord(",") if char in ",:[]{}- \t\n\r" else ord("x")


_ROLES = bytes(_role(b) for b in range(256))  # for bytes.translate, "+" deleted besides
_LONG_RUN = b"0" * (MAX_INT_DIGITS + 1)  # 20 digits
_LONG_NUMBER = b"," + _LONG_RUN  # ... starting a number
_BIG_EXPONENT = re.compile(rb"e000+(?:,|\Z)")  # "e+999", "E400" ending a number


def parse_header(raw: bytes) -> Any:
    """Parse header JSON, refusing integers of more than :data:`MAX_INT_DIGITS` digits and
    non-finite numbers (``NaN``, ``Infinity``, overflowing literals such as ``1e999``).

    Parameters
    ----------
    raw : bytes
        Untrusted UTF-8 JSON text (the envelope bounds its length).

    Returns
    -------
    Any
        The parsed value (not necessarily an object: the caller checks its shape).

    Raises
    ------
    ProtocolError
        On invalid UTF-8 or JSON, nesting too deep, or a number out of bounds (naming it).

    Examples
    --------
    >>> parse_header(b'{"kind":"update","n":3}')
    {'kind': 'update', 'n': 3}
    >>> parse_header(b'{"x":1e999}')
    Traceback (most recent call last):
    ...
    common.wire_fields.ProtocolError: non-finite number '1e999' in the header
    """
    if _may_hold_unbounded(raw):
        return _parse_with_hooks(raw)
    try:
        return json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _parse_with_hooks(raw)  # for its error message


def _may_hold_unbounded(raw: bytes) -> bool:
    """False only if valid JSON ``raw`` holds no number the hooks refuse.

    Such a number shows in the text as ``NaN`` or ``Infinity``; as an integer part of 20 digits
    or more, after a sign, a delimiter or nothing (an integer past 64 bits, or a float whose
    mantissa reaches 1e19); or, for any other float to reach infinity (1.8e308), as a positive
    exponent of 3 digits or more, ending the number. In a string these only raise a false
    alarm (the hooked parse runs); a hex digest never does, as it holds no delimiter.
    """
    if b"NaN" in raw or b"Infinity" in raw:
        return True
    roles = raw.translate(_ROLES, b"+")
    return (
        _LONG_NUMBER in roles
        or roles.startswith(_LONG_RUN)
        or _BIG_EXPONENT.search(roles) is not None
    )


def _parse_with_hooks(raw: bytes) -> Any:
    """The strict parse: each number checked as it is read, so the error names the literal."""
    try:
        return json.loads(
            raw.decode(),
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise ProtocolError("header JSON nested too deep") from exc


def _bounded_int(text: str) -> int:
    """JSON integer hook: refuse huge literals before Python converts them (5000 digits)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(f"integer of {len(text)} characters in the header")
    return int(text)


def _finite_float(text: str) -> float:
    """JSON number hook: ``1e999`` parses as infinity; refuse it."""
    val = float(text)
    if val != val or val in (float("inf"), float("-inf")):
        raise ProtocolError(f"non-finite number {text[:40]!r} in the header")
    return val


def _no_constant(name: str) -> Any:
    """JSON hook for the non-standard literals ``NaN``, ``Infinity`` and ``-Infinity``."""
    raise ProtocolError(f"non-finite literal {name} in the header")
