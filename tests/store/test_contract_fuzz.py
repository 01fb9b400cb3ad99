"""Property tests: untrusted edge values round-trip identically on both backends, or are
refused with the same ValueError (never a driver error, never a difference between backends)."""

from __future__ import annotations

import math
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.types import BeatPrediction, Event
from store import Store

_ids = count()
FUZZ = settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
texts = st.text(max_size=30)  # any Unicode incl. NUL and lone surrogates
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _clean(s: str) -> bool:
    if "\x00" in s:
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@FUZZ
@given(
    label=texts,
    model_version=texts,
    t_ns=int64,
    sample=st.integers(min_value=-(2**70), max_value=2**70),
    probs=st.dictionaries(texts, finite, max_size=4),
    rr=st.one_of(st.just(math.nan), finite),
)
def test_predictions_round_trip_or_refuse(
    store: Store, label: str, model_version: str, t_ns: int, sample: int,
    probs: dict[str, float], rr: float,
) -> None:  # fmt: skip
    # Prepare: a fresh client per example (the store is shared by the examples)
    client = f"fuzz-{next(_ids)}"
    beat = BeatPrediction(client, t_ns, sample, label, probs, model_version, rr)
    valid = _clean(label) and _clean(model_version) and -(2**63) <= sample < 2**63

    # Execute / Assert
    if not valid:
        with pytest.raises(ValueError):
            store.insert_predictions([beat])
        assert store.list_predictions(client) == []
        return
    assert store.insert_predictions([beat, beat]) == 1
    (got,) = store.list_predictions(client)
    assert (got.t_ns, got.sample, got.label, got.model_version) == (
        t_ns,
        sample,
        label,
        model_version,
    )
    assert got.probs == probs
    assert (math.isnan(got.rr_s) and math.isnan(rr)) or got.rr_s == rr


@FUZZ
@given(
    event_id=texts,
    kind=texts,
    details=st.dictionaries(texts, st.one_of(texts, int64, finite), max_size=3),
)
def test_events_round_trip_or_refuse(
    store: Store, event_id: str, kind: str, details: dict[str, object]
) -> None:
    # Prepare
    client = f"fuzz-{next(_ids)}"
    eid = f"{next(_ids)}-{event_id}"
    ev = Event(eid, client, kind, 0, 1, details)  # type: ignore[arg-type]

    # Execute / Assert
    if not (_clean(eid) and _clean(kind)):
        with pytest.raises(ValueError):
            store.insert_events([ev])
        return
    store.insert_events([ev])
    assert store.list_events(client) == [ev]
