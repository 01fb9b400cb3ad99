"""The same round engine in one process: an in-memory grid of simulated devices.

:class:`InMemoryGrid` is the :class:`~cloud_aggregator.grid.Grid` the service and the round
engine talk to, with MQTT's semantics where they matter (retained messages, wildcard
subscriptions, a retained online status per device, QoS 1 delivered once) and none of its
costs. Devices are transport-free objects (:class:`SimDevice`: the edge's
``FederatedParticipant`` is one) that take messages and return what they publish; the grid
runs them when the aggregator has nothing to read, so a simulation is one thread and
reproducible. Devices may drop out of a round they were selected for (``drop``), which they
announce with an offline status as a Last Will would.

Tests, benches and simulations of thousands of devices run exactly the engine production runs;
only the transport differs.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cloud_aggregator.grid import Inbound
from common import fl_protocol as fl
from common import protocol as proto
from common.payloads import Status, encode_status


class SimDevice(Protocol):
    """A device as the grid runs it (``edge_agent.federated.FederatedParticipant`` fits)."""

    @property
    def client_id(self) -> str:
        """Its id (topic level)."""
        ...

    def subscriptions(self) -> list[str]:
        """Topic filters it listens to."""
        ...

    def on_message(self, topic: str, payload: bytes) -> None:
        """Take one message (never raises)."""
        ...

    def poll(self) -> list[tuple[str, bytes]]:
        """Do its work (train when selected); the messages it publishes."""
        ...


@dataclass
class GridStats:
    """What crossed the grid, in bytes and messages."""

    down_bytes: int = 0
    up_bytes: int = 0
    down_messages: int = 0
    up_messages: int = 0
    dropped_rounds: int = 0
    per_round_down: dict[str, int] = field(default_factory=dict)


class InMemoryGrid:
    """In-process grid (see the module docstring).

    Parameters
    ----------
    devices : sequence of SimDevice
        The simulated devices; each is online from the start.
    drop : float
        Probability that a selected device drops out of a round (offline until it ends).
    seed : int
        Seed of the drop-outs.
    clock_ns : callable, optional
        Time of the devices' statuses (ns).
    """

    def __init__(self, devices: Sequence[SimDevice], *, drop: float = 0.0, seed: int = 0) -> None:
        self.devices = {d.client_id: d for d in devices}
        self.drop = drop
        self.stats = GridStats()
        self._rng = random.Random(seed)  # noqa: S311 - simulation only
        self._retained: dict[str, bytes] = {}
        self._inboxes: dict[str, collections.deque[tuple[str, bytes]]] = {
            cid: collections.deque() for cid in self.devices
        }
        self._to_server: collections.deque[Inbound] = collections.deque()
        self._mid = 0
        self._dropped: set[str] = set()  # devices offline for the current round
        self._round: str | None = None
        for cid in self.devices:
            self._from_device(proto.client_topic(proto.Channel.STATUS, cid), _status(cid, True))

    # ------------------------------------------------------------------ Grid (server side)
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                expiry_s: float | None = None, timeout_s: float = 10.0) -> bool:  # fmt: skip
        """Deliver to every subscribed device; keep (or clear, when empty) a retained one."""
        if retain:
            if payload:
                self._retained[topic] = payload
            else:
                self._retained.pop(topic, None)
        if topic == proto.round_current_topic() and payload:
            self._new_round(payload)
        for cid, device in self.devices.items():
            if cid not in self._dropped and _subscribed(device.subscriptions(), topic):
                self._deliver(cid, topic, payload)
        return True

    def get(self, timeout_s: float) -> Inbound | None:
        """The next message from a device; runs the devices when none is waiting."""
        if not self._to_server:
            self.run_devices()
        return self._to_server.popleft() if self._to_server else None

    def ack(self, msg: Inbound) -> None:
        """Nothing to do: delivery is exactly once in memory."""

    # ------------------------------------------------------------------ devices
    def run_devices(self, ids: Iterable[str] | None = None) -> int:
        """Let devices take their messages and work; returns the messages they published."""
        sent = 0
        for cid in list(self.devices if ids is None else ids):
            if cid in self._dropped:
                continue
            device, inbox = self.devices[cid], self._inboxes[cid]
            while inbox:
                while inbox:
                    device.on_message(*inbox.popleft())
                self._subscribe_new(cid, device)  # a retained release it now asks for
            for topic, payload in device.poll():
                self._from_device(topic, payload)
                sent += 1
        return sent

    def _subscribe_new(self, cid: str, device: SimDevice) -> None:
        """Deliver the retained messages of the filters a device subscribes from now on."""
        for flt in getattr(device, "new_subscriptions", list)():
            for topic, retained in list(self._retained.items()):
                if proto.topic_matches(flt, topic):
                    self._deliver(cid, topic, retained)

    def _deliver(self, cid: str, topic: str, payload: bytes) -> None:
        self._inboxes[cid].append((topic, payload))
        self.stats.down_bytes += len(payload)
        self.stats.down_messages += 1
        if self._round is not None:
            self.stats.per_round_down[self._round] = self.stats.per_round_down.get(
                self._round, 0
            ) + len(payload)

    def _from_device(self, topic: str, payload: bytes) -> None:
        self._mid += 1
        self._to_server.append(Inbound(topic, payload, self._mid, 1, False))
        self.stats.up_bytes += len(payload)
        self.stats.up_messages += 1

    def _new_round(self, payload: bytes) -> None:
        """A new announcement: dropped devices come back; some selected ones drop out."""
        try:
            ann = fl.decode_round(payload)
        except proto.ProtocolError:
            return
        if ann.round_id == self._round:
            return  # a re-announcement of the same round
        self._round = ann.round_id
        for cid in self._dropped:
            self._from_device(proto.client_topic(proto.Channel.STATUS, cid), _status(cid, True))
            for topic, retained in self._retained.items():  # a reconnect gets retained ones
                if _subscribed(self.devices[cid].subscriptions(), topic):
                    self._deliver(cid, topic, retained)
        back, self._dropped = self._dropped, set()
        for cid in sorted(self.devices):  # the invited among those online when it opened
            if cid not in back and ann.invites(cid) and self._rng.random() < self.drop:
                self._dropped.add(cid)
        for cid in self._dropped:  # the Last Will
            self._from_device(proto.client_topic(proto.Channel.STATUS, cid), _status(cid, False))
            self.stats.dropped_rounds += 1


def _subscribed(filters: Sequence[str], topic: str) -> bool:
    return any(proto.topic_matches(f, topic) for f in filters)


def _status(cid: str, online: bool) -> bytes:
    return encode_status(Status(cid, online, time.time_ns(), detail='{"simulated": true}'))
