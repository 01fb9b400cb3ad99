"""Load-time check of onnxruntime's fused int8 kernels against the model's reference arithmetic."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.errors import CorruptInputError
from common.model_card import card_path_for, load_card
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.kernel_check import KERNEL_GAP_LIMIT, kernel_gap, probe_feed
from tests.edge_agent.helpers import build_beat_model

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "beat.onnx"


class _Shifted:
    """A stand-in for the agent's session whose ``probs`` are the reference's plus ``shift``."""

    def __init__(self, path: Path, shift: float) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._shift = shift

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[Any]:
        return [np.asarray(self._session.run(names, feed)[0]) + self._shift]


def test_the_shipped_model_computes_the_same_fused_on_this_cpu(tmp_path: Path) -> None:
    # Execute: the agent's own load (7-bit weights: no int16 saturation on any x86 CPU), and a
    # float model's
    clf = OnnxBeatClassifier(SHIPPED)
    float_clf = OnnxBeatClassifier(build_beat_model(tmp_path))
    # Verify
    assert clf.kernel_gap < KERNEL_GAP_LIMIT and float_clf.kernel_gap < KERNEL_GAP_LIMIT


def test_a_failing_check_is_a_one_line_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path, card: object, fused: object) -> float:
        raise RuntimeError("reference session failed\nsecond line")

    monkeypatch.setattr("edge_agent.inference.kernel_gap", broken)
    with pytest.raises(CorruptInputError, match="kernel check failed: reference session failed$"):
        OnnxBeatClassifier(SHIPPED)


def test_a_gap_beyond_rounding_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare
    card = load_card(card_path_for(SHIPPED))
    # Execute
    with caplog.at_level(logging.WARNING, logger="edge_agent.kernel_check"):
        small = kernel_gap(SHIPPED, card, _Shifted(SHIPPED, 0.001))
        large = kernel_gap(SHIPPED, card, _Shifted(SHIPPED, 0.3))
    # Verify: only the large one warns, and says what to do
    assert small == pytest.approx(0.001, abs=1e-6) and large == pytest.approx(0.3, abs=1e-6)
    assert small < KERNEL_GAP_LIMIT < large
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge_agent.kernel_check"]
    assert len(warnings) == 1 and "medchain narrow-weights" in warnings[0]


def test_probe_follows_the_card_shapes() -> None:
    card = load_card(card_path_for(SHIPPED))
    feed = probe_feed(card)
    signal, rr = (feed[t.name] for t in card.onnx.inputs)
    assert signal.shape == (64, 2, 96) and rr.shape == (64, 8)
    assert rr.min() >= 0.4 and rr.max() <= 1.6
    assert all(
        np.array_equal(a, b) for a, b in zip(feed.values(), probe_feed(card).values(), strict=True)
    )
