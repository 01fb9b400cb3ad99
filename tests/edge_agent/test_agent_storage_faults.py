"""The agent keeps monitoring when its buffer fails (a full or failing SD card): beats are
still classified, alarms still raised, the failure counted and logged; the uplink keeps going."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from common.pred_payloads import decode_predictions
from common.types import BeatPrediction
from edge_agent.agent import EdgeAgent
from edge_agent.buffer import PRUNE_EVERY, SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.featurize import StreamingBeatFeaturizer
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.output import JsonlSink
from edge_agent.pipeline import EcgPipeline
from tests.edge_agent.helpers import (
    SPEC,
    FakeUplink,
    ListSource,
    ThresholdDetector,
    build_beat_model,
    chunks_of,
    synthetic_ecg,
)

FS = 360.0
RR = [0.8] * 15 + [0.45, 0.45, 0.45] + [1.0] + [0.8] * 15  # one run of three V beats


class FlakyBuffer(SqliteBuffer):
    """A buffer whose writes (or outbox reads) fail ``failures`` times: disk full."""

    def __init__(self, *args: Any, failing: str, failures: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing, self.failures = failing, failures

    def _maybe_fail(self, what: str) -> None:
        if what == self.failing and self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")

    def add(self, *args: Any, **kwargs: Any) -> None:
        self._maybe_fail("add")
        super().add(*args, **kwargs)

    def take_pending(self, limit: int) -> Any:
        self._maybe_fail("take")
        return super().take_pending(limit)


def _agent(tmp: Path, buffer: SqliteBuffer, uplink: FakeUplink | None) -> EdgeAgent:
    model = OnnxBeatClassifier(build_beat_model(tmp))
    settings = EdgeSettings(client_id="dev", flush_interval_s=0.02, pred_batch_max=7)
    pipe = EcgPipeline("dev", StreamingBeatFeaturizer(SPEC, ThresholdDetector, FS), model)
    return EdgeAgent(
        settings, pipe, BeatEventDetector("dev"), buffer, uplink, sink=JsonlSink(tmp / "o.jsonl")
    )


def test_a_full_disk_does_not_stop_monitoring(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the first five writes fail (the agent ended on the first one before)
    x, peaks = synthetic_ecg(RR, FS)
    buffer = FlakyBuffer(tmp_path / "b.sqlite", "dev", failing="add", failures=5)
    agent = _agent(tmp_path, buffer, None)
    # Execute
    stats = asyncio.run(agent.run(ListSource(chunks_of(x, FS, 130))))
    # Assert: every beat classified, the alarm raised and written, the loss counted and logged
    assert stats.beats == peaks.size and stats.events_by_kind == {"vt_run": 1}
    lines = [json.loads(s) for s in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "beat" for r in lines) == peaks.size
    assert stats.rows_not_buffered > 0
    assert buffer.counts()["pending"] == peaks.size + 1 - stats.rows_not_buffered
    assert caplog.text.count("not buffered") == 1 and "disk is full" in caplog.text
    assert "the buffer writes again; " in caplog.text  # the end of the failure, with its count
    assert json.loads(agent.status_detail())["not_buffered"] == stats.rows_not_buffered
    agent.close()


def test_a_failing_outbox_read_does_not_end_the_uplink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the uplink loop's first reads fail (the loop task died silently before: nothing
    # was sent for the rest of the run)
    x, peaks = synthetic_ecg(RR, FS)
    buffer = FlakyBuffer(tmp_path / "b.sqlite", "dev", failing="take", failures=3)
    up = FakeUplink()
    agent = _agent(tmp_path, buffer, up)
    # Execute
    stats = asyncio.run(agent.run(ListSource(chunks_of(x, FS, 360), pause_s=0.05)))
    # Assert: everything sent in the end, each row once; the errors counted, logged once
    assert buffer.counts()["pending"] == 0 and stats.uplink_errors == 3
    assert stats.pred_payloads == len(up.reliable) > 0
    sent = [b.t_ns for _, p in up.reliable for b in decode_predictions(p).beats]
    assert len(sent) == len(set(sent)) == peaks.size
    assert caplog.text.count("outbox flush failing") == 1 and "works again" in caplog.text
    agent.close()


def test_a_bound_that_cannot_be_applied_costs_no_row(tmp_path: Path) -> None:
    # Prepare: pruning fails (a locked or full disk) after the rows are committed: add()
    # raised, and the stored rows were counted as lost
    buffer = SqliteBuffer(tmp_path / "b.sqlite", "dev")

    def fail(keep: int) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    buffer.prune_stored = fail  # type: ignore[method-assign]
    beats = [
        BeatPrediction("dev", i * 10**9, i, "N", {"N": 1.0}, "m", 0.8)
        for i in range(PRUNE_EVERY + 5)
    ]
    # Execute / Assert: stored, no exception
    buffer.add(beats, [])
    assert buffer.counts()["pending"] == len(beats)
    buffer.close()
