"""Figures of a record-folder evaluation and the input checks behind its flags."""

from __future__ import annotations

import numpy as np
import pytest

from models.record_checks import (
    annotation_problem,
    clipped_share,
    detection_problem,
    flat_share,
    signal_flags,
)
from models.record_report import bootstrap_ci, carried_by, figures, metrics_of, scored_summary

CLASSES = ("N", "S", "V", "F", "Q")


def _cm(n: int, s_found: int, s_total: int, s_false: int, v: int = 0) -> np.ndarray:
    cm = np.zeros((5, 5), np.int64)
    cm[0, 0], cm[0, 1] = n - s_false, s_false
    cm[1, 1], cm[1, 0] = s_found, s_total - s_found
    cm[2, 2] = v
    return cm


def test_metrics_of_a_confusion_equal_the_label_metrics() -> None:
    cm = _cm(100, 8, 10, 2, v=5)
    m = metrics_of(cm, CLASSES)
    np.testing.assert_array_equal(np.array(m["confusion"]), cm)
    assert m["per_class"]["S"]["se"] == pytest.approx(0.8)
    assert m["per_class"]["S"]["ppv"] == pytest.approx(0.8)
    assert "jk" in m


def test_bootstrap_of_identical_records_has_no_width() -> None:
    ci = bootstrap_ci([_cm(100, 8, 10, 2)] * 5, CLASSES, resamples=50, seed=1)
    assert ci["ci95"]["se_S"] == [0.8, 0.8]
    assert ci["ci95"]["se_V"] is None and ci["defined"]["se_V"] == 0


def test_bootstrap_spans_the_records_and_is_seeded() -> None:
    records = [_cm(100, 9, 10, 1), _cm(100, 1, 10, 30), _cm(100, 5, 10, 5)]
    a = bootstrap_ci(records, CLASSES, resamples=300, seed=3)
    b = bootstrap_ci(records, CLASSES, resamples=300, seed=3)
    assert a == b
    lo, hi = a["ci95"]["se_S"]
    assert 0.1 <= lo < 0.5 < hi <= 0.9


def test_one_record_carrying_a_class_is_named_with_the_figures_without_it() -> None:
    cms = {"232": _cm(500, 90, 100, 0), "100": _cm(500, 1, 10, 10), "101": _cm(500, 0, 0, 0)}
    out = carried_by(cms, CLASSES)
    assert out["S"]["record"] == "232" and out["S"]["share"] == pytest.approx(100 / 110, abs=1e-4)
    assert out["S"]["without_it"]["se"] == pytest.approx(0.1)
    assert out["S"]["without_it"]["ppv"] == pytest.approx(1 / 11)
    assert "232 holds 91 %" in out["S"]["note"]
    assert "V" not in out  # no reference VEB at all


def test_scored_summary_sums_the_records() -> None:
    cms = {"a": _cm(10, 1, 2, 1), "b": _cm(20, 2, 2, 0)}
    out = scored_summary(cms, CLASSES, resamples=20, seed=0)
    assert out["gross"]["n"] == 34
    assert figures(cms["a"] + cms["b"], CLASSES)["se_S"] == pytest.approx(0.75)


def test_flat_and_clipped_samples() -> None:
    fs = 100.0
    x = np.sin(np.linspace(0, 60, 1000)) * 500.0
    x[200:500] = 3.0  # three flat seconds
    assert flat_share(x, fs) == pytest.approx(0.3)
    y = np.clip(x, -400.0, 400.0)
    assert clipped_share(y) > 0.1 and clipped_share(x) < 0.01
    assert clipped_share(np.zeros(100)) == 0.0  # a flat line is not clipping
    assert set(signal_flags(y, fs)) == {"flat_line", "clipping"}
    assert signal_flags(np.sin(np.linspace(0, 60, 1000)) * 500.0, fs) == {}


def test_annotation_checks() -> None:
    assert annotation_problem(np.array([10, 20], np.int64), 100, 10.0) == ""
    assert "outside" in annotation_problem(np.array([10, 200], np.int64), 100, 10.0)
    assert "no reference" in annotation_problem(np.zeros(0, np.int64), 100, 10.0)
    steady = np.full(200, 90.0) + np.random.default_rng(0).normal(0, 3, 200)
    scattered = np.random.default_rng(0).uniform(-150, 150, 200)
    assert detection_problem(0.99, steady) == ""  # a lead detected 90 ms off, every beat
    assert "do not match" in detection_problem(0.6, scattered)
    assert "do not match" in detection_problem(0.3, steady)
