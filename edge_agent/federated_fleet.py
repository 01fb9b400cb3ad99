"""Simulated federated fleet: one MQTT connection per simulated patient against a real broker.

:func:`run_fleet` runs many :class:`~edge_agent.federated_participant.FederatedParticipant`
(one per ``.npz`` of labelled beats) with random drop-outs and slow clients; the command line is
``python -m edge_agent.federated`` (:func:`edge_agent.federated.main`).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common import protocol as proto
from edge_agent import trainer as tr
from edge_agent.federated_participant import FederatedParticipant

if TYPE_CHECKING:
    from transport.status_session import StatusBuilder

MAX_INBOX = 10_000  # messages a simulated device keeps before dropping (counted, logged)
IDLE_WAIT_S = 1.0  # longest sleep of an idle device between looks at its stop flag
RETRY_WAIT_S = 0.05  # between tries to send an update while the connection is down
CONNECT_BATCH, CONNECT_PAUSE_S = 100, 0.5  # clients started at once, pause between batches


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


def _status_of(client_id: str) -> StatusBuilder:
    """The device's status payloads, for its connection to stamp."""
    from common.payloads import Status, encode_status

    def status(online: bool, detail: str, session: int, seq: int) -> bytes:
        return encode_status(Status(client_id, online, time.time_ns(), detail=detail,
                                    session=session, seq=seq))  # fmt: skip

    return status


def run_client(
    url: str,
    participant: FederatedParticipant,
    stop: threading.Event,
    *,
    drop_prob: float = 0.0,
    slow_prob: float = 0.0,
    slow_s: float = 0.0,
    seed: int = 0,
    cpu_slot: threading.Semaphore | None = None,
) -> None:
    """Connect one participant with its own MQTT connection until ``stop`` (bounded waits).

    ``url`` is a broker URL as everywhere (:func:`transport.settings.mqtt_settings`:
    credentials, TLS files, protocol). Each selected round, with probability ``drop_prob`` the
    client drops out (announces offline and skips the round), with ``slow_prob`` it waits
    ``slow_s`` before training.
    """
    from common.protocol import client_topic
    from transport.inbox import Message, QueueInbox
    from transport.mqtt import MqttConnection
    from transport.settings import Will, mqtt_settings

    cid = participant.client_id
    rng = random.Random(seed)  # noqa: S311 - simulation only
    status_topic = client_topic(proto.Channel.STATUS, cid)
    settings = mqtt_settings(url, cid, will=Will(status_topic), keepalive_s=15,
                             reconnect_max_s=5.0)  # fmt: skip
    inbox: QueueInbox[Message] = QueueInbox(MAX_INBOX, f"{cid} inbox")
    # the participant's filters can change (a full release it asks for): asked at each connect
    conn = MqttConnection(settings, participant.subscriptions, on_message=inbox.put,
                          status=_status_of(cid))  # fmt: skip
    conn.start()
    outbox: list[tuple[str, bytes]] = []
    try:
        while not stop.is_set():
            # sleep until a message comes (or a second passes): thousands of devices in one
            # process cannot each wake 20 times a second to look
            first = inbox.get(IDLE_WAIT_S if not outbox else RETRY_WAIT_S)
            # one device's work at a time (a release patch is applied by every device holding
            # the version before): hundreds of threads asking for the GIL at once thrash
            with cpu_slot or contextlib.nullcontext():
                for msg in ([first] if first is not None else []) + inbox.drain():
                    participant.on_message(msg.topic, msg.payload)
            for flt in participant.new_subscriptions():
                conn.subscribe(flt)  # now; later connects ask participant.subscriptions
            a = participant.pending_round()
            if a is not None and participant.announced_release() is not None:
                if rng.random() < drop_prob:
                    participant.done.add(a.round_id)
                    conn.publish_status(False, "dropped")
                    stop.wait(1.0)
                    conn.publish_status(True)
                    continue
                if rng.random() < slow_prob:
                    stop.wait(slow_s)
                with cpu_slot or contextlib.nullcontext():
                    outbox += participant.poll()
            while outbox and conn.connected:
                if not conn.publish_wait(outbox[0][0], outbox[0][1], timeout_s=5.0):
                    break  # retried next loop; the update id makes a duplicate harmless
                outbox.pop(0)
    finally:
        conn.stop("stopped")


def run_fleet(
    url: str,
    data_dir: Path,
    work_dir: Path,
    stop: threading.Event,
    shard: tuple[int, int] = (0, 1),
    **opts: Any,
) -> dict[str, Any]:
    """Run one client per ``data_dir/*.npz`` (id = file stem) until ``stop``; returns stats.

    ``shard = (k, n)`` runs only the k-th of every n files (one fleet process per core, each
    with its share). Within a process the clients train one at a time: many torch threads at
    once under one GIL run slower in sum than one after another.
    """
    threads, parts = [], []
    slot = threading.Semaphore(1)
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: need 0 <= k < n")
    for i, path in enumerate(sorted(data_dir.glob("*.npz"))):
        if i % n != k:
            continue
        p = FederatedParticipant(path.stem, NpzExamples(path), work_dir / path.stem)
        parts.append(p)
        kwargs = {**opts, "seed": i, "cpu_slot": slot}
        t = threading.Thread(target=run_client, args=(url, p, stop), kwargs=kwargs, daemon=True)
        t.start()
        threads.append(t)
        if len(threads) % CONNECT_BATCH == 0:  # thousands connecting at once stall the broker
            stop.wait(CONNECT_PAUSE_S)
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
