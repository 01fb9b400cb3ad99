"""The quality gate: beats wait for their signal's judgement; unreadable ones go on as Q."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.types import BeatPrediction
from edge_agent.pipeline import BeatBatch, empty_batch
from edge_agent.quality_gate import QualityGate


def _beats(samples: list[int], label: str = "V") -> tuple[list[BeatPrediction], BeatBatch]:
    beats = [BeatPrediction("d", s * 1000, s, label, {label: 1.0}, "m1", 0.8) for s in samples]
    n = len(samples)
    batch = BeatBatch(
        np.array(samples, np.int64), np.arange(n * 4, dtype=np.float32).reshape(n, 1, 4),
        np.zeros((n, 2), np.float32), np.full(n, 0.8),
    )  # fmt: skip
    return beats, batch


def test_beats_wait_for_their_judgement_and_noise_becomes_q() -> None:
    # Prepare
    gate = QualityGate("d")
    gate.seen(1000, 100.0)
    beats, batch = _beats([100, 600, 1100, 1600])
    # Execute: nothing judged yet, then [0, 1000) readable, [1000, 2000) unreadable
    first = gate.hold(beats, batch)
    gate.judge(0, 1000, noisy=False)
    second = gate.hold([], empty_batch())
    gate.judge(1000, 2000, noisy=True)
    third = gate.hold([], empty_batch())
    # Assert
    assert first[0] == [] and len(first[1]) == 0
    assert [b.label for b in second[0]] == ["V", "V"] and second[1].samples.tolist() == [100, 600]
    assert [b.label for b in third[0]] == ["Q", "Q"] and all(math.isnan(b.rr_s) for b in third[0])
    assert third[0][0].probs == {"V": 1.0} and third[1].windows[0, 0, 0] == 8.0
    assert (gate.stats.released, gate.stats.unreadable, gate.stats.unjudged) == (4, 2, 0)
    # the unreadable stretch is told, once, when it ends
    assert gate.take_events() == []
    gate.flush()
    (event,) = gate.take_events()
    assert event.kind == "unreadable_signal" and (event.t_start_ns, event.t_end_ns) == (
        1_100_000,
        1_600_000,
    )
    assert event.details == {"beats": 2, "ventricular_beats": 2, "rate_bpm": 75.0}
    assert gate.take_events() == []


def test_beats_held_too_long_go_on_unjudged_and_flush_releases_all() -> None:
    # Prepare: a monitor that stopped judging; 40 s of hold at 100 Hz
    gate = QualityGate(max_hold_s=40.0)
    beats, batch = _beats([100, 3000, 5000])
    gate.hold(beats, batch)
    # Execute
    gate.seen(100 + 4000 + 1, 100.0)
    late = gate.hold([], empty_batch())
    rest = gate.flush()
    # Assert
    assert [b.sample for b in late[0]] == [100] and late[0][0].label == "V"
    assert [b.sample for b in rest[0]] == [3000, 5000] and len(rest[1]) == 2
    assert gate.stats.unjudged == 3 and gate.hold([], empty_batch())[0] == []


def test_beats_without_model_inputs_are_released_without_them() -> None:
    # Prepare: the first beats come without inputs (a front end that dropped them)
    gate = QualityGate()
    b1, _ = _beats([10, 20])
    b2, batch2 = _beats([30])
    gate.judge(0, 100, noisy=False)
    # Execute
    out1 = gate.hold(b1, empty_batch())
    gate.judge(0, 10, noisy=True)  # a later judgement of a released stretch changes nothing
    out2 = gate.hold(b2, batch2)
    # Assert
    assert [b.sample for b in out1[0]] == [10, 20] and len(out1[1]) == 0
    assert [b.sample for b in out2[0]] == [30] and len(out2[1]) == 1


def test_s_in_af_becomes_n_only_when_the_patient_is_set_up_for_it() -> None:
    # Prepare: two S beats in a stretch judged AF, one in a readable non-AF one, one in noise
    runs = {}
    for as_n in (False, True):
        gate = QualityGate("d", s_in_af_as_n=as_n)
        gate.seen(3000, 100.0)
        beats, batch = _beats([100, 600, 1100, 2100], label="S")
        gate.hold(beats, batch)
        # Execute
        gate.judge(0, 1000, noisy=False, af=True)
        gate.judge(1000, 2000, noisy=False)
        gate.judge(2000, 3000, noisy=True, af=True)
        released, _ = gate.hold([], empty_batch())
        runs[as_n] = (released, gate.stats.s_in_af)
    # Assert
    assert [b.label for b in runs[False][0]] == ["S", "S", "S", "Q"] and runs[False][1] == 0
    as_n = runs[True][0]
    assert [b.label for b in as_n] == ["N", "N", "S", "Q"] and runs[True][1] == 2
    assert as_n[0].rr_s == 0.8 and as_n[0].probs == {"S": 1.0}  # the model's output is kept


def test_gated_labels_of_a_finished_stream_match_the_gate() -> None:
    from edge_agent.quality_gate import Judgement, gated_labels

    judgements = [Judgement(0, 10, False, True), Judgement(10, 20, True), Judgement(0, 5, False)]
    got, noisy = gated_labels([1, 7, 12, 25], ["S", "S", "V", "S"], judgements, True)
    assert got == ["S", "N", "Q", "S"]  # a later judgement of a sample wins; unjudged: as is
    assert noisy == [False, False, True, False]
    assert gated_labels([7], ["S"], judgements)[0] == ["S"]  # the rule off: S stays


def test_the_edge_setting_from_the_environment_turns_the_rule_on() -> None:
    from common.config import load_settings
    from edge_agent.app import load_rhythm
    from edge_agent.config import EdgeSettings

    labels = {}
    for value in ("0", "1"):
        env = {"MEDCHAIN_EDGE_S_IN_AF_AS_N": value}
        settings = load_settings(EdgeSettings, env=env, prefix="MEDCHAIN_EDGE")
        loaded = load_rhythm(settings)  # the packaged v2 rhythm model and its gate
        assert loaded is not None and loaded[1] is not None
        monitor, gate = loaded
        assert monitor.gate is gate
        gate.seen(1000, 100.0)
        gate.hold(*_beats([100], label="S"))
        gate.judge(0, 1000, noisy=False, af=True)
        labels[value] = [b.label for b in gate.hold([], empty_batch())[0]]
    assert labels == {"0": ["S"], "1": ["N"]}


@pytest.mark.parametrize(
    ("labels", "in_af", "confirmed"),
    [
        (["N"] * 30, [True] * 30, True),  # AF the patient's labels confirm
        (["N"] * 19 + ["S"] * 10, [True] * 19 + [False] * 10, False),  # too few beats in AF
        (["N"] * 28 + ["S"] * 2, [True] * 30, False),  # 2 of 30 S: 6.7 % >= 5 %
        (["N"] * 39 + ["S"], [True] * 40, True),  # one S at a stretch's edge: 2.5 %
        (["N", "S"] * 20, [True] * 40, False),  # frequent atrial ectopy taken for AF (232)
        ([], [], False),
    ],
)
def test_the_patients_labels_decide_whether_s_in_af_may_become_n(
    labels: list[str], in_af: list[bool], confirmed: bool
) -> None:
    from edge_agent.quality_gate import s_in_af_confirmed

    assert s_in_af_confirmed(labels, in_af) is confirmed


def test_af_flags_of_beats_are_their_readable_stretches_af_calls() -> None:
    from edge_agent.quality_gate import Judgement, af_flags

    judgements = [Judgement(0, 10, False, True), Judgement(10, 20, True, True)]
    assert af_flags([1, 12, 25], judgements) == [True, False, False]  # noisy or unjudged: no


def test_released_beats_say_whether_their_stretch_was_called_af() -> None:
    # Prepare: the patient's personal head turned the rule on (edge_agent.participation)
    gate = QualityGate("d")
    gate.set_patient_rule(True)
    beats, batch = _beats([100, 600, 1100], label="S")
    gate.hold(beats, batch)
    # Execute
    gate.judge(0, 1000, noisy=False, af=True)
    gate.judge(1000, 2000, noisy=False)
    released, _ = gate.hold([], empty_batch())
    # Assert
    assert [b.in_af for b in released] == [True, True, False]
    assert [b.label for b in released] == ["N", "N", "S"] and gate.stats.s_in_af == 2
