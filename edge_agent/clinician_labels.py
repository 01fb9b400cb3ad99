"""Clinician labels arriving on ``label/{client_id}``: checked, then matched to a stored beat.

A beat label becomes a training example when a recent beat lies near its time; an event label
is only noted. The payload is untrusted: :func:`checked_label` raises
:class:`~common.protocol.ProtocolError` for a label that is malformed, addressed to another
device or names a beat class the model does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from common.payloads import MAX_LABEL_ID_LEN, Label, decode_label
from common.protocol import Channel, ProtocolError, Topic
from edge_agent.agent_ports import AgentStats
from edge_agent.buffer import SqliteBuffer
from edge_agent.inbound import short

_LOGGER = logging.getLogger(__name__)

__all__ = ["MAX_LABEL_T_NS", "checked_label", "store_label"]

MAX_LABEL_T_NS = 2**62  # ns since the epoch (year 2116); beyond it a label time is garbage


def checked_label(
    t: Topic, topic: str, payload: bytes, client_id: str, classes: Collection[str]
) -> Label:
    """The label in ``payload``, received on ``topic`` (parsed as ``t``).

    Parameters
    ----------
    t : Topic
        ``topic`` parsed.
    topic : str
        The MQTT topic, for error messages.
    payload : bytes
        Untrusted ``label`` payload.
    client_id : str
        This device; the topic and the label must both name it.
    classes : collection of str
        Beat classes of the running model (a beat label must be one of them).

    Raises
    ------
    ProtocolError
        Wrong topic, malformed payload, other device, unknown beat class.
    """
    if t.channel != Channel.LABEL or t.ident != client_id:
        raise ProtocolError(f"unexpected topic {topic!r}")
    label = decode_label(payload)
    if label.client_id != client_id:
        raise ProtocolError(f"label for {label.client_id!r} on {topic!r}")
    if label.target == "beat" and label.label not in classes:
        raise ProtocolError(f"unknown beat class {label.label!r}")
    # the device's own bounds, whatever the decoder let through: the buffer searches
    # t_ns +- 150 ms in a signed 64-bit column, the label id is stored and sent back
    if not (isinstance(label.t_ns, int) and 0 <= label.t_ns <= MAX_LABEL_T_NS):
        raise ProtocolError(f"label time {short(label.t_ns, 40)} ns out of range")
    if not (0 < len(label.label_id) <= MAX_LABEL_ID_LEN and len(label.label) <= 16):
        raise ProtocolError("label id or class name of a bad length")
    return label


def store_label(label: Label, buffer: SqliteBuffer, stats: AgentStats) -> None:
    """Attach a checked beat label to the recent beat nearest its time (counted in ``stats``).

    Every checked label (matched, unmatched or an event label) queues a durable receipt, so the
    server learns that the device has it; the outbox pump sends receipts with predictions.
    """
    if label.target != "beat":
        _LOGGER.info(
            "event label %s=%s noted (not a training example)", label.label_id, label.label
        )
    elif buffer.labels.add(label.t_ns, label.label, "clinician", label.label_id):
        stats.labels_clinician += 1
    else:
        stats.labels_unmatched += 1
        _LOGGER.info("label %s: no recent beat near t=%d ns", label.label_id, label.t_ns)
    # after the label is written: a buffer that failed to keep it sends no receipt, so the
    # server sends the label again
    buffer.receipts.add(label.label_id)
