"""The patient's VEB template gate: lagged correlation, threshold, Q instead of V."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import beat_quality as bq
from edge_agent import personal_head as ph
from edge_agent import personal_head_file as phf
from edge_agent.inference import OnnxBeatClassifier
from tests.edge_agent.helpers import CLASSES, EMB, SPEC, build_beat_model

V, Q = CLASSES.index("V"), CLASSES.index("Q")
L = 96


def _smooth(n: int, seed: int) -> np.ndarray:
    """A random smooth signal (cumulated noise), length n."""
    return np.cumsum(np.random.default_rng(seed).normal(0, 1, n))


def _probs(rows: list[int]) -> np.ndarray:
    """Probabilities with argmax ``rows[i]`` (0.6 there, the rest shared)."""
    p = np.full((len(rows), len(CLASSES)), 0.1, np.float32)
    p[np.arange(len(rows)), rows] = 0.6
    return p


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    gain=st.floats(0.01, 100.0),
    offset=st.floats(-1e3, 1e3),
)
def test_correlation_ignores_gain_and_offset_and_stays_in_range(
    seed: int, gain: float, offset: float
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (4, L))
    t = rng.normal(0, 1, (3, L))
    c = bq.lagged_correlation(x, t)
    assert c.shape == (4, 3)
    assert np.all(np.abs(c) <= 1.0)
    np.testing.assert_allclose(bq.lagged_correlation(gain * x + offset, t), c, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.integers(-bq.MAX_LAG, bq.MAX_LAG))
def test_a_beat_shifted_within_the_lag_matches_its_template(seed: int, shift: int) -> None:
    sig = _smooth(3 * L, seed)
    template = sig[L : 2 * L]
    window = sig[L + shift : 2 * L + shift]
    assert bq.template_similarity(window[None], template[None])[0] == pytest.approx(1.0)


def test_shift_beyond_the_lag_does_not_fit() -> None:
    with pytest.raises(ValueError, match="max_lag"):
        bq.lagged_correlation(np.zeros((1, 6)), np.zeros((1, 6)), max_lag=3)


def test_threshold_is_the_cap_or_the_labelled_vebs_own_spread() -> None:
    rng = np.random.default_rng(0)
    beat = _smooth(L, 1)
    same = beat + rng.normal(0, 0.01, (5, L))  # one VEB morphology
    labels = np.array([V] * 5 + [0], np.int64)
    windows = np.vstack([same, _smooth(L, 2)])
    gate = bq.fit_v_gate(windows, labels, V, Q, cap=0.6)
    assert gate is not None and gate.threshold == 0.6 and len(gate.templates) == 5
    multiform = np.vstack([same[:3], _smooth(L, 3)[None], _smooth(L, 4)[None]])
    lax = bq.fit_v_gate(multiform, np.full(5, V, np.int64), V, Q, cap=0.99)
    assert lax is not None
    assert lax.threshold == pytest.approx(bq.leave_one_out_similarity(multiform).min())
    assert lax.threshold < 0.99
    assert bq.fit_v_gate(windows[:2], np.array([V, 0], np.int64), V, Q) is None


def test_unlike_v_calls_become_q_and_nothing_else_moves() -> None:
    beat, other = _smooth(L, 5), _smooth(L, 6)
    gate = bq.VTemplateGate(np.vstack([beat, beat])[:, :].astype(np.float32), 0.9, V, Q)
    windows = np.vstack([beat, other, other])
    probs = _probs([V, V, 0])
    out = gate.apply(probs, windows)
    assert list(out.argmax(1)) == [V, Q, 0]
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[[0, 2]], probs[[0, 2]])
    assert out[1, V] == 0.0


def test_personal_head_keeps_its_gate_on_disk_and_serves_it(tmp_path: Path) -> None:
    # Prepare: a head that calls everything V, a gate from two labelled VEBs of one shape
    beat, other = _smooth(SPEC.window_len, 7), _smooth(SPEC.window_len, 8)
    w = np.zeros((len(CLASSES), EMB), np.float32)
    b = np.array([0, 0, 5, 0, 0], np.float32)
    tmpl = np.vstack([beat, beat + 0.01]).astype(np.float32)
    head = ph.PersonalHead(w, b, "g1", 2, bq.fit_v_gate(tmpl, np.full(2, V, np.int64), V, Q))
    windows = np.vstack([beat, other]).astype(np.float32)

    # Execute
    phf.save_personal_head(head, tmp_path)
    loaded = phf.load_personal_head(tmp_path)
    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    assert loaded is not None
    clf.set_head(loaded.weight, loaded.bias, gate=loaded.v_gate)
    served = clf.predict(windows, np.ones((2, len(SPEC.rr_features)), np.float32))

    # Assert
    assert loaded.v_gate is not None and head.v_gate is not None
    np.testing.assert_array_equal(loaded.v_gate.templates, head.v_gate.templates)
    assert loaded.v_gate.threshold == head.v_gate.threshold
    emb = np.zeros((2, EMB), np.float32)
    assert list(loaded.predict(emb, windows).argmax(1)) == [V, Q]
    assert list(loaded.predict(emb).argmax(1)) == [V, V]  # no windows: no gate
    assert list(served.argmax(1)) == [V, Q]


def test_personalise_builds_the_gate_only_with_windows_and_classes() -> None:
    rng = np.random.default_rng(9)
    labels = np.array([0] * 20 + [V] * 4, np.int64)
    emb = rng.normal(0, 1, (24, EMB)).astype(np.float32)
    windows = rng.normal(0, 1, (24, L)).astype(np.float32)
    glob = {ph.HEAD_W: np.zeros((5, EMB), np.float32), ph.HEAD_B: np.zeros(5, np.float32)}
    assert ph.personalise(glob, "g", emb, labels).v_gate is None
    gated = ph.personalise(glob, "g", emb, labels, windows=windows, classes=CLASSES)
    assert gated.v_gate is not None and len(gated.v_gate.templates) == 4
    assert (gated.v_gate.v, gated.v_gate.q) == (V, Q)


def test_the_round_participant_stores_the_gate_it_serves(tmp_path: Path) -> None:
    # Prepare: the real device participant, told the model's classes, in a round
    import hashlib

    from common import fl_protocol as fl
    from common import protocol as proto
    from edge_agent.federated import FederatedParticipant, NpzExamples
    from tests.cloud_aggregator.fl_support import initial_release, write_client_data
    from tests.edge_agent.test_federated import _announce

    write_client_data(tmp_path / "data", 1, n=200)
    examples = NpzExamples(tmp_path / "data" / "sim-000.npz")
    p = FederatedParticipant("sim-000", examples, tmp_path / "work", classes=CLASSES)
    model = fl.encode_model(dataclasses.replace(initial_release(), version="v3"))
    p.on_message(f"{proto.model_topic('v3')}/0", fl.split_message(model, "m", 1 << 20)[0])
    p.on_message(
        proto.round_current_topic(), _announce(("sim-000",), hashlib.sha256(model).hexdigest())
    )

    # Execute
    p.poll()
    head = phf.load_personal_head(tmp_path / "work")

    # Assert
    data = examples.labelled_examples(1000)
    n_v = int(np.sum(data.labels == V))
    assert n_v >= bq.MIN_TEMPLATES
    assert head is not None and head.v_gate is not None
    assert len(head.v_gate.templates) == min(n_v, bq.MAX_TEMPLATES)


def test_a_gate_for_other_windows_is_refused(tmp_path: Path) -> None:
    from common.errors import CorruptInputError

    clf = OnnxBeatClassifier(build_beat_model(tmp_path / "m"))
    w = np.zeros((len(CLASSES), EMB), np.float32)
    gate = bq.VTemplateGate(np.zeros((2, SPEC.window_len + 4), np.float32), 0.5, V, Q)
    with pytest.raises(CorruptInputError, match="gate"):
        clf.set_head(w, np.zeros(len(CLASSES), np.float32), gate=gate)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_personal_head_file_falls_back_to_the_global_head(
    tmp_path: Path, damage: str
) -> None:
    # Prepare: a power cut left the head file empty or cut short (np.load raised EOFError or
    # BadZipFile, which stopped `medchain edge --federated` from starting on every restart)
    head = ph.PersonalHead(np.zeros((len(CLASSES), EMB), np.float32),
                           np.zeros(len(CLASSES), np.float32), "g1", 2)  # fmt: skip
    path = phf.save_personal_head(head, tmp_path)
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    # Execute / Assert
    assert phf.load_personal_head(tmp_path) is None
