"""Store sink of the live feed: predictions, events, device status and label receipts.

Every write is idempotent in the store (by (client, t_ns) and event id; status by time), so a
QoS 1 redelivery, or the aggregator recording the same message, changes nothing.
"""

from __future__ import annotations

import logging

from common.payloads import LabelAck, Status
from common.types import BeatPrediction, Event, SignalChunk
from store.base import Store

_LOGGER = logging.getLogger(__name__)


class StoreRecorder:
    """Writes decoded pred/status messages into the store (live samples stay in memory)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_live(self, client_id: str, chunk: SignalChunk) -> None:
        """Live samples are not stored: raw ECG stays on the edge unless the patient opts in."""

    def on_predictions(
        self, client_id: str, beats: list[BeatPrediction], events: list[Event]
    ) -> None:
        """Insert beat predictions and events."""
        if beats:
            self.store.insert_predictions(beats)
        if events:
            self.store.insert_events(events)

    def on_status(self, status: Status) -> None:
        """Record online/offline and the model version the device runs."""
        self.store.set_client_status(
            status.client_id,
            online=status.online,
            seen_at=status.t_ns / 1e9,
            model_version=status.model_version or None,
        )

    def on_label_ack(self, ack: LabelAck) -> None:
        """``pending|delivered -> acknowledged`` for the labels the device says it stored.

        Only that client's labels change (the store matches on client id too), so a device
        cannot acknowledge another patient's labels.
        """
        changed = self.store.acknowledge_labels(ack.client_id, list(ack.label_ids))
        _LOGGER.debug(
            "%s acknowledged %d label(s), %d changed", ack.client_id, len(ack.label_ids), changed
        )
