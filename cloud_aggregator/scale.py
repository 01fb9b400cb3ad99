"""Rounds at device scale: the production service and round engine with many synthetic devices.

A :class:`SyntheticDevice` answers every round it is invited to with a small random update of
the release's tensors (no data, no training): it loads the aggregator exactly as a device's
update would (decode, validation, storage, aggregation, the release), at a cost to the
simulation of one encode per update. :func:`run_rounds` runs them on an
:class:`~cloud_aggregator.grid_memory.InMemoryGrid` and reports time and memory per round;
``bench/fl_scale.py`` is its command line (100,000 devices in one process).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.grid_memory import InMemoryGrid
from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob
from cloud_aggregator.service import AggregatorService
from common import fl_protocol as fl
from common import protocol as proto
from store import DesiredTraining, Store

HEAD_SHAPES = {"head.weight": (5, 32), "head.bias": (5,)}  # the beat model's head


class SyntheticDevice:
    """A device that sends a random int8 update for each round it is invited to.

    Parameters
    ----------
    client_id : str
        Its id.
    shapes : mapping of str to tuple of int
        Tensor shapes of the release (the update's shapes).
    scale : float
        Standard deviation of the update's entries.
    seed : int
        Seed of its updates.
    """

    __slots__ = ("_done", "_rng", "_scale", "_shapes", "announcement", "client_id")
    _decoded: tuple[bytes, fl.RoundAnnouncement | None] = (b"", None)  # shared by all devices

    def __init__(
        self, client_id: str, shapes: Mapping[str, tuple[int, ...]], scale: float = 0.01,
        seed: int = 0,
    ) -> None:  # fmt: skip
        self.client_id = client_id
        self.announcement: fl.RoundAnnouncement | None = None
        self._shapes, self._scale = shapes, scale
        self._rng = np.random.default_rng(seed)
        self._done: str | None = None  # the last round answered

    def subscriptions(self) -> list[str]:
        """The round announcement only (the update needs no model)."""
        return [proto.round_current_topic()]

    def on_message(self, topic: str, payload: bytes) -> None:
        """Keep the latest announcement (an empty or malformed one clears it)."""
        cached, ann = SyntheticDevice._decoded
        if payload is not cached:  # the grid hands every device the same bytes: decode once
            try:
                ann = fl.decode_round(payload) if payload else None
            except proto.ProtocolError:
                ann = None
            SyntheticDevice._decoded = (payload, ann)
        self.announcement = ann

    def poll(self) -> list[tuple[str, bytes]]:
        """The update for an announced round that invites this device, once per round."""
        a = self.announcement
        if a is None or a.round_id == self._done or not a.invites(self.client_id):
            return []
        self._done = a.round_id
        delta = {
            k: self._rng.normal(0, self._scale, s).astype(np.float32)
            for k, s in self._shapes.items()
        }
        update = fl.ClientUpdate(a.round_id, self.client_id, a.model_version, 100, delta)
        topic = proto.client_topic(proto.Channel.UPDATE, self.client_id)
        return [(topic, fl.encode_update(update))]


def seed_head_release(store: Store, seed: int = 0) -> None:
    """Store a random beat-model head as the first release (what the devices update)."""
    rng = np.random.default_rng(seed)
    head = {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in HEAD_SHAPES.items()}
    store.put_model(stored_blob(fl.ModelRelease("v0", 0, head), {}), format=RELEASE_FORMAT)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_rounds(
    store: Store, n_devices: int, rounds: int, *, fraction: float = 1.0, seed: int = 0,
    deadline_s: float = 3600.0, max_seconds: float = 7200.0,
) -> dict[str, Any]:  # fmt: skip
    """``rounds`` rounds of ``n_devices`` synthetic devices through the service, in memory.

    Returns the time to bring the devices online (their statuses), and per round: invited,
    updates stored, wall time from opening to the new release split into the devices' and the
    aggregator's seconds, aggregation time and the peak resident memory after it (MB).
    Raises TimeoutError after ``max_seconds``.
    """
    seed_head_release(store, seed)
    devices = [
        SyntheticDevice(f"sim-{i:06d}", HEAD_SHAPES, seed=seed * 1_000_003 + i)
        for i in range(n_devices)
    ]
    grid = InMemoryGrid(devices, seed=seed)
    device_s = _time_devices(grid)
    settings = AggregatorSettings(
        worker="scale", poll_s=0.2, seed=seed, round_interval_s=0.0, screen_suspects=False
    )
    service = AggregatorService(store, grid, settings)
    t0 = time.perf_counter()
    while sum(service.online.values()) < n_devices:
        service.step()
    online_s = time.perf_counter() - t0
    store.set_training_control(
        desired=DesiredTraining.RUNNING, task="beat", strategy="fedavg", rounds=rounds,
        config={"min_clients": 1, "fraction": fraction, "quorum_fraction": 1.0,
                "deadline_s": deadline_s, "overselect": 0.0},
        updated_by="scale",
    )  # fmt: skip
    out: list[dict[str, Any]] = []
    t_round, dev0 = time.perf_counter(), device_s[0]
    give_up = time.monotonic() + max_seconds
    while store.get_training_control().desired == DesiredTraining.RUNNING:
        if time.monotonic() > give_up:
            raise TimeoutError(f"{len(out)} of {rounds} rounds within {max_seconds:g} s")
        service.step()
        for h in service.history[len(out) :]:
            out.append(_round_row(h, time.perf_counter() - t_round, device_s[0] - dev0))
            t_round, dev0 = time.perf_counter(), device_s[0]
    return {"devices": n_devices, "online_s": round(online_s, 2), "rounds": out,
            "peak_rss_mb": round(peak_rss_mb(), 1)}  # fmt: skip


def _time_devices(grid: InMemoryGrid) -> list[float]:
    """Count the seconds the grid spends running the devices (their share of a round's wall
    time is the simulation's, not the aggregator's); returns the running total (a 1-list)."""
    total = [0.0]
    run = grid.run_devices

    def timed(ids: Any = None) -> int:
        t0 = time.perf_counter()
        try:
            return run(ids)
        finally:
            total[0] += time.perf_counter() - t0

    grid.run_devices = timed  # type: ignore[method-assign]
    return total


def _round_row(h: Mapping[str, Any], wall_s: float, device_s: float) -> dict[str, Any]:
    """One round: wall time split into the devices' and the aggregator's, s."""
    agg_s = max(1e-9, wall_s - device_s)
    n = float(h.get("received") or 0)
    return {
        "round": h.get("round_no"), "state": h.get("state"), "invited": h.get("selected"),
        "updates": n, "wall_s": round(wall_s, 2), "devices_s": round(device_s, 2),
        "aggregator_s": round(agg_s, 2), "aggregate_s": round(float(h.get("aggregate_s") or 0), 2),
        "aggregator_updates_per_s": round(n / agg_s, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }  # fmt: skip
