"""Device-side participation in federated rounds (transport-free).

:class:`FederatedParticipant` is transport-free: feed it every message of its
:meth:`~FederatedParticipant.subscriptions` with ``on_message`` and call ``poll`` (blocking: it
trains; run it in a worker thread from an asyncio agent) to get the ``(topic, payload)`` pairs
to publish with QoS 1. :class:`edge_agent.agent_participant.AgentParticipant` adapts it to the
edge agent's ``Participant`` port; :mod:`edge_agent.federated` re-exports both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common import fl_protocol as fl
from common import protocol as proto
from edge_agent import trainer as tr
from edge_agent.federated_eval import confusion_counts, head_predictions
from edge_agent.inbound import reject_line
from edge_agent.release_cache import ReleaseCache

_LOGGER = logging.getLogger(__name__)
EmbedderFactory = Callable[[bytes], tr.Embedder]


@dataclass
class ParticipantStats:
    """Counters of one participant."""

    rounds_trained: int = 0
    rounds_skipped: int = 0
    bad_messages: int = 0
    releases_unannounced: int = 0
    uplink_bytes: int = 0
    last_error: str = ""
    train_seconds: list[float] = field(default_factory=list)


FullTrainer = Callable[
    [fl.RoundAnnouncement, fl.ModelRelease, tr.LabelledExamples, str, int], fl.ClientUpdate
]


def _torch_trainer() -> FullTrainer | None:
    """The torch whole-model trainer, or None on a device without torch (head only)."""
    try:
        from edge_agent.trainer_torch import full_round_update
    except ImportError:
        return None

    def train(a: fl.RoundAnnouncement, rel: fl.ModelRelease, data: tr.LabelledExamples,
              client_id: str, seed: int) -> fl.ClientUpdate:  # fmt: skip
        return full_round_update(a, rel, data, client_id, seed=seed)

    return train


class FederatedParticipant:
    """Round participation of one device (see the module docstring).

    Parameters
    ----------
    client_id : str
        This device's id (its MQTT username in production).
    examples : LabelledExampleSource
        The device's labelled beats.
    workdir : Path
        Where the personalised head is kept.
    embedder_factory : callable
        ``onnx bytes -> Embedder`` (default :class:`edge_agent.trainer.OnnxEmbedder`).
    chunk_bytes : int
        Largest payload before an update is chunked.
    personalise : bool
        Refresh the personal head after every round.
    classes : sequence of str, optional
        The model's classes in card order: with ``V`` and ``Q`` among them the personal head
        also carries the patient's VEB template gate (``edge_agent.beat_quality``).
    clock : callable
        Unix seconds.
    pinned : collection of str
        sha256 of release payloads used without a round announcement naming them.
    full_trainer : callable or bool
        ``(announcement, release, examples, client_id, seed) -> ClientUpdate`` training the
        whole network in ``full`` rounds; True (default) uses torch when it is installed
        (``edge_agent.trainer_torch``), False or None trains the head only in every round.
    """

    def __init__(
        self,
        client_id: str,
        examples: tr.LabelledExampleSource,
        workdir: Path,
        *,
        embedder_factory: EmbedderFactory = tr.OnnxEmbedder,
        chunk_bytes: int = 256 * 1024,
        personalise: bool = True,
        max_compression_error: float = 0.02,
        clock: Callable[[], float] = time.time,
        classes: Sequence[str] | None = None,
        pinned: Collection[str] = (),
        full_trainer: FullTrainer | None | bool = True,
    ) -> None:
        self.client_id = proto.check_client_id(client_id)
        self.examples = examples
        self.workdir = workdir
        self.embedder_factory = embedder_factory
        self.chunk_bytes = chunk_bytes
        self.personalise = personalise
        self.max_compression_error = max_compression_error
        self.clock = clock
        self.classes = tuple(classes) if classes is not None else None
        self.full_trainer = _torch_trainer() if full_trainer is True else full_trainer or None
        self.stats = ParticipantStats()
        self.announcement: fl.RoundAnnouncement | None = None
        self.releases = ReleaseCache(pinned)
        self._full_topics: list[str] = []  # full releases asked for (none held to patch)
        self.done: set[str] = set()
        self._emb_cache: tuple[str, int, npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = (
            None
        )
        self._windows: npt.NDArray[np.float32] | None = None  # of the cached embeddings' beats
        self._rr: npt.NDArray[np.float32] | None = None  # their RR features (the RR gate's input)
        self._in_af: npt.NDArray[np.bool_] | None = None  # their stretches called AF

    def subscriptions(self) -> list[str]:
        """Topic filters the transport must subscribe (QoS 1): patches of the global model and
        the announcement, plus the full release of an announced version this device can build
        from no patch (a new device, or one that is behind)."""
        # models first: on (re)connect the broker sends the retained releases before the
        # retained announcement that names one of them
        patches = f"{proto.PREFIX}/{proto.Channel.MODEL}/+/from/+"
        return [*self._full_topics, patches, proto.round_current_topic()]

    def new_subscriptions(self) -> list[str]:
        """Filters added since the transport last asked (subscribe them now)."""
        missing = self.releases.missing()
        if missing is not None:
            wanted = f"{proto.model_topic(missing[0])}/#"  # '#' also matches model/v{n} itself
            if wanted not in self._full_topics:
                self._full_topics.append(wanted)
                del self._full_topics[:-2]  # the last two versions asked for are enough
                return [wanted]
        return []

    # ------------------------------------------------------------------ inbound
    def on_message(self, topic: str, payload: bytes) -> None:
        """Take one message; malformed ones are counted and logged, never raised."""
        try:
            t = proto.parse_topic(topic)
            if t.channel == proto.Channel.ROUND:
                self.announcement = fl.decode_round(payload) if payload else None
                a = self.announcement
                self.releases.announce(None if a is None else (a.model_version, a.model_sha256))
            elif t.channel == proto.Channel.MODEL and payload and t.rest[:1] == ("from",):
                self.releases.feed_patch(payload)  # what changed since a version held here
            elif t.channel == proto.Channel.MODEL and payload:
                self.releases.feed(t.ident, payload, self.clock())
        except Exception as exc:  # untrusted bytes: whatever a decoder raises is one reject
            self.stats.bad_messages += 1
            level = logging.WARNING if isinstance(exc, proto.ProtocolError) else logging.ERROR
            _LOGGER.log(level, "%s: %s", self.client_id, reject_line(topic, len(payload), exc))
        self.stats.releases_unannounced = self.releases.unannounced

    def announced_release(self) -> fl.ModelRelease | None:
        """The release the current announcement names (version and sha256), if it is here."""
        a = self.announcement
        return None if a is None else self.releases.get((a.model_version, a.model_sha256))

    # ------------------------------------------------------------------ work
    def pending_round(self) -> fl.RoundAnnouncement | None:
        """The announced round this device should train now, if any."""
        a = self.announcement
        if a is None or a.round_id in self.done or not a.invites(self.client_id):
            return None
        if self.clock() * 1e9 >= a.deadline_ns:
            return None
        return a

    def poll(self) -> list[tuple[str, bytes]]:
        """Train if a round is pending and its model is here; returns messages to publish."""
        a = self.pending_round()
        if a is None:
            return []
        release = self.announced_release()
        if release is None:
            return []  # the announced release (that version with that sha256) is not here yet
        self.done.add(a.round_id)
        try:
            if a.config.mode == "full" and self.full_trainer is not None:
                return self._train_full(a, release)
            # a head round, or a device without torch in a whole-model round: the head only
            return self._train(a, release)
        except Exception as exc:  # a bad model or buffer must never kill the device's agent
            self.stats.rounds_skipped += 1
            self.stats.last_error = f"round {a.round_id}: {type(exc).__name__}: {exc}"
            _LOGGER.exception("%s: training failed", self.client_id)
            return []

    def _train_full(
        self, a: fl.RoundAnnouncement, release: fl.ModelRelease
    ) -> list[tuple[str, bytes]]:
        """Every weight, with torch (a device without it trains the head: :meth:`_train`)."""
        assert self.full_trainer is not None
        data = self.examples.labelled_examples(a.config.max_examples)
        if len(data) == 0:
            self.stats.rounds_skipped += 1
            return []
        seed = int(hashlib.sha256(f"{a.round_id}|{self.client_id}".encode()).hexdigest()[:8], 16)
        try:
            update = self.full_trainer(a, release, data, self.client_id, seed)
        except ValueError as exc:  # not a whole-model release: train its head as in head mode
            _LOGGER.info("%s: round %s: %s; training the head", self.client_id, a.round_id, exc)
            return self._train(a, release)
        self.stats.rounds_trained += 1
        return self._publish(update)

    def _train(self, a: fl.RoundAnnouncement, release: fl.ModelRelease) -> list[tuple[str, bytes]]:
        emb, labels = self._embeddings(release, a.config.max_examples)
        if len(labels) == 0:
            self.stats.rounds_skipped += 1
            _LOGGER.info("%s: round %s skipped: no labelled beats yet", self.client_id, a.round_id)
            return []
        # Federated evaluation: the round's model on this device's beats, before training
        w, b = release.tensors[tr.HEAD_W], release.tensors[tr.HEAD_B]
        evaluation = confusion_counts(head_predictions(emb, w, b), labels, len(b))
        update, fit = tr.head_update(
            round_id=a.round_id,
            client_id=self.client_id,
            base_version=a.model_version,
            global_tensors=release.tensors,
            emb=emb,
            labels=labels,
            config=a.config,
            max_compression_error=self.max_compression_error,
            seed=int(hashlib.sha256(a.round_id.encode()).hexdigest()[:8], 16),
        )
        update = dataclasses.replace(update, metrics={**update.metrics, **evaluation})
        if self.personalise:
            head = tr.personalise(
                release.tensors,
                a.model_version,
                emb,
                labels,
                windows=self._windows,
                classes=self.classes,
                rr=self._rr,
                rr_gate=tr.card_rr_gate(release.files.get("model.card.json", b"")),
                in_af=None if self._in_af is None else self._in_af.tolist(),
            )
            tr.save_personal_head(head, self.workdir)
        self.stats.rounds_trained += 1
        self.stats.train_seconds.append(fit.seconds)
        return self._publish(update)

    def _publish(self, update: fl.ClientUpdate) -> list[tuple[str, bytes]]:
        """The update's messages: one, or its chunks on the chunk sub-topic."""
        payload = fl.encode_update(update)
        self.stats.uplink_bytes += len(payload)
        parts = fl.split_message(payload, update.update_id, self.chunk_bytes)
        # Chunks go on their own sub-topic: aggregator replicas share the whole-update topic
        # (load-balanced) but each gets every chunk, so a split update is never torn apart.
        if len(parts) == 1:
            return [(proto.client_topic(proto.Channel.UPDATE, self.client_id), parts[0])]
        topic = proto.chunk_topic(proto.Channel.UPDATE, self.client_id)
        return [(topic, part) for part in parts]

    def _embeddings(
        self, release: fl.ModelRelease, limit: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        onnx_bytes = release.files.get("model.onnx", b"")
        # In head mode only the head changes between rounds: embeddings stay valid while the
        # backbone does (the aggregator names it; otherwise the whole ONNX is the key) AND the
        # labelled beats are the same. A device keeps labelling beats between rounds, so the
        # examples' fingerprint is part of the key (a first round with no data must not pin an
        # empty cache for every later round).
        backbone = release.metrics.get("backbone_sha256")
        model_key = (
            backbone if isinstance(backbone, str) else hashlib.sha256(onnx_bytes).hexdigest()
        )
        data = self.examples.labelled_examples(limit)
        digest = hashlib.sha256(np.ascontiguousarray(data.labels).tobytes())
        for name in sorted(data.inputs):
            digest.update(np.ascontiguousarray(data.inputs[name]).tobytes())
        if data.in_af is not None:
            digest.update(np.ascontiguousarray(data.in_af).tobytes())
        key = f"{model_key}:{limit}:{digest.hexdigest()}"
        if self._emb_cache is not None and self._emb_cache[0] == key:
            return self._emb_cache[2], self._emb_cache[3]
        emb = (
            self.embedder_factory(onnx_bytes).embed(data.inputs)
            if len(data)
            else np.zeros((0, 0), np.float32)
        )
        self._emb_cache = (key, limit, emb, data.labels)
        # channel 0 of the waveform input (n, C, L), the one rank-3 input, for the V gate
        waves = [x for x in data.inputs.values() if x.ndim == 3 and len(x) == len(data)]
        self._windows = waves[0][:, 0] if len(waves) == 1 else None
        rr = data.inputs.get("rr")  # the beat card's RR feature input
        self._rr = rr if rr is not None and rr.ndim == 2 and len(rr) == len(data) else None
        in_af = data.in_af
        self._in_af = in_af if in_af is not None and len(in_af) == len(data) else None
        return emb, data.labels
