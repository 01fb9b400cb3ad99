"""Small helpers that read and validate form/JSON input with clear 400 messages."""

from __future__ import annotations

from typing import Any

from flask import abort, request

from common.protocol import ProtocolError, check_client_id


def payload() -> dict[str, Any]:
    """The request's fields: a JSON object, or the form. 400 on malformed JSON."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, description="The request body must be a JSON object.")
        return data
    return request.form.to_dict()


def text(data: dict[str, Any], name: str, *, max_len: int = 200, required: bool = True) -> str:
    """A string field, stripped; 400 if missing (when required) or too long."""
    val = data.get(name, "")
    if not isinstance(val, str):
        abort(400, description=f"Field '{name}' must be text.")
    val = val.strip()
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
