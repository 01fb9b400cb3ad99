"""Routing of inbound messages to the service's batches (pure: no store, no broker)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from cloud_aggregator.grid import Inbound
from cloud_aggregator.service_batches import batch_kind
from common import fl_protocol as fl
from common import protocol as proto

UPDATE = proto.client_topic(proto.Channel.UPDATE, "dev-1")
WHOLE = fl.encode_update(
    fl.ClientUpdate("7", "dev-1", "v1", 10, {"w": np.zeros(300, np.float32)}, "none")
)
CHUNK = fl.split_message(WHOLE, "m-1", 512)[0]


def _raw(header: bytes) -> bytes:
    """An envelope around header bytes given verbatim."""
    return struct.pack("<2sBI", b"MC", 1, len(header)) + header


@pytest.mark.parametrize(
    ("topic", "payload", "kind"),
    [
        (UPDATE, WHOLE, "update"),
        (UPDATE, CHUNK, None),  # an older device's chunk on the whole-update topic
        (proto.chunk_topic(proto.Channel.UPDATE, "dev-1"), CHUNK, None),
        (UPDATE, _raw(b'{"kind": "chunk", "body": {}}'), None),  # not as encode writes: parsed
        (UPDATE, _raw(b'{"kind":"chunk"'), "update"),  # malformed: the screening refuses it
        (UPDATE, b"\x00garbage", "update"),
        (proto.client_topic(proto.Channel.STATUS, "dev-1"), b"", "status"),
        (proto.client_topic(proto.Channel.PRED, "dev-1"), WHOLE, None),
        ("medchain/v1/nope/dev-1", WHOLE, None),
    ],
)
def test_batch_kind_routes_as_the_full_parse_would(
    topic: str, payload: bytes, kind: str | None
) -> None:
    # Execute / Assert
    assert batch_kind(Inbound(topic, payload, 1, 1, False)) == kind
