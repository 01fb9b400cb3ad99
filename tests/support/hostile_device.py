"""A hostile enrolled device over a real broker: poisons every round it is selected for and
sprays malformed payloads (:data:`tests.support.hostile.HOSTILE`) on its own topics.

The poison is what took over the global beat model at 1bc2645: a claim of 1,000,000 examples
with a delta just under the norm bound, first bias V -7 / N +7 (norm 9.9), then the N and V
rows of the head swapped; it alternates between the two.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_aggregator.releases import HEAD_B, HEAD_W
from common import fl_protocol as fl
from common import protocol as proto
from common.payloads import Status, encode_status
from models.data.mitdb import AAMI_CLASSES
from tests.support.hostile import HOSTILE

N_, V_ = AAMI_CLASSES.index("N"), AAMI_CLASSES.index("V")
SPRAY_CHANNELS = (proto.Channel.UPDATE, proto.Channel.STATUS, proto.Channel.PRED,
                  proto.Channel.LABEL_ACK)  # fmt: skip


class HostileDevice:
    """Connects as ``cid`` (anonymous broker) and misbehaves until :meth:`stop`.

    Attributes
    ----------
    poisoned : list of str
        Round ids it sent a poisoned update for.
    sent : int
        Malformed payloads sprayed.
    """

    def __init__(self, url: str, cid: str = "evil") -> None:
        self.cid = cid
        self.poisoned: list[str] = []
        self.sent = 0
        self.releases: dict[str, fl.ModelRelease] = {}
        self._payloads = itertools.cycle([(ch, p) for _, _, p in HOSTILE for ch in SPRAY_CHANNELS])
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                                   protocol=mqtt.MQTTv5)  # fmt: skip
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self._client.reconnect_delay_set(1, 5)
        self._client.connect_async(host, int(port))
        self._client.loop_start()

    def spray(self, n: int = 2) -> None:
        """Publish the next ``n`` malformed payloads (QoS 1, not awaited)."""
        if not self._client.is_connected():
            return
        for _ in range(n):
            channel, payload = next(self._payloads)
            self._client.publish(proto.client_topic(channel, self.cid), payload, qos=1)
            self.sent += 1

    def _on_connect(self, c: mqtt.Client, *_: object) -> None:
        c.subscribe([(f"{proto.PREFIX}/{proto.Channel.MODEL}/#", 1),
                     (proto.round_current_topic(), 1)])  # fmt: skip
        c.publish(proto.client_topic(proto.Channel.STATUS, self.cid),
                  encode_status(Status(self.cid, True, time.time_ns())), qos=1, retain=True)  # fmt: skip

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return
        try:
            if "/model/" in msg.topic:
                rel = fl.decode_model(bytes(msg.payload))
                self.releases[rel.version] = rel
                return
            ann = fl.decode_round(bytes(msg.payload))
        except proto.ProtocolError:
            return  # a chunked release: the attack needs only whole ones
        rel = self.releases.get(ann.model_version)
        if not ann.invites(self.cid) or ann.round_id in self.poisoned or rel is None:
            return
        delta = poison(rel, attack=len(self.poisoned))
        update = fl.ClientUpdate(ann.round_id, self.cid, ann.model_version, 1_000_000, delta,
                                 "none", 0.0, {"loss": 0.01})  # fmt: skip
        c.publish(proto.client_topic(proto.Channel.UPDATE, self.cid), fl.encode_update(update),
                  qos=1)  # fmt: skip
        self.poisoned.append(ann.round_id)

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def poison(rel: fl.ModelRelease, attack: int) -> fl.Tensors:
    """The head delta of attack 0 (bias) or 1 (rows swapped), alternating with ``attack``."""
    w, b = rel.tensors[HEAD_W], rel.tensors[HEAD_B]
    dw, db = np.zeros_like(w), np.zeros_like(b)
    if attack % 2 == 0:  # bias V -7 / N +7: norm 9.9, under the bound of 10
        db[V_], db[N_] = -7.0, 7.0
    else:  # the N and V rows swapped
        dw[[N_, V_]] = w[[V_, N_]] - w[[N_, V_]]
        db[[N_, V_]] = b[[V_, N_]] - b[[N_, V_]]
    return {HEAD_W: dw, HEAD_B: db}
