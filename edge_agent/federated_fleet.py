"""Simulated federated fleet: one paho client per simulated patient against a real broker.

:func:`run_fleet` runs many :class:`~edge_agent.federated_participant.FederatedParticipant`
(one per ``.npz`` of labelled beats) with random drop-outs and slow clients; the command line is
``python -m edge_agent.federated`` (:func:`edge_agent.federated.main`).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import protocol as proto
from edge_agent import trainer as tr
from edge_agent.federated_participant import FederatedParticipant


class NpzExamples:
    """Labelled beats of one simulated patient from an npz (``beat``, ``rr``, ``labels``)."""

    def __init__(self, path: Path) -> None:
        with np.load(path) as z:
            self._inputs = {k: z[k].astype(np.float32) for k in z.files if k != "labels"}
            self._labels = z["labels"].astype(np.int64)

    def labelled_examples(self, limit: int) -> tr.LabelledExamples:
        """The first ``limit`` examples."""
        return tr.LabelledExamples(
            {k: v[:limit] for k, v in self._inputs.items()}, self._labels[:limit]
        )


def _status(client_id: str, online: bool, detail: str = "") -> bytes:
    from common.payloads import Status, encode_status

    return encode_status(Status(client_id, online, time.time_ns(), detail=detail))


def run_client(
    url: str,
    participant: FederatedParticipant,
    stop: threading.Event,
    *,
    drop_prob: float = 0.0,
    slow_prob: float = 0.0,
    slow_s: float = 0.0,
    seed: int = 0,
) -> None:
    """Connect one participant with its own paho client until ``stop`` (bounded waits).

    Each selected round, with probability ``drop_prob`` the client drops out (announces offline
    and skips the round), with ``slow_prob`` it waits ``slow_s`` before training.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from common.protocol import client_topic

    cid = participant.client_id
    inbox: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    rng = random.Random(seed)  # noqa: S311 - simulation only
    status_topic = client_topic(proto.Channel.STATUS, cid)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    client.will_set(status_topic, _status(cid, False, "lost"), qos=1, retain=True)
    host, port = url.split("://", 1)[1].rsplit(":", 1)

    def on_connect(c: mqtt.Client, u: object, f: object, rc: Any, p: object) -> None:
        if not rc.is_failure:
            for flt in participant.subscriptions():
                c.subscribe(flt, qos=1)
            c.publish(status_topic, _status(cid, True), qos=1, retain=True)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            inbox.append((msg.topic, bytes(msg.payload)))

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(1, 5)
    client.connect_async(host, int(port), keepalive=15)
    client.loop_start()
    outbox: list[tuple[str, bytes]] = []
    try:
        while not stop.is_set():
            with lock:
                batch, inbox[:] = list(inbox), []
            for topic, payload in batch:
                participant.on_message(topic, payload)
            a = participant.pending_round()
            if a is not None and participant.announced_release() is not None:
                if rng.random() < drop_prob:
                    participant.done.add(a.round_id)
                    client.publish(status_topic, _status(cid, False, "dropped"), qos=1, retain=True)
                    stop.wait(1.0)
                    client.publish(status_topic, _status(cid, True), qos=1, retain=True)
                    continue
                if rng.random() < slow_prob:
                    stop.wait(slow_s)
                outbox += participant.poll()
            while outbox and client.is_connected():
                info = client.publish(outbox[0][0], outbox[0][1], qos=1)
                info.wait_for_publish(5.0)
                if not info.is_published():
                    break  # retried next loop; the update id makes a duplicate harmless
                outbox.pop(0)
            stop.wait(0.05)
    finally:
        client.publish(
            status_topic, _status(cid, False, "stopped"), qos=1, retain=True
        ).wait_for_publish(2.0)
        client.disconnect()
        client.loop_stop()


def run_fleet(
    url: str, data_dir: Path, work_dir: Path, stop: threading.Event, **opts: Any
) -> dict[str, Any]:
    """Run one client per ``data_dir/*.npz`` (id = file stem) until ``stop``; returns stats."""
    threads, parts = [], []
    for i, path in enumerate(sorted(data_dir.glob("*.npz"))):
        p = FederatedParticipant(path.stem, NpzExamples(path), work_dir / path.stem)
        parts.append(p)
        t = threading.Thread(
            target=run_client, args=(url, p, stop), kwargs={**opts, "seed": i}, daemon=True
        )
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return {
        p.client_id: {
            "rounds_trained": p.stats.rounds_trained,
            "uplink_bytes": p.stats.uplink_bytes,
            "bad_messages": p.stats.bad_messages,
        }
        for p in parts
    }
