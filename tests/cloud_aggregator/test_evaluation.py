"""Round evaluation scores what a device serves: the head's softmax, the card's RR gate and
template veto."""

from __future__ import annotations

import json

import numpy as np

from cloud_aggregator.evaluation import (
    HeadEvaluator,
    card_rr_gate,
    release_veto,
    summary_metrics,
)
from common.fl_protocol import ModelRelease
from models.rr_gate import RRGate
from models.template_veto import TemplateVeto

CLASSES = ["N", "S", "V", "F", "Q"]


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings (the head calls every beat N or V), labels, RR features (premature = S)."""
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.choice([0, 1, 2], size=n, p=[0.6, 0.2, 0.2]).astype(np.int64)
    emb = np.zeros((n, 2), np.float32)
    emb[:, 0] = np.where(labels == 2, -2.0, 2.0) + rng.normal(0, 0.3, n)
    emb[:, 1] = rng.normal(0, 1, n)
    rr = np.ones((n, 2), np.float32)
    rr[labels == 1] = 0.6  # SVEBs come early: rr_pre / rr_local 0.6
    return emb, labels, rr


def _release(card: bytes | None) -> ModelRelease:
    w = np.zeros((5, 2), np.float32)
    w[0, 0], w[2, 0] = 2.0, -2.0  # N for emb[0] > 0, V below; never S
    files = {} if card is None else {"model.card.json": card}
    return ModelRelease("v1", 1, {"head.weight": w, "head.bias": np.zeros(5, np.float32)}, files)


GATE = RRGate(np.array([-8.0, 0.0]), -1.0, 0, 1)  # S when log(rr_pre ratio) << 0


def _card(gate: RRGate) -> bytes:
    return json.dumps({"input_contract": {"parameters": {"rr_gate": gate.to_dict()}}}).encode()


def test_round_metrics_apply_the_cards_rr_gate_like_the_served_model() -> None:
    # Prepare
    emb, labels, rr = _data()
    evaluator = HeadEvaluator(
        emb, labels, CLASSES, {"beat": np.zeros((len(labels), 1, 4), np.float32), "rr": rr}
    )
    release = _release(_card(GATE))
    # Execute
    metrics = evaluator(release)
    # Verify: same as head -> softmax -> gate computed by hand; the gate finds the SVEBs
    logits = emb.astype(np.float64) @ release.tensors["head.weight"].T.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    expected = np.argmax(GATE.apply(p / p.sum(1, keepdims=True), rr), axis=1).astype(np.int64)
    np.testing.assert_equal(metrics, summary_metrics(labels, expected, CLASSES))  # NaN == NaN
    assert metrics["se_S"] > 0.95 and metrics["ppv_S"] > 0.95
    head_only = HeadEvaluator(emb, labels, CLASSES)(release)  # no RR features: head only
    assert head_only["se_S"] == 0.0 and metrics["macro_f1"] > head_only["macro_f1"]


def test_releases_without_a_usable_gate_are_scored_on_the_head_alone() -> None:
    # Prepare: no card, unparsable cards, and gates that parse but do not fit the data
    emb, labels, rr = _data()
    evaluator = HeadEvaluator(emb, labels, CLASSES, {"rr": rr})
    good = GATE.to_dict()
    misfits = [
        {"weight": [1.0]},  # missing fields
        {**good, "weight": [1.0, 2.0, 3.0]},  # 3 weights for 2 RR features
        {**good, "s_index": 9},  # no such class
        {**good, "s_index": 0},  # N and S the same column
        {**good, "bias": float("nan")},
        {**good, "v_weight": [1.0], "v_index": 2, "v_bias": 0.0},  # V expert of the wrong size
    ]
    cards: list[bytes | None] = [None, b"{}", b"not json"]
    cards += [json.dumps({"input_contract": {"parameters": {}}}).encode()]
    cards += [_card_dict(m) for m in misfits]
    cards += [_card_dict(good).replace(b'"s_index": 1', b'"s_index": 1e400')]  # int(inf)
    # Execute
    scored = [evaluator(_release(c)) for c in cards]
    # Verify
    assert all(card_rr_gate(_release(c), 5, 2) is None for c in cards)
    assert card_rr_gate(_release(_card(GATE)), 5, 2) is not None
    assert card_rr_gate(_release(_card(GATE)), 5, None) is None  # nothing to apply it to
    for m in scored[1:]:
        np.testing.assert_equal(m, scored[0])
    assert scored[0]["se_S"] == 0.0


def _card_dict(gate: dict[str, object]) -> bytes:
    return json.dumps({"input_contract": {"parameters": {"rr_gate": gate}}}).encode()


VETO = TemplateVeto(0.5, 2, 4)


def _veto_beats(labels: np.ndarray) -> np.ndarray:
    """Beats whose template channel is flat for half of the VEBs (a VEB run become the template)."""
    beat = np.zeros((len(labels), 2, 4), np.float32)
    beat[:, 1] = 1.0
    usual = (labels == 2) & (np.arange(len(labels)) % 2 == 0)
    beat[usual, 1] = 0.1
    return beat


def test_round_metrics_apply_the_cards_template_veto_after_the_gate() -> None:
    # Prepare
    emb, labels, rr = _data()
    beat = _veto_beats(labels)
    evaluator = HeadEvaluator(emb, labels, CLASSES, {"beat": beat, "rr": rr})
    params = {"rr_gate": GATE.to_dict(), "template_veto": VETO.to_dict()}
    release = _release(json.dumps({"input_contract": {"parameters": params}}).encode())
    # Execute
    metrics = evaluator(release)
    # Verify: head -> softmax -> gate -> veto by hand; the vetoed VEBs are served as Q
    logits = emb.astype(np.float64) @ release.tensors["head.weight"].T.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    served = VETO.apply(GATE.apply(p / p.sum(1, keepdims=True), rr), beat)
    expected = np.argmax(served, axis=1).astype(np.int64)
    np.testing.assert_equal(metrics, summary_metrics(labels, expected, CLASSES))
    assert (expected == 4).sum() > 0 and metrics["se_V"] < 0.6


def test_a_template_veto_that_does_not_fit_is_not_applied() -> None:
    # Prepare: unreadable vetoes, classes or channels the data lacks
    emb, labels, rr = _data()
    beat = _veto_beats(labels)
    good = VETO.to_dict()
    bad: list[object] = [
        {"rms_below": 0.5},
        {**good, "q_index": 7},
        {**good, "channel": 3},
        {**good, "rms_below": "x"},
        {**good, "v_index": 4},
        {**good, "rms_below": 1e200},  # rms ** 2 * L would overflow
        "not an object",
        [0.5, 2, 4],
    ]
    evaluator = HeadEvaluator(emb, labels, CLASSES, {"beat": beat, "rr": rr})
    plain = evaluator(_release(None))
    # Execute
    for veto in bad:
        card = json.dumps({"input_contract": {"parameters": {"template_veto": veto}}}).encode()
        # Verify: scored as the head alone, no exception
        assert release_veto(_release(card), 5, 2) is None
        np.testing.assert_equal(evaluator(_release(card)), plain)
    ok = json.dumps({"input_contract": {"parameters": {"template_veto": good}}}).encode()
    assert release_veto(_release(ok), 5, 2) == VETO
    assert release_veto(_release(ok), 5, 1) is None  # one-channel beats: no template channel
