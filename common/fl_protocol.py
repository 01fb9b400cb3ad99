"""Federated-learning payloads: round announcements, global models, client updates, chunks.

All payloads use the envelope of :mod:`common.protocol`. Tensors travel in the envelope blob
(codec in :mod:`common.fl_tensors`); messages larger than a configurable limit are split into
``chunk`` envelopes (:mod:`common.fl_chunks`). This module is the facade of the federated wire
API: ``from common import fl_protocol as fl`` gives all of it. Each message kind lives in its
own module (dataclass, encoder and validating decoder together):

- :mod:`common.fl_round`: :class:`RoundConfig`, :class:`RoundAnnouncement`;
- :mod:`common.fl_release`: :class:`ModelRelease`;
- :mod:`common.fl_update`: :class:`ClientUpdate`.

Topics (see :mod:`common.protocol`)::

    medchain/v1/round/current        retained RoundAnnouncement (MQTT 5 message expiry = deadline)
    medchain/v1/model/{version}      retained ModelRelease (chunked when large)
    medchain/v1/update/{client_id}   ClientUpdate (QoS 1, idempotent by update_id)

Every decoder takes untrusted bytes and raises :class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

from common.fl_chunks import ChunkHeader, Reassembler, join_chunks, parse_chunk, split_message
from common.fl_invitation import Invitation
from common.fl_release import ModelRelease, decode_model, encode_model
from common.fl_round import (
    MAX_CLASS_WEIGHT,
    MODES,
    RoundAnnouncement,
    RoundConfig,
    decode_round,
    encode_round,
)
from common.fl_tensors import (
    COMPRESSIONS,
    MAX_ELEMENTS,
    MAX_MESSAGE,
    MAX_TENSORS,
    FloatArray,
    Tensors,
    compression_error,
    pack_tensors,
    quantize_int8,
    unpack_tensors,
)
from common.fl_update import ClientUpdate, decode_update, encode_update, update_id_for

__all__ = [
    "COMPRESSIONS",
    "MAX_CLASS_WEIGHT",
    "MAX_ELEMENTS",
    "MAX_MESSAGE",
    "MAX_TENSORS",
    "MODES",
    "ClientUpdate",
    "FloatArray",
    "Invitation",
    "ModelRelease",
    "ChunkHeader",
    "Reassembler",
    "RoundAnnouncement",
    "RoundConfig",
    "Tensors",
    "compression_error",
    "decode_model",
    "decode_round",
    "decode_update",
    "encode_model",
    "encode_round",
    "encode_update",
    "pack_tensors",
    "quantize_int8",
    "join_chunks",
    "parse_chunk",
    "split_message",
    "unpack_tensors",
    "update_id_for",
]
