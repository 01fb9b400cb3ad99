"""Settings of the aggregator service (one frozen dataclass, loaded by ``load_settings``).

Environment variables are ``MEDCHAIN_AGG_<FIELD>`` (e.g. ``MEDCHAIN_AGG_BROKER_URL``); a TOML
file may hold an ``[aggregator]`` table. Per-run choices (strategy, rounds, local epochs...)
come from the store's training control, written by the web's "start training" button or by
``medchain aggregator --start``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


def default_worker() -> str:
    """A stable worker name per host, so a restarted aggregator renews its own round claim."""
    return f"agg-{socket.gethostname()}"[:64]


@dataclass(frozen=True)
class AggregatorSettings:
    """Aggregator service settings.

    Attributes
    ----------
    broker_url, store_url : str
        ``mqtt[s]://user:pw@host:port`` and ``sqlite:///...`` / ``postgresql://...``.
    worker : str
        Name of this replica (MQTT client id, round claims); empty = ``agg-<hostname>``.
    shared_group : str
        MQTT 5 shared-subscription group of the replicas (``$share/<group>/...``).
    task : str
        Task whose rounds this aggregator runs (``beat``).
    initial_model : Path, optional
        ONNX (with card and head npz beside it) seeded as version 1 into an empty store.
    fraction, min_clients, quorum_fraction, min_quorum, deadline_s, max_attempts
        Round policy (see ``cloud_aggregator.rounds.RoundPolicy``).
    overselect, grace_fraction : float
        Clients invited beyond the target (share) and the wait for stragglers once the quorum
        is in (share of the time the quorum took): the closing rule of ``rounds.py``.
    norm_bound, max_compression_error : float
        Validation bounds on the update L2 norm and the reported relative compression error.
    weight_cap, norm_mult : float
        Robust bounds of every round (``cloud_aggregator.robust``): a device's weight is at most
        ``weight_cap`` times the median claimed example count, its delta norm at most
        ``norm_mult`` times the cohort's median norm (0 turns a bound off).
    validation : str
        The server's held-out labelled set for the release gate and the per-round metrics:
        ``ds1``, a comma-separated list of MIT-BIH records, or an ``.npz`` file with ``beat``,
        ``rr`` and ``labels`` (empty = no server-side evaluation, no gate).
    screen_suspects : bool
        With a validation set, also score each round without the updates a robust bound had to
        change and keep the better candidate; turn off when the "validation" set is a test set
        that must not steer training (benchmarks).
    gate_margin, gate_class_margin : float
        The release gate (``cloud_aggregator.release_gate``): the largest accepted fall of
        macro-F1 and of any class's sensitivity against the current model (absolute, 0..1).
    dp_clip, dp_noise, dp_delta : float
        Client-level DP: L2 clip (0 = off), noise multiplier z, and the reported delta.
    chunk_bytes : int
        Largest MQTT payload before a model is chunked, bytes.
    max_update_bytes : int
        Largest whole client update, bytes; a device may hold twice this in incomplete chunked
        updates in the store (a whole-model fp32 update of the beat student is ~94 KB).
    lease_s : float
        Aggregation claim lease, s (another replica takes over after it lapses).
    poll_s : float
        Longest wait for one inbound message, s.
    ca_file : str
        CA bundle for ``mqtts://`` (empty = system default).
    seed : int or None
        Seed of the DP noise and of the rounds' draws. None (the default, production): fresh
        operating-system entropy, so nobody can predict the noise or who is invited; an int
        only for reproducible simulations and benches.
    round_interval_s : float
        Least time between the end of one round and the opening of the next, s. Devices
        label new beats between rounds; 0 opens the next round at once.
    distill_every : int
        Distil the global model into a new int8 student every this many rounds (0 = never;
        needs the ``train`` extra and a transfer set).
    """

    broker_url: str = "mqtt://127.0.0.1:1883"
    store_url: str = "sqlite:///medchain.db"
    worker: str = ""
    shared_group: str = "agg"
    task: str = "beat"
    initial_model: Path | None = None
    fraction: float = 1.0
    min_clients: int = 2
    quorum_fraction: float = 0.5
    min_quorum: int = 1
    deadline_s: float = 60.0
    max_attempts: int = 3
    overselect: float = 0.3
    grace_fraction: float = 0.5
    norm_bound: float = 10.0
    max_compression_error: float = 0.05
    weight_cap: float = 3.0
    norm_mult: float = 3.0
    validation: str = ""
    screen_suspects: bool = True
    gate_margin: float = 0.05
    gate_class_margin: float = 0.15
    dp_clip: float = 0.0
    dp_noise: float = 0.0
    dp_delta: float = 1e-5
    chunk_bytes: int = 256 * 1024
    max_update_bytes: int = 8 * 1024 * 1024
    lease_s: float = 30.0
    poll_s: float = 0.2
    ca_file: str = ""
    seed: int | None = None
    distill_every: int = 0
    round_interval_s: float = 0.0

    @property
    def worker_name(self) -> str:
        """The worker name to use."""
        return self.worker or default_worker()

    @property
    def process_tag(self) -> str:
        """For logs: worker and pid."""
        return f"{self.worker_name}/{os.getpid()}"
