"""Label delivery: a clinician's label is stored ``pending``, published to the device on
``medchain/v1/label/{client_id}`` (QoS 1) and marked ``delivered`` once the broker has it.

Labels that could not be published (broker down) stay pending and are re-sent after the next
(re)connect, so none is lost. The device acknowledges labels it applied
(``Store.acknowledge_labels``), which the label review page shows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from common.payloads import Label
from store.base import Store
from store.records import LabelRecord

_LOGGER = logging.getLogger(__name__)


class LiveFeed(Protocol):
    """What the web app needs from the live feed adapter (MQTT in production, fake in tests)."""

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        ...

    def start(self) -> None:
        """Connect and subscribe (returns at once; reconnects in the background)."""
        ...

    def stop(self) -> None:
        """Disconnect and stop the background loop."""
        ...

    def publish_label(self, label: Label, timeout: float = 5.0) -> bool:
        """Publish a label on ``medchain/v1/label/{client_id}``; True once the broker has it
        (waits at most ``timeout`` s)."""
        ...


def to_wire(rec: LabelRecord) -> Label:
    """The payload form of a stored label."""
    return Label(rec.label_id, rec.client_id, rec.t_ns, rec.label, rec.target, rec.author)


def deliver(store: Store, feed: LiveFeed | None, records: Sequence[LabelRecord]) -> list[str]:
    """Publish labels and mark the published ones delivered; return their ids."""
    if feed is None or not records:
        return []
    sent = [rec.label_id for rec in records if feed.publish_label(to_wire(rec))]
    if sent:
        store.mark_labels_delivered(sent)
    if len(sent) < len(records):
        _LOGGER.info(
            "%d of %d labels stay pending (broker unreachable)",
            len(records) - len(sent),
            len(records),
        )
    return sent


def redeliver_pending(store: Store, feed: LiveFeed | None) -> int:
    """Publish every pending label of every client (after a broker (re)connect)."""
    total = 0
    for client in store.list_clients():
        total += len(deliver(store, feed, store.pending_labels(client.client_id)))
    if total:
        _LOGGER.info("re-delivered %d pending labels", total)
    return total
