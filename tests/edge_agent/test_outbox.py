"""The outbox pump: a row the store would refuse never takes its batch down with it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.pred_payloads import decode_predictions
from common.types import BeatPrediction, Event
from edge_agent.agent_ports import AgentStats
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.outbox import OutboxPump
from tests.edge_agent.helpers import FakeUplink

T0 = 1_700_000_000_000_000_000


def _beat(i: int, rr_s: float = 0.8, version: str = "beat-v1") -> BeatPrediction:
    return BeatPrediction("dev", T0 + i * 800_000_000, i * 288, "N", {"N": 1.0}, version, rr_s)


def _pump(tmp_path: Path) -> tuple[OutboxPump, SqliteBuffer, FakeUplink, AgentStats]:
    buffer = SqliteBuffer(tmp_path / "buf.sqlite", "dev")
    up, stats = FakeUplink(), AgentStats()
    pump = OutboxPump(EdgeSettings(client_id="dev"), buffer, up, stats, asyncio.Event())
    return pump, buffer, up, stats


def test_a_row_the_store_would_refuse_is_set_aside_and_the_rest_is_sent(tmp_path: Path) -> None:
    # Prepare: one beat after a 75 s pause (the store accepts RR up to 60 s), one with a model
    # version longer than the wire allows, and good beats and an event around them
    pump, buffer, up, stats = _pump(tmp_path)
    beats = [_beat(0), _beat(1, rr_s=75.0), _beat(2), _beat(3, version="v" * 80), _beat(4)]
    event = Event("dev:tachy:1", "dev", "tachycardia", T0, T0 + 10**9, {"hr": 130.0})
    buffer.add(beats, [event])

    async def main() -> None:
        pump.flush()
        await asyncio.sleep(0)

    # Execute
    asyncio.run(main())
    # Assert: every payload decodes as the store decodes it, with the four good rows
    sent = [decode_predictions(payload) for _, payload in up.reliable]
    assert [b.t_ns for p in sent for b in p.beats] == [beats[i].t_ns for i in (0, 2, 4)]
    assert [e.event_id for p in sent for e in p.events] == ["dev:tachy:1"]
    assert stats.pred_rejected == 2
    assert buffer.counts() == {"pending": 0, "inflight": 0, "sent": 4, "stored": 0, "rejected": 2}
    buffer.close()


def test_set_aside_rows_are_not_sent_again(tmp_path: Path) -> None:
    # Prepare
    pump, buffer, up, stats = _pump(tmp_path)
    buffer.add([_beat(0, rr_s=75.0)], [])

    async def main() -> None:
        pump.flush()
        await asyncio.sleep(0)
        pump.flush()

    # Execute
    asyncio.run(main())
    # Assert: nothing went out, the row stays in the buffer, counted once
    assert up.reliable == [] and stats.pred_rejected == 1
    assert buffer.counts()["rejected"] == 1
    buffer.close()


def test_a_batch_over_the_envelope_size_goes_out_in_smaller_payloads(tmp_path: Path) -> None:
    # Prepare: 40 events of ~2 kB each: 80 kB in one payload, over the 64 kB envelope
    pump, buffer, up, stats = _pump(tmp_path)
    notes = {f"note{j}": "x" * 250 for j in range(8)}  # within the wire's bounds
    events = [Event(f"dev:e:{i}", "dev", "af", T0 + i, T0 + i + 1, notes) for i in range(40)]
    buffer.add([], events)

    async def main() -> None:
        pump.flush()
        await asyncio.sleep(0)

    # Execute
    asyncio.run(main())
    # Assert: all 40 sent, in payloads the store accepts, none set aside
    sent = [decode_predictions(payload) for _, payload in up.reliable]
    assert sorted(e.event_id for p in sent for e in p.events) == sorted(e.event_id for e in events)
    assert len(sent) > 1 and stats.pred_rejected == 0
