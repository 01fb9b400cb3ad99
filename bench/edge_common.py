"""Shared helpers of the edge benchmarks: run the agent core offline over a WFDB replay."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.signals.beats import BeatSpec
from common.types import BeatPrediction, Event
from edge_agent.app import build_agent, load_classifier
from edge_agent.config import EdgeSettings
from firmware_bridge.sources import open_source


class ListSink:
    """Keeps every beat and event in memory."""

    def __init__(self) -> None:
        self.beats: list[BeatPrediction] = []
        self.events: list[Event] = []

    def write(self, beats: list[BeatPrediction], events: list[Event]) -> None:
        self.beats += beats
        self.events += events

    def close(self) -> None:
        pass


@dataclass
class RecordRun:
    """Result of one record through the agent."""

    record: str
    duration_s: float
    cpu_s: float
    wall_s: float
    samples: np.ndarray
    labels: list[str]
    annotations: tuple[np.ndarray, list[str]]
    fs: float
    events: dict[str, int] = field(default_factory=dict)
    beat_predictions: list[BeatPrediction] = field(default_factory=list)
    event_list: list[Event] = field(default_factory=list)


def run_record(
    path: Path,
    model: Path | None = None,
    chunk_s: float = 10.0,
    channel: str = "MLII",
    spec: BeatSpec | None = None,
    s_in_af_as_n: bool = False,
) -> RecordRun:
    """Replay one WFDB record at max speed through the offline agent (no broker)."""

    async def main() -> RecordRun:
        with tempfile.TemporaryDirectory() as tmp:
            settings = EdgeSettings(
                client_id="bench",
                buffer_path=Path(tmp) / "b.sqlite",
                model_path=model,
                s_in_af_as_n=s_in_af_as_n,
            )
            clf = load_classifier(settings)
            src: Any = open_source(
                f"replay:{path}?channel={channel}&chunk_s={chunk_s}", speed="max"
            )
            async with src:
                agent = build_agent(settings, clf, spec=spec)
                sink = ListSink()
                agent.sink = sink
                cpu, wall = time.process_time(), time.perf_counter()
                stats = await agent.run(src)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                n = src.stats.samples
                ann = src.annotations()
                agent.close()
            return RecordRun(
                path.name,
                n / src.fs,
                cpu,
                wall,
                np.array([b.sample for b in sink.beats], np.int64),
                [b.label for b in sink.beats],
                ann,
                float(src.fs),
                dict(stats.events_by_kind),
                sink.beats,
                sink.events,
            )

    return asyncio.run(main())
