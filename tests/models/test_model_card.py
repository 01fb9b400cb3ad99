"""common.model_card: validation, round trip, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import (
    card_from_dict,
    card_path_for,
    card_to_dict,
    load_card,
    save_card,
    validate_card,
)


def minimal_card() -> dict[str, Any]:
    return {
        "task": "beat",
        "classes": ["N", "S"],
        "description": "test card",
        "input_contract": {
            "sampling_rate_hz": 128.0,
            "window_before": 32,
            "window_after": 64,
            "alignment": "R peak at index 32",
            "lead": "MLII",
            "units": "µV",
            "filter": "bandpass 0.5-40 Hz",
            "normalisation": "z-score",
            "resampling": "resample_poly",
            "features": [{"name": "rr_pre", "unit": "s", "description": "previous RR"}],
            "parameters": {"k": 1},
        },
        "onnx": {
            "inputs": [{"name": "beat", "shape": ["N", 1, 96], "dtype": "float32"}],
            "outputs": [{"name": "probs", "shape": ["N", 2], "dtype": "float32"}],
        },
        "head": {
            "file": "beat.head.npz",
            "weight_key": "W",
            "bias_key": "b",
            "embedding_dim": 8,
            "n_classes": 2,
        },
        "training": {"data": "mitdb", "split": "ds1", "seed": 0, "command": "medchain train"},
        "metrics": {"int8": {"per_class": {"N": {"se": 1.0}}}},
        "artifact": {"file": "beat.onnx", "size_bytes": 10, "sha256": "ab", "quantization": "int8"},
    }


def test_valid_card_round_trips(tmp_path: Path) -> None:
    # Prepare
    card = card_from_dict(minimal_card())
    path = tmp_path / "beat.card.json"
    # Execute
    save_card(card, path)
    loaded = load_card(path)
    # Assert
    assert loaded == card
    assert loaded.input_contract.window_samples == 96
    assert loaded.input_contract.features[0].unit == "s"
    assert json.loads(path.read_text())["input_contract"]["window_samples"] == 96
    assert card_to_dict(loaded)["classes"] == ["N", "S"]


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("input_contract", "sampling_rate_hz", "input_contract.sampling_rate_hz"),
        ("input_contract", "filter", "input_contract.filter"),
        ("training", "seed", "training.seed"),
        ("artifact", "sha256", "artifact.sha256"),
        ("", "classes", "classes"),
    ],
)
def test_incomplete_card_is_rejected(section: str, key: str, message: str) -> None:
    # Prepare
    raw = minimal_card()
    del (raw[section] if section else raw)[key]
    # Execute
    problems = validate_card(raw)
    # Assert
    assert any(message in p for p in problems)
    with pytest.raises(CorruptInputError, match="invalid model card"):
        card_from_dict(raw)


def test_card_without_probs_output_or_per_class_metrics_is_rejected() -> None:
    # Prepare
    raw = minimal_card()
    raw["onnx"]["outputs"] = [{"name": "logits", "shape": ["N", 2]}]
    raw["metrics"] = {"int8": {"accuracy": 0.9}}
    # Execute
    problems = validate_card(raw)
    # Assert
    assert "onnx.outputs must include 'probs'" in problems
    assert "metrics.int8 needs per_class" in problems


def test_load_card_errors_are_clear(tmp_path: Path) -> None:
    # Prepare
    bad = tmp_path / "bad.card.json"
    bad.write_text("{not json")
    # Execute / Assert
    with pytest.raises(CorruptInputError, match="not valid JSON"):
        load_card(bad)
    with pytest.raises(DataNotFoundError, match="missing.card.json"):
        load_card(tmp_path / "missing.card.json")


def test_card_path_is_beside_the_model() -> None:
    assert card_path_for(Path("/m/beat.onnx")) == Path("/m/beat.card.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(raw=json_values)
def test_validate_card_never_crashes_on_arbitrary_json(raw: Any) -> None:
    problems = validate_card(raw)
    assert isinstance(problems, list)
    assert problems  # nothing random is a complete card


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    section=st.sampled_from(["input_contract", "onnx", "training", "metrics", "head"]),
    value=json_values,
)
def test_validate_card_handles_garbage_sections(section: str, value: Any) -> None:
    raw = minimal_card()
    raw[section] = value
    problems = validate_card(raw)
    if problems:
        with pytest.raises(CorruptInputError):
            card_from_dict(raw)
