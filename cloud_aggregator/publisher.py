"""Retained state the aggregator keeps on the broker: the round announcement and the models.

A retained topic holds one message, so a chunked model uses one sub-topic per chunk
(``model/v<n>/<i>``). Only the last two model versions stay retained (older ones are cleared
with an empty retained message); the announcement is cleared when no round is open.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from cloud_aggregator.releases import version_name
from common import fl_protocol as fl
from common import protocol as proto

_LOGGER = logging.getLogger(__name__)


class Publisher(Protocol):
    """The slice of :class:`~cloud_aggregator.mqtt_io.PahoBroker` used here."""

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = ..., expiry_s: float | None = ...
    ) -> bool:
        """Publish with QoS 1 (MQTT 5 expiry ``expiry_s`` s if given); True once acknowledged."""
        ...


def announcement_for(
    round_id: int,
    config: dict[str, Any],
    base_version: int,
    sha256: str,
    deadline: float,
    now: float,
    selected: tuple[str, ...],
) -> fl.RoundAnnouncement:
    """The announcement of a stored round (``config`` as the service wrote it).

    ``deadline`` and ``now`` are Unix seconds (sent as ns since the epoch). A round stored
    before invitations were rules (no ``invitation`` in its config) is announced with the
    tightest rule covering its ``selected`` clients (others it invites are refused, as ever).
    """
    rule = config.get("invitation")
    invitation = (
        fl.Invitation(str(rule["seed"]), int(rule["below"]))
        if isinstance(rule, dict)
        else fl.Invitation.covering(f"round-{round_id}", selected)
    )
    return fl.RoundAnnouncement(
        round_id=str(round_id),
        run_id=f"g{config.get('run', 0)}",
        round_no=int(config["round_no"]),
        total_rounds=int(config["total_rounds"]),
        attempt=int(config["attempt"]),
        model_version=version_name(base_version),
        model_sha256=sha256,
        deadline_ns=int(deadline * 1e9),
        issued_ns=int(now * 1e9),
        invitation=invitation,
        config=fl.RoundConfig.from_dict(config["client"]),
    )


class RetainedState:
    """Publishes (and clears) the retained round announcement and model versions."""

    def __init__(self, broker: Publisher, chunk_bytes: int) -> None:
        self.broker = broker
        self.chunk_bytes = chunk_bytes
        self.models: dict[int, list[str]] = {}  # version -> retained topics
        self.announced: int | None = None  # round id currently announced

    def publish_model(self, version: int, payload: bytes) -> None:
        """Retain one model version (chunked if large); clear versions older than the previous."""
        topic = proto.model_topic(version_name(version))
        # the message id names the content: a re-seeded store's v1 is not the old v1
        digest = hashlib.sha256(payload).hexdigest()[:16]
        parts = fl.split_message(payload, f"model-{version}-{digest}", self.chunk_bytes)
        topics = [topic] if len(parts) == 1 else [f"{topic}/{i}" for i in range(len(parts))]
        for t, part in zip(topics, parts, strict=True):
            self.broker.publish(t, part, retain=True)
        self.models[version] = topics
        for old in [v for v in self.models if v < version - 1]:
            for t in self.models.pop(old):
                self.broker.publish(t, b"", retain=True)

    def publish_patch(self, version: int, base: int, payload: bytes) -> None:
        """Retain ``v{version}`` as a patch of ``v{base}`` on ``model/v{version}/from/v{base}``
        (cleared with the version's other topics)."""
        topic = f"{proto.model_topic(version_name(version))}/from/{version_name(base)}"
        self.broker.publish(topic, payload, retain=True)
        self.models.setdefault(version, []).append(topic)

    def announce(self, ann: fl.RoundAnnouncement, expiry_s: float) -> bool:
        """Retain the announcement with an MQTT 5 expiry of ``expiry_s`` s; False if not acked."""
        ok = self.broker.publish(
            proto.round_current_topic(),
            fl.encode_round(ann),
            retain=True,
            expiry_s=max(1.0, expiry_s),
        )
        if ok:
            self.announced = int(ann.round_id)
        return ok

    def clear_announcement(self) -> None:
        """Remove the retained announcement (no round open)."""
        if self.announced is not None:
            self.broker.publish(proto.round_current_topic(), b"", retain=True)
            self.announced = None
