"""models.metrics: Se/+P, macro-F1, kappa and the jk index on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import classification_metrics, cohen_kappa, confusion_matrix, jk_index

CLASSES = ("N", "S", "V", "F", "Q")


def test_per_class_se_ppv_and_macro_f1() -> None:
    # Prepare: 4 N (one called S), 2 S (one called N), 2 V correct
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    # Execute
    m = classification_metrics(labels, predicted, CLASSES)
    # Assert
    assert m["per_class"]["N"]["se"] == pytest.approx(0.75)
    assert m["per_class"]["N"]["ppv"] == pytest.approx(0.75)
    assert m["per_class"]["S"]["se"] == pytest.approx(0.5)
    assert m["per_class"]["S"]["ppv"] == pytest.approx(0.5)
    assert m["per_class"]["F"]["se"] is None  # no support: undefined, not zero
    assert m["macro_f1"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion"][0] == [3, 1, 0, 0, 0]


def test_kappa_perfect_and_chance() -> None:
    assert cohen_kappa(np.diag([10, 5, 3])) == pytest.approx(1.0)
    assert cohen_kappa(np.array([[25, 25], [25, 25]])) == pytest.approx(0.0)


def test_jk_index_matches_its_definition() -> None:
    # Prepare
    cm = confusion_matrix(
        np.array([0] * 90 + [1] * 5 + [2] * 5), np.array([0] * 88 + [1, 2] + [1] * 5 + [2] * 5), 5
    )
    # Execute
    jk = jk_index(cm, CLASSES)
    # Assert: Se_S = Se_V = 1, +P_S = +P_V = 5/6
    assert jk["j"] == pytest.approx(2 + 2 * 5 / 6)
    assert jk["jk"] == pytest.approx(0.5 * jk["kappa_nsvf"] + 0.125 * jk["j"])
