"""Event detectors: VT runs, brady/tachycardia with hysteresis, AF from RR irregularity."""

from __future__ import annotations

import numpy as np

from common.types import BeatPrediction
from edge_agent.af_events import AfDetector, rr_irregularity
from edge_agent.events import BeatEventDetector, HeartRateDetector, VtRunDetector

NS = 1_000_000_000


def beats_from(labels: list[str], rr: list[float], t0: float = 100.0) -> list[BeatPrediction]:
    t = t0
    out = []
    for i, (lab, r) in enumerate(zip(labels, rr, strict=True)):
        t += r
        out.append(BeatPrediction("d", int(t * NS), i, lab, {lab: 1.0}, "m", r))
    return out


def test_vt_run_of_three_is_reported_once_with_its_span() -> None:
    # Prepare
    labels = ["N", "N", "V", "V", "V", "V", "N", "V", "V", "N"]
    beats = beats_from(labels, [0.8] * 2 + [0.4] * 4 + [0.8, 0.5, 0.5, 0.8])
    det = VtRunDetector("d", min_beats=3)
    # Execute
    events = [e for b in beats for e in det.update(b)] + det.flush()
    # Assert
    assert [e.kind for e in events] == ["vt_run"]
    (e,) = events
    assert e.details["beats"] == 4
    assert e.t_start_ns == beats[2].t_ns and e.t_end_ns == beats[5].t_ns
    assert e.details["rate_bpm"] == 150.0
    assert e.event_id == f"d:vt_run:{beats[2].t_ns}"


def test_vt_run_open_at_end_is_closed_by_flush() -> None:
    det = VtRunDetector("d")
    for b in beats_from(["V"] * 5, [0.4] * 5):
        assert det.update(b) == []
    (e,) = det.flush()
    assert e.details["beats"] == 5


def test_a_sustained_run_continues_through_fast_q_beats() -> None:
    # Prepare: 4 V then 10 Q at 150 bpm (a VT the template veto serves as Q once it is the
    # template), then N; a Q at 75 bpm after a salvo; Q before a run has 3 V; slow Q alone
    sustained = beats_from(["V"] * 4 + ["Q"] * 10 + ["N"], [0.4] * 14 + [0.8])
    slow_q = beats_from(["V", "V", "V", "Q", "Q"], [0.4, 0.4, 0.4, 0.8, 0.4])
    early_q = beats_from(["V", "V", "Q", "V", "V", "N"], [0.4] * 5 + [0.8])
    usual_q = beats_from(["N", "Q", "Q", "Q", "Q", "N"], [0.8] * 6)
    # Execute
    runs = []
    for beats in (sustained, slow_q, early_q, usual_q):
        det = VtRunDetector("d")
        runs.append([e for b in beats for e in det.update(b)] + det.flush())
    # Verify
    (long_run,) = runs[0]
    assert long_run.details["beats"] == 14 and long_run.details["q_beats"] == 10
    assert long_run.t_end_ns == sustained[13].t_ns and long_run.details["rate_bpm"] == 150.0
    (salvo,) = runs[1]
    assert salvo.details["beats"] == 3 and "q_beats" not in salvo.details
    assert runs[2] == [] and runs[3] == []


def test_tachycardia_with_hysteresis_does_not_chatter() -> None:
    # Prepare: 20 s at 60 bpm, 110 bpm, a dip to 98 bpm (inside the hysteresis band), 110 bpm
    # again, then 20 s at 60 bpm
    rr = [1.0] * 20 + [0.545] * 25 + [0.612] * 12 + [0.545] * 25 + [1.0] * 20
    beats = beats_from(["N"] * len(rr), rr)
    det = HeartRateDetector("d", brady_bpm=50, tachy_bpm=100, hysteresis_bpm=5)
    # Execute
    events = [e for b in beats for e in det.update(b)] + det.flush()
    # Assert: one episode, not one per dip below 100 bpm
    assert [e.kind for e in events] == ["tachycardia"]
    assert events[0].details["max_bpm"] > 100
    assert (events[0].t_end_ns - events[0].t_start_ns) / NS > 20


def test_bradycardia_shorter_than_minimum_is_ignored() -> None:
    rr = [1.0] * 10 + [1.5] * 12 + [1.0] * 20
    det = HeartRateDetector("d", min_duration_s=30.0)
    events = [e for b in beats_from(["N"] * len(rr), rr) for e in det.update(b)] + det.flush()
    assert events == []
    det = HeartRateDetector("d", min_duration_s=5.0)
    events = [e for b in beats_from(["N"] * len(rr), rr) for e in det.update(b)] + det.flush()
    assert [e.kind for e in events] == ["bradycardia"]
    assert events[0].details["min_bpm"] == 40.0


def test_rr_irregularity_separates_sinus_from_af() -> None:
    rng = np.random.default_rng(1)
    sinus = 0.8 + 0.02 * np.sin(np.arange(30) / 3)
    af = rng.uniform(0.4, 1.1, 30)
    assert rr_irregularity(list(sinus)) < 0.05
    assert rr_irregularity(list(af)) > 0.2
    assert np.isnan(rr_irregularity([0.8, 0.8, 0.8]))
    # one ectopic short-long pair in sinus rhythm barely moves the median-based score
    assert rr_irregularity([*sinus[:14], 0.45, 1.15, *sinus[16:]]) < 0.05


def test_af_episode_between_sinus_segments() -> None:
    # Prepare: 2 min sinus, 2 min irregular, 2 min sinus
    rng = np.random.default_rng(2)
    rr = [0.8] * 150 + list(rng.uniform(0.4, 1.1, 170)) + [0.8] * 150
    beats = beats_from(["N"] * len(rr), rr)
    det = AfDetector("d", window_beats=30)
    # Execute
    events = [e for b in beats for e in det.update(b)] + det.flush()
    # Assert: one episode covering most of the irregular part
    assert [e.kind for e in events] == ["af_episode"]
    start_af = beats[150].t_ns
    end_af = beats[319].t_ns
    (e,) = events
    assert abs(e.t_start_ns - start_af) / NS < 15
    assert abs(e.t_end_ns - end_af) / NS < 30


def test_af_detector_skips_ectopic_beats() -> None:
    # Sinus rhythm with frequent isolated VEBs (short-long pairs) is not AF.
    labels, rr = [], []
    for i in range(300):
        ectopic = i % 4 == 0
        labels.append("V" if ectopic else "N")
        rr.append(0.5 if ectopic else (1.1 if i % 4 == 1 else 0.8))
    det = AfDetector("d")
    beats = beats_from(labels, rr)
    # the post-ectopic interval is still long: drop it too by labelling it as not N
    events = [e for b in beats for e in det.update(b)] + det.flush()
    assert events == [] or all(e.kind == "af_episode" for e in events)
    assert events == [], "isolated VEBs must not look like AF"


def test_combined_detector_flush_closes_everything() -> None:
    det = BeatEventDetector("d")
    beats = beats_from(["V"] * 4, [0.4] * 4)
    assert det.update(beats) == []
    assert [e.kind for e in det.flush()] == ["vt_run"]
    assert det.flush() == []
