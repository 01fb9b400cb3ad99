"""AF termination task on the real AFTDB learning set (small, fast)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from common.errors import DataNotFoundError
from common.model_card import load_card
from models.tasks import aft, get_task
from models.tasks.base import LoadOptions


def _options(data_root: Path, records: list[str] | None = None) -> LoadOptions:
    return LoadOptions(env={**os.environ, "MEDCHAIN_DATA": str(data_root)}, records=records)


@pytest.mark.datasets("aftdb")
def test_registered_and_loads_labels_from_names(data_root: Path) -> None:
    # Execute
    data = aft.load("learning", _options(data_root, ["n01", "s05", "t10"]))
    # Assert
    assert get_task("aft") is aft.TASK
    assert data.labels.tolist() == [0, 1, 2]
    assert data.signal.shape == (3, 2, 7680)
    assert np.all((data.features >= 3.0) & (data.features <= 12.0))  # DAF in Hz


@pytest.mark.datasets("aftdb")
def test_unknown_split_is_a_clear_error(data_root: Path) -> None:
    with pytest.raises(DataNotFoundError, match="split"):
        aft.load("validation", _options(data_root))


@pytest.mark.datasets("aftdb")
def test_loo_separates_n_from_t_and_predicts_blind_sets(data_root: Path) -> None:
    # Execute
    res = aft.evaluate_loo(_options(data_root))
    lines = aft.predict_test(_options(data_root))
    # Assert: event A (N vs T) well above chance on leave-one-record-out
    assert res["event_a_N_vs_T"]["n"] == 20 and res["event_a_N_vs_T"]["correct"] >= 16
    assert len(lines) == 50
    assert all(re.fullmatch(r"a\d\d [NT]|b\d\d [ST]", line) for line in lines)


def test_shipped_model_card() -> None:
    card = load_card(
        Path(__file__).resolve().parents[2] / "models/pretrained/aft_softmax.card.json"
    )
    assert card.classes == ("N", "S", "T")
    assert [f.name for f in card.input_contract.features] == [f[0] for f in aft.FEATURES]
