"""MAP personal head: Newton fit with the global head as a Gaussian prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent import personal_head as ph
from edge_agent import personal_head_file as phf
from tests.support.invitations import invite


def _patient(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int64)
    centres = np.eye(3, 6) * 2.0 + 1.0
    return (centres[labels] + rng.normal(0, 0.6, (n, 6))).astype(np.float32), labels


def _objective_grad(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    p = ph.head_probs(x, w, b).astype(np.float64)
    g = p - np.eye(w.shape[0])[y]
    return g.T @ x + tau * (w - w0), g.sum(0) + tau * (b - b0)


def test_map_fit_reaches_a_stationary_point_of_the_objective() -> None:
    x, y = _patient(300, 0)
    w0, b0 = np.zeros((3, 6), np.float32), np.zeros(3, np.float32)
    w, b, it = ph.fit_map_head(x, y, w0, b0, tau=2.0, balance=0.0)
    gw, gb = _objective_grad(x, y, w, b, w0, b0, 2.0)
    assert it < 50
    assert np.abs(gw).max() < 1e-2 and np.abs(gb).max() < 1e-2


def test_prior_precision_trades_the_global_head_for_the_patient() -> None:
    x, y = _patient(300, 1)
    rng = np.random.default_rng(2)
    w0, b0 = rng.normal(0, 1, (3, 6)).astype(np.float32), np.zeros(3, np.float32)
    strong, _, _ = ph.fit_map_head(x, y, w0, b0, tau=1e5)
    weak, wb, _ = ph.fit_map_head(x, y, w0, b0, tau=0.1)
    assert np.abs(strong - w0).max() < 0.05
    global_acc = np.mean(np.argmax(ph.head_probs(x, w0, b0), 1) == y)
    assert np.mean(np.argmax(ph.head_probs(x, weak, wb), 1) == y) > max(0.95, global_acc + 0.2)


def test_a_class_the_patient_never_showed_loses_probability() -> None:
    x, y = _patient(300, 3)
    keep = y != 2
    w0, b0 = np.zeros((3, 6), np.float32), np.zeros(3, np.float32)
    head = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", x[keep], y[keep])
    assert head.n_examples == int(keep.sum())
    assert head.predict(x[~keep])[:, 2].mean() < 1 / 3


def test_no_labelled_beats_means_the_global_head() -> None:
    w0 = np.ones((3, 6), np.float32)
    b0 = np.arange(3, dtype=np.float32)
    head = ph.personalise(
        {ph.HEAD_W: w0, ph.HEAD_B: b0},
        "v1",
        np.zeros((0, 6), np.float32),
        np.zeros(0, np.int64),
    )
    assert head.n_examples == 0
    np.testing.assert_array_equal(head.weight, w0)
    np.testing.assert_array_equal(head.bias, b0)


def test_class_weights_balance_rare_classes() -> None:
    y = np.array([0] * 90 + [1] * 10, np.int64)
    w = ph.class_weights(y, 3, 1.0)
    assert w[2] == 0 and w[1] == pytest.approx(9 * w[0])
    assert float(np.mean(w[y])) == pytest.approx(1.0)


def test_non_positive_prior_precision_is_refused() -> None:
    x, y = _patient(10, 4)
    with pytest.raises(ValueError, match="tau"):
        ph.fit_map_head(x, y, np.zeros((3, 6)), np.zeros(3), tau=0.0)


# --- the global RR gate's rhythm evidence (edge_agent.rr_split) ---------------------------

# a gate on one feature (rr_pre / rr_local): S when the beat comes at < 0.8 of the local RR
GATE = {"weight": [-20.0], "bias": 20.0 * np.log(0.8), "n_index": 0, "s_index": 1, "floor": 1e-3}


def _sinus_patient(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings, labels (all N) and RR ratios around 1 of a patient's labelled minutes."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 1, (n, 6)).astype(np.float32)
    rr = rng.uniform(0.9, 1.1, (n, 1)).astype(np.float32)
    return emb, np.zeros(n, np.int64), rr


def test_a_patient_with_no_labelled_sveb_keeps_the_gates_premature_beats() -> None:
    # Prepare: a global head that never says S by itself (the net alone), only N beats labelled
    w0, b0 = np.zeros((3, 6), np.float32), np.array([2.0, -2.0, -2.0], np.float32)
    emb, labels, rr = _sinus_patient(300, 5)
    head = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", emb, labels, rr=rr, rr_gate=GATE)
    # Execute: later beats of the same morphology, premature (0.6) or not (1.0)
    later = emb[:2]
    probs = head.predict(later, rr=np.array([[0.6], [1.0]], np.float32))
    # Assert: the premature one is S as the global gate says; the usual one stays N
    assert np.argmax(probs, axis=1).tolist() == [1, 0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert head.predict(later)[0, 1] < 0.5  # the head alone had dropped that evidence


def test_the_rhythm_boundary_moves_past_the_patients_own_normal_beats() -> None:
    # a patient whose labelled normal beats reach rr ratio 0.7 (sinus arrhythmia)
    w0, b0 = np.zeros((3, 6), np.float32), np.array([2.0, -2.0, -2.0], np.float32)
    emb, labels, rr = _sinus_patient(300, 6)
    rr[:5] = 0.7
    head = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", emb, labels, rr=rr, rr_gate=GATE)
    probs = head.predict(emb[:3], rr=np.array([[0.72], [0.6], [1.0]], np.float32))
    assert np.argmax(probs, axis=1).tolist() == [0, 1, 0]
    assert head.rr_split is not None and head.rr_split.threshold > 0


def test_labelled_svebs_still_teach_the_head_beyond_the_rhythm() -> None:
    # SVEBs of this patient are NOT premature (MIT-BIH 232-like): only the head can learn them
    rng = np.random.default_rng(7)
    emb = rng.normal(0, 1, (400, 6)).astype(np.float32)
    labels = (rng.random(400) < 0.3).astype(np.int64)
    emb[labels == 1, 0] += 4.0
    rr = rng.uniform(0.9, 1.1, (400, 1)).astype(np.float32)
    w0, b0 = np.zeros((3, 6), np.float32), np.array([2.0, -2.0, -2.0], np.float32)
    head = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", emb, labels, rr=rr, rr_gate=GATE)
    pred = np.argmax(head.predict(emb, rr=rr), axis=1)
    assert np.mean(pred == labels) > 0.95


def test_the_rhythm_expert_survives_the_file(tmp_path: Path) -> None:
    w0, b0 = np.zeros((3, 6), np.float32), np.array([2.0, -2.0, -2.0], np.float32)
    emb, labels, rr = _sinus_patient(100, 8)
    head = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", emb, labels, rr=rr, rr_gate=GATE)
    phf.save_personal_head(head, tmp_path)
    back = phf.load_personal_head(tmp_path)
    assert back is not None and back.rr_split is not None and head.rr_split is not None
    assert back.rr_split.threshold == pytest.approx(head.rr_split.threshold)
    x = np.array([[0.6], [1.0]], np.float32)
    np.testing.assert_array_equal(back.predict(emb[:2], rr=x), head.predict(emb[:2], rr=x))


@pytest.mark.parametrize(
    "gate",
    [None, {"weight": [1.0]}, {**GATE, "weight": [float("nan")]}, {**GATE, "s_index": 0}, "x"],
)
def test_a_bad_or_missing_card_gate_means_the_head_alone(gate: object) -> None:
    w0, b0 = np.zeros((3, 6), np.float32), np.array([2.0, -2.0, -2.0], np.float32)
    emb, labels, rr = _sinus_patient(50, 9)
    head = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", emb, labels, rr=rr, rr_gate=gate)
    assert head.rr_split is None


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (json.dumps({"input_contract": {"parameters": {"rr_gate": GATE}}}).encode(), True),
        (b'{"input_contract": {"parameters": {}}}', False),
        (b"\xff not json", False),
        (b"[1, 2]", False),
        (b"", False),
    ],
)
def test_the_gate_of_a_release_card(raw: bytes, found: bool) -> None:
    assert (ph.card_rr_gate(raw) is not None) is found


def test_the_serving_classifier_applies_the_rhythm_expert() -> None:
    from common.errors import CorruptInputError
    from edge_agent.inference import OnnxBeatClassifier
    from edge_agent.rr_split import RRSplit

    model = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "beat.onnx"
    clf = OnnxBeatClassifier(model)
    gate = clf.card.input_contract.parameters["rr_gate"]
    rng = np.random.default_rng(10)
    windows = rng.normal(0, 1, (40, 2, 96)).astype(np.float32)
    rr = rng.uniform(0.4, 1.2, (40, 8)).astype(np.float32)
    emb = clf.embed(windows, rr)
    labels = np.zeros(40, np.int64)
    with np.load(model.with_name("beat.head.npz")) as z:
        glob = {ph.HEAD_W: z["W"], ph.HEAD_B: z["b"]}
    head = ph.personalise(glob, "v", emb, labels, rr=rr, rr_gate=gate)
    assert head.rr_split is not None
    clf.set_head(head.weight, head.bias, rr_split=head.rr_split)
    np.testing.assert_allclose(clf.predict(windows, rr), head.predict(emb, rr=rr), atol=1e-6)
    bad = RRSplit(np.zeros(3), 0.0, 0, 1)
    with pytest.raises(CorruptInputError, match="RR split"):
        clf.set_head(head.weight, head.bias, rr_split=bad)


def test_the_round_participant_keeps_the_release_cards_rhythm_evidence(tmp_path: Path) -> None:
    import dataclasses
    import hashlib
    import time

    from common import fl_protocol as fl
    from common import protocol as proto
    from edge_agent.federated import FederatedParticipant, NpzExamples
    from tests.cloud_aggregator.fl_support import K, initial_release, write_client_data

    # Prepare: a release whose card carries an RR gate over the tiny model's K RR features
    gate = {"weight": [-1.0] * K, "bias": 0.0, "n_index": 0, "s_index": 1}
    card = json.dumps({"input_contract": {"parameters": {"rr_gate": gate}}}).encode()
    release = initial_release()
    release = dataclasses.replace(
        release, version="v3", files={**release.files, "model.card.json": card}
    )
    payload = fl.encode_model(release)
    write_client_data(tmp_path / "data", 1, n=120)
    p = FederatedParticipant(
        "sim-000", NpzExamples(tmp_path / "data" / "sim-000.npz"), tmp_path / "work"
    )
    now = time.time_ns()
    sha = hashlib.sha256(payload).hexdigest()
    announce = fl.RoundAnnouncement(
        "1", "g1", 1, 5, 0, "v3", sha, now + 60 * 10**9, now, invite(["sim-000"]), fl.RoundConfig()
    )
    # Execute
    p.on_message(proto.model_topic("v3"), payload)
    p.on_message(proto.round_current_topic(), fl.encode_round(announce))
    p.poll()
    # Assert
    head = phf.load_personal_head(tmp_path / "work")
    assert head is not None and head.rr_split is not None
    np.testing.assert_array_equal(head.rr_split.weight, gate["weight"])


def test_the_labelled_minutes_decide_s_in_af_for_the_patient(tmp_path: Path) -> None:
    # Prepare: 60 labelled beats, the first 30 in stretches the rhythm monitor called AF
    w0, b0 = np.zeros((3, 6), np.float32), np.zeros(3, np.float32)
    emb, _ = _patient(60, 11)
    in_af = [True] * 30 + [False] * 30
    classes = ["N", "S", "V"]
    af_normal = np.array([0] * 30 + [1, 2] * 15, np.int64)  # N in AF: the AF is confirmed
    ectopy = np.array([0, 1] * 30, np.int64)  # S in the "AF" stretches: frequent ectopy
    heads = {
        name: ph.personalise(
            {ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", emb, y, classes=classes, in_af=in_af
        )
        for name, y in (("af", af_normal), ("ectopy", ectopy))
    }
    no_flags = ph.personalise({ph.HEAD_W: w0, ph.HEAD_B: b0}, "v1", emb, af_normal)
    # Execute
    phf.save_personal_head(heads["af"], tmp_path)
    back = phf.load_personal_head(tmp_path)
    # Assert
    assert heads["af"].s_in_af_as_n and not heads["ectopy"].s_in_af_as_n
    assert not no_flags.s_in_af_as_n  # no rhythm judgements: the default (off)
    assert back is not None and back.s_in_af_as_n


def test_a_head_file_from_before_the_s_in_af_decision_loads_with_it_off(tmp_path: Path) -> None:
    np.savez(
        tmp_path / phf.PERSONAL_HEAD_FILE,
        W=np.zeros((3, 6), np.float32),
        b=np.zeros(3, np.float32),
        base_version=np.str_("v1"),
        n=np.int64(10),
    )
    head = phf.load_personal_head(tmp_path)
    assert head is not None and not head.s_in_af_as_n and head.n_examples == 10


def test_the_round_participant_decides_s_in_af_from_the_devices_labelled_beats(
    tmp_path: Path,
) -> None:
    import dataclasses
    import hashlib
    import time

    from common import fl_protocol as fl
    from common import protocol as proto
    from edge_agent.federated import FederatedParticipant, NpzExamples
    from edge_agent.trainer import LabelledExamples
    from tests.cloud_aggregator.fl_support import C, initial_release, write_client_data

    # Prepare: the device's labelled beats, those in stretches called AF all labelled N
    class InAF:
        def __init__(self, inner: NpzExamples) -> None:
            self.inner = inner

        def labelled_examples(self, limit: int) -> LabelledExamples:
            ex = self.inner.labelled_examples(limit)
            return dataclasses.replace(ex, in_af=ex.labels == 0)

    write_client_data(tmp_path / "data", 1, n=120)
    classes = ["N", "S", "V", "F", "Q"][:C]
    heads = {}
    for name, examples in (
        ("flags", InAF(NpzExamples(tmp_path / "data" / "sim-000.npz"))),
        ("none", NpzExamples(tmp_path / "data" / "sim-000.npz")),
    ):
        work = tmp_path / name
        p = FederatedParticipant("sim-000", examples, work, classes=classes)
        release = initial_release()
        payload = fl.encode_model(release)
        now = time.time_ns()
        sha = hashlib.sha256(payload).hexdigest()
        announce = fl.RoundAnnouncement(
            "1", "g1", 1, 5, 0, "v0", sha, now + 60 * 10**9, now, invite(["sim-000"]),
            fl.RoundConfig(),
        )  # fmt: skip
        # Execute
        p.on_message(proto.model_topic("v0"), payload)
        p.on_message(proto.round_current_topic(), fl.encode_round(announce))
        p.poll()
        heads[name] = phf.load_personal_head(work)
    # Assert
    assert heads["flags"] is not None and heads["flags"].s_in_af_as_n
    assert heads["none"] is not None and not heads["none"].s_in_af_as_n
