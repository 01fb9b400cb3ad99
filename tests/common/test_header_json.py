"""The envelope header's JSON: every header parses as the hooked parse alone parsed it."""

from __future__ import annotations

import doctest
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import header_json
from common.header_json import _parse_with_hooks, parse_header
from common.wire_fields import ProtocolError


def test_doctests() -> None:
    assert doctest.testmod(header_json).failed == 0


@pytest.mark.parametrize(
    "text",
    [
        '{"kind":"update","body":{"n":9999999999999999999,"m":-9999999999999999999}}',
        '{"x":[1.7976931348623157e308,-1.7976931348623157e+308,5e-324,1e-400,0.0,-0]}',
        '{"s":"NaN Infinity 1e999 99999999999999999999","t":true,"u":null}',
        '["deep",[[[[{"a":[1,2.5]}]]]]]',
        "7",
    ],
)
def test_bounded_headers_parse_as_json(text: str) -> None:
    # Execute
    value = parse_header(text.encode())
    # Assert
    assert value == json.loads(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"n":10000000000000000000}', "integer of 20 characters in the header"),
        ('{"n":-10000000000000000000}', "integer of 21 characters in the header"),
        ('{"n":[' + "9" * 5000 + "]}", "integer of 5000 characters in the header"),
        ('{"x":1e999}', "non-finite number '1e999' in the header"),
        ('{"x":[0.5,-1E+400]}', "non-finite number '-1E+400' in the header"),
        ('{"x":' + "9" * 400 + ".0}", "non-finite number '" + "9" * 40 + "' in the header"),
        ("99999999999999999999", "integer of 20 characters in the header"),
        (' {"x":[1,\n-1e999]}', "non-finite number '-1e999' in the header"),
        ('{"x" : 1E+0400 }', "non-finite number '1E+0400' in the header"),
        ("9.99e308", "non-finite number '9.99e308' in the header"),
        (
            '{"x":1234567890123456789.5e300}',
            "non-finite number '1234567890123456789.5e300' in the header",
        ),
        ('{"x":NaN}', "non-finite literal NaN in the header"),
        ('{"a":{"x":-Infinity}}', "non-finite literal -Infinity in the header"),
        ('{"x":1', "header is not JSON: Expecting ',' delimiter: line 1 column 7 (char 6)"),
        ("[" * 100_000, "header JSON nested too deep"),
    ],
)
def test_unbounded_headers_are_refused_naming_the_literal(text: str, message: str) -> None:
    # Execute / Assert
    with pytest.raises(ProtocolError) as err:
        parse_header(text.encode())
    assert str(err.value) == message


def test_headers_as_encode_writes_them_take_the_plain_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: update-like headers with random hex digests and small floats (1e-5 written
    # "1e-05", 0.000143 with 20 digits after the point), the hooks out of reach
    rng = np.random.default_rng(7)
    monkeypatch.setattr(header_json, "_parse_with_hooks", None)
    for _ in range(300):
        header = {
            "kind": "update",
            "body": {"update_id": rng.bytes(16).hex(), "scale": float(rng.uniform(0, 1e-3)),
                     "tiny": float(rng.uniform(0, 1e-5)), "n": int(rng.integers(0, 2**62))},
            "blob_sha256": rng.bytes(32).hex(),
        }  # fmt: skip
        raw = json.dumps(header, separators=(",", ":")).encode()
        # Execute / Assert
        assert parse_header(raw) == header


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(ProtocolError, match="header is not JSON: 'utf-8' codec"):
        parse_header(b'{"a":"\xff"}')


# JSON text with number literals as a device could write them: long integer parts, long
# fractions, exponents of 1-4 digits, in every context a number may stand (with whitespace),
# beside strings full of digits and delimiters.
_SIGN = st.sampled_from(["", "-"])
_WHOLE = st.integers(min_value=0, max_value=10**25) | st.sampled_from([10**19 - 1, 10**19])
_NUMBER = st.builds("{}{}".format, _SIGN, _WHOLE) | st.builds(
    "{}{}{}{}".format,
    _SIGN,
    _WHOLE,
    st.sampled_from(["", ".5", ".00014302960237649482"])
    | st.from_regex(r"\.[0-9]{1,30}", fullmatch=True),
    st.sampled_from(["", "e5", "E+99", "e-400", "e308", "E+0400", "e1000", "e-05"]),
)
_LEAF = st.one_of(
    _NUMBER,
    st.sampled_from(["NaN", "-Infinity", "true", "null"]),
    st.text(alphabet="0123456789eE+-.,:[ abc", max_size=30).map(json.dumps),
)
_SPACE = st.sampled_from(["", " ", "\n", "\t "])


def _array(items: list[str], space: str) -> str:
    return "[" + space + f",{space}".join(items) + "]"


def _object(pairs: list[tuple[str, str]], space: str) -> str:
    return "{" + ",".join(f"{json.dumps(k)}{space}:{space}{v}" for k, v in pairs) + "}"


_DOC = st.recursive(
    _LEAF,
    lambda inner: (
        st.builds(_array, st.lists(inner, max_size=4), _SPACE)
        | st.builds(_object, st.lists(st.tuples(st.text(max_size=3), inner), max_size=4), _SPACE)
    ),
    max_leaves=12,
)


def _outcome(parse: Callable[[bytes], Any], raw: bytes) -> tuple[str, Any]:
    try:
        return ("value", parse(raw))
    except ProtocolError as exc:
        return ("error", str(exc))


@settings(max_examples=300, deadline=None)
@given(text=_DOC, space=_SPACE, cut=st.integers(min_value=0, max_value=400))
def test_same_outcome_as_the_hooked_parse(text: str, space: str, cut: int) -> None:
    # Prepare: numbers in and out of bounds, sometimes cut short (invalid JSON)
    raw = (space + text + space).encode()
    raw = raw[:cut] if cut < len(raw) and cut % 3 == 0 else raw
    # Execute / Assert
    assert _outcome(parse_header, raw) == _outcome(_parse_with_hooks, raw)
