"""The store's receipts reach the agent: a batch is forgotten only when the store has it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.pred_payloads import PredAck, decode_predictions, encode_pred_ack
from common.protocol import Channel, client_topic
from edge_agent.inference import OnnxBeatClassifier
from tests.edge_agent.helpers import FakeUplink, ListSource, chunks_of, synthetic_ecg
from tests.edge_agent.test_agent import FS, make_agent, model  # noqa: F401 - fixture


def test_receipts_mark_batches_stored_and_foreign_ones_are_refused(
    model: OnnxBeatClassifier,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    # Prepare: a connected run; every batch acknowledged by the (fake) broker
    x, peaks = synthetic_ecg([0.8] * 20, FS)
    up = FakeUplink()
    agent = make_agent(model, tmp_path, up)
    asyncio.run(agent.run(ListSource(chunks_of(x, FS, 360), pause_s=0.01)))
    batches = [decode_predictions(p).batch_id for _, p in up.reliable]
    assert all(batches) and len(set(batches)) == len(batches)
    topic = client_topic(Channel.PRED_ACK, "dev")
    # Execute: a receipt for another device, then the store's receipt for every batch
    agent.handle_inbound(topic, encode_pred_ack(PredAck("other", tuple(batches), 1)))
    after_foreign = agent.buffer.counts()["stored"]
    agent.handle_inbound(topic, encode_pred_ack(PredAck("dev", tuple(batches), 1)))
    # Assert
    assert after_foreign == 0 and agent.stats.bad_payloads == 1
    stored, counted = agent.buffer.counts()["stored"], agent.stats.pred_stored
    agent.close()
    assert stored == counted == peaks.size
