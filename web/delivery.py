"""Label delivery: a clinician's label is stored ``pending``, published to the device on
``medchain/v1/label/{client_id}`` (QoS 1) and marked ``delivered`` once the broker has it.

The broker having it is not the device having it (a broker restart without persistence, an
expired session): a label counts as done only when the device's receipt (``labelack``, stored
by the aggregator's ingestion) marks it ``acknowledged``. Until then it is published again:
pending labels after every (re)connect, and pending or delivered ones every
:data:`RESEND_AFTER_S` while the device is online (:func:`redeliver`). The device's handling
is idempotent (same label id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from common.payloads import Label
from store.base import Store
from store.records import LabelRecord

_LOGGER = logging.getLogger(__name__)

RESEND_AFTER_S = 60.0  # a delivered label the device has not acknowledged is sent again, s


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


def redeliver(
    store: Store,
    feed: LiveFeed | None,
    resend_after_s: float = RESEND_AFTER_S,
    clock: Callable[[], float] = time.time,
) -> int:
    """Publish every label not yet acknowledged: pending ones, and, to a device that is
    online, delivered ones sent more than ``resend_after_s`` s ago (after a (re)connect and
    periodically).

    An offline device's broker session already holds the delivered ones: publishing them again
    every minute for a device away for days filled that queue past the broker's limit, which
    then dropped messages for it (round announcements and releases among them).
    """
    if feed is None or not feed.connected:
        return 0
    cutoff = clock() - resend_after_s
    total = 0
    for client in store.list_clients():
        if client.online:
            todo = store.labels_to_send(client.client_id, resend_before=cutoff)
        else:
            todo = store.pending_labels(client.client_id)
        total += len(deliver(store, feed, todo))
    if total:
        _LOGGER.info("re-delivered %d unacknowledged labels", total)
    return total
