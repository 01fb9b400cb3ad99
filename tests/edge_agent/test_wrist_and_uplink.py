"""Wrist monitor (PPG HR, falls, inactivity) and pure parts of the uplink."""

from __future__ import annotations

import numpy as np

from common.types import SignalChunk, StreamKind
from edge_agent.wrist import WristMonitor

NS = 1_000_000_000


def chunks(kind: StreamKind, x: np.ndarray, fs: float, n: int, t0: int = 0) -> list[SignalChunk]:
    return [
        SignalChunk(kind, fs, t0 + round(s * NS / fs), x[s : s + n], s)
        for s in range(0, x.shape[0], n)
    ]


def test_ppg_heart_rate_is_tracked_and_tachycardia_reported() -> None:
    # Prepare: 3 min of 2 Hz (120 bpm) pulse at 64 Hz with still ACC
    fs = 64.0
    t = np.arange(int(180 * fs)) / fs
    ppg = np.sin(2 * np.pi * 2.0 * t)[:, None]
    acc = np.tile([0.0, 0.0, 1000.0], (t.size, 1))
    mon = WristMonitor("w")
    # Execute
    events = []
    for a, p in zip(
        chunks(StreamKind.ACC, acc, fs, 64), chunks(StreamKind.PPG, ppg, fs, 64), strict=True
    ):
        events += mon.process(a) + mon.process(p)
    events += mon.flush()
    # Assert
    assert mon.hr and abs(mon.hr[-1][1].bpm - 120) < 3
    assert [e.kind for e in events] == ["tachycardia"]
    assert events[0].details["source"] == "ppg"
    assert mon.activity_level == "sedentary"


def test_fall_and_inactivity_events() -> None:
    # Prepare: upright still, an impact, then lying still (gravity on x) for 20 s
    fs = 50.0
    up = np.tile([0.0, 0.0, 1000.0], (int(10 * fs), 1))
    impact = np.tile([2000.0, 0.0, 2500.0], (5, 1))
    lying = np.tile([1000.0, 0.0, 0.0], (int(20 * fs), 1))
    acc = np.vstack([up, impact, lying]) + np.random.default_rng(0).normal(
        0, 2, (len(up) + 5 + len(lying), 3)
    )
    mon = WristMonitor("w", inactivity_alert_s=15.0)
    # Execute
    events = [e for c in chunks(StreamKind.ACC, acc, fs, 25, t0=5 * NS) for e in mon.process(c)]
    # Assert
    kinds = [e.kind for e in events]
    assert "fall" in kinds and "inactivity" in kinds
    fall = next(e for e in events if e.kind == "fall")
    assert abs(fall.t_start_ns - (5 * NS + int(10 * NS))) < 0.5 * NS
    assert fall.details["orientation_change_deg"] > 60


def test_heart_rate_service_values_raise_bradycardia() -> None:
    # 60 s at 70 bpm then 60 s at 40 bpm then 60 s at 70 bpm, 1 Hz HRS values
    bpm = np.array([70.0] * 60 + [40.0] * 60 + [70.0] * 60)[:, None]
    mon = WristMonitor("w")
    events = [e for c in chunks(StreamKind.HR, bpm, 1.0, 10) for e in mon.process(c)]
    events += mon.flush()
    assert [e.kind for e in events] == ["bradycardia"]
    assert events[0].details["source"] == "hrs"
