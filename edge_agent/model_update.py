"""Federated global model releases on the device: verify, persist, hot-swap, survive bad ones.

When the aggregator publishes a new global model (``common.fl_protocol.ModelRelease`` with
``files["model.onnx"]`` and ``files["model.card.json"]``), the participant hands it over only
once a round announcement names its sha256 (or the device pins it:
:mod:`edge_agent.release_cache`); then :class:`ReleaseInstaller`

1. checks the files (present, bounded size, card readable, task ``beat``, the running model's
   classes and embedding size, so labelled beats and personal heads keep their meaning);
2. writes them into ``workdir/models/r{round}-{sha12}/`` (temporary file + rename: a crash
   never leaves a half-written model that a restart would load);
3. loads them (graph vs card) and runs one smoke batch (finite probabilities of the right
   shape) *before* the running classifier is touched;
4. hands the new classifier to ``activate`` (the agent's pipeline switches at the next chunk)
   and records it in ``workdir/models/current.json`` with its sha256, which a restart with
   ``--federated`` reloads (:func:`installed_model`).

A release that fails any step is logged and counted (``models_rejected``); the agent keeps
serving its current model. The card's ``artifact.sha256`` describes the exported base model,
which the aggregator re-heads every round, so the integrity check is the release hash on the
wire plus the sha256 recorded here at install time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import MedchainError
from common.fl_protocol import ModelRelease
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.kernel_check import KERNEL_GAP_LIMIT

_LOGGER = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
CARD_FILE = "model.card.json"  # ``card_path_for(model.onnx)``
MODELS_DIR = "models"
CURRENT_FILE = "current.json"
MAX_MODEL_BYTES = 32 * 1024 * 1024  # the int8 beat model is ~100 KB; bigger is not ours
KEEP_MODELS = 2  # installed folders kept on disk (current + the one before)


class ReleaseRejected(Exception):
    """A release that must not replace the running model (the message says why)."""


@dataclass(frozen=True)
class InstalledModel:
    """The model recorded in ``current.json``."""

    path: Path
    release: str
    round_no: int
    sha256: str


class ReleaseInstaller:
    """``on_release`` hook of FEDERATED's ``AgentParticipant``.

    Parameters
    ----------
    current : OnnxBeatClassifier
        The classifier running now (classes and embedding size every release must keep).
    workdir : Path
        The device's federated state folder.
    activate : callable
        ``classifier -> None``: puts a verified classifier into the running agent.
    stats : object, optional
        Gets ``models_installed`` / ``models_rejected`` incremented (``AgentStats``).
    intra_op_threads : int
        onnxruntime threads of the new session.
    verify : callable, optional
        ``release -> reason or None``: the transport's check (the release hash against the
        round announcement that names it).
    """

    def __init__(
        self,
        current: OnnxBeatClassifier,
        workdir: Path,
        activate: Callable[[OnnxBeatClassifier], None],
        stats: Any = None,
        intra_op_threads: int = 1,
        verify: Callable[[ModelRelease], str | None] | None = None,
    ) -> None:
        self.current = current
        self._verify = verify
        self.root = Path(workdir) / MODELS_DIR
        self._activate = activate
        self._stats = stats
        self._threads = intra_op_threads
        self._round = -1 if current.release is None else _round_of(self.root, current.release)
        self.installed = 0
        self.rejected = 0

    def __call__(self, release: ModelRelease) -> None:
        """The ``on_release`` hook: :meth:`install`."""
        self.install(release)

    def install(self, release: ModelRelease) -> bool:
        """Install ``release``; True if the agent now runs it. Never raises on a bad model."""
        try:
            clf = self._install(release)
        except Exception as exc:  # ReleaseRejected, or a disk/IO error: keep serving
            self._count("models_rejected")
            self.rejected += 1
            _LOGGER.error(
                "global model %s (round %d) rejected, still serving %s: %s",
                release.version,
                release.round_no,
                self.current.version,
                exc if isinstance(exc, ReleaseRejected) else f"{type(exc).__name__}: {exc}",
            )
            return False
        if clf is None:
            return False
        self.current = clf
        self._round = release.round_no
        self.installed += 1
        self._count("models_installed")
        _LOGGER.info("global model %s (round %d) in use", clf.version, release.round_no)
        return True

    def _count(self, name: str) -> None:
        if self._stats is not None and hasattr(self._stats, name):
            setattr(self._stats, name, getattr(self._stats, name) + 1)

    def _install(self, release: ModelRelease) -> OnnxBeatClassifier | None:
        onnx_bytes, card_bytes = release.files.get(ONNX_FILE), release.files.get(CARD_FILE)
        if not onnx_bytes or not card_bytes:
            raise ReleaseRejected(f"release lacks {ONNX_FILE} or {CARD_FILE}")
        if len(onnx_bytes) > MAX_MODEL_BYTES or len(card_bytes) > MAX_MODEL_BYTES:
            raise ReleaseRejected(f"release files exceed {MAX_MODEL_BYTES} bytes")
        problem = self._verify(release) if self._verify is not None else None
        if problem:
            raise ReleaseRejected(problem)
        if release.round_no < self._round:
            _LOGGER.info("global model %s is older than the one in use: ignored", release.version)
            return None
        sha = hashlib.sha256(onnx_bytes).hexdigest()
        if release.version == self.current.release and sha == _sha_of(self.root, self.current):
            return None  # the same release again (retained message after a reconnect)
        folder = self.root / f"r{release.round_no}-{sha[:12]}"
        _write_atomic(folder / ONNX_FILE, onnx_bytes)
        _write_atomic(folder / CARD_FILE, card_bytes)
        try:
            clf = self._load(folder / ONNX_FILE, release.version)
            try:
                self._activate(clf)
            except MedchainError as exc:  # e.g. a card whose beat spec the featurizer refuses
                raise ReleaseRejected(str(exc)) from exc
        except ReleaseRejected:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        record: dict[str, object] = {"file": str(folder / ONNX_FILE), "release": release.version}
        record |= {"round_no": release.round_no, "sha256": sha}
        _write_atomic(self.root / CURRENT_FILE, json.dumps(record).encode())
        _prune(self.root, keep=folder)
        return clf

    def _load(self, path: Path, release: str) -> OnnxBeatClassifier:
        try:
            # the card's artifact hash is the base export's (see module docstring)
            clf = OnnxBeatClassifier(path, self._threads, verify_sha256=False, release=release)
        except Exception as exc:  # onnxruntime raises plain Exception subclasses on bad graphs
            raise ReleaseRejected(f"cannot load: {exc}") from exc
        card, old = clf.card, self.current.card
        if clf.kernel_gap > KERNEL_GAP_LIMIT:  # keep the validated model rather than swap
            raise ReleaseRejected(
                f"this CPU's int8 kernels differ from the release's reference by "
                f"{clf.kernel_gap:.2f} in probability (8-bit weights on x86 without VNNI)"
            )
        if card.task != old.task:
            raise ReleaseRejected(f"task {card.task!r}, expected {old.task!r}")
        if clf.classes != self.current.classes:
            raise ReleaseRejected(f"classes {clf.classes} differ from {self.current.classes}")
        dims = [c.head.embedding_dim if c.head else None for c in (card, old)]
        if dims[0] != dims[1]:
            raise ReleaseRejected(f"embedding size {dims[0]} differs from {dims[1]}")
        _smoke(clf)
        return clf


def _smoke(clf: OnnxBeatClassifier, n: int = 4) -> None:
    """One batch of zeros through the new model: finite probabilities, shape (n, C)."""
    shapes = [t.shape for t in clf.card.onnx.inputs]
    windows = np.zeros([n, *(d if isinstance(d, int) else 1 for d in shapes[0][1:])], np.float32)
    k = shapes[1][-1] if len(shapes) > 1 and isinstance(shapes[1][-1], int) else 0
    rr = np.ones((n, k), np.float32)
    try:
        probs = clf.predict(windows, rr)
    except Exception as exc:  # a graph that loads but cannot run
        raise ReleaseRejected(f"inference failed: {exc}") from exc
    if probs.shape != (n, len(clf.classes)) or not np.all(np.isfinite(probs)):
        raise ReleaseRejected(f"bad output {probs.shape} (finite: {np.isfinite(probs).all()})")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ReleaseRejected("output rows are not probabilities")


def installed_model(workdir: Path) -> InstalledModel | None:
    """The last installed global model, if ``current.json`` and the file still agree."""
    root = Path(workdir) / MODELS_DIR
    try:
        rec = json.loads((root / CURRENT_FILE).read_text(encoding="utf-8"))
        model = InstalledModel(
            Path(rec["file"]), str(rec["release"]), int(rec["round_no"]), str(rec["sha256"])
        )
        actual = hashlib.sha256(model.path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _LOGGER.error("installed model record in %s unreadable (%s): using the default", root, exc)
        return None
    if actual != model.sha256:
        _LOGGER.error("installed model %s does not match its sha256: using the default", model.path)
        return None
    return model


def _round_of(root: Path, release: str) -> int:
    model = installed_model(root.parent)
    return model.round_no if model is not None and model.release == release else -1


def _sha_of(root: Path, clf: OnnxBeatClassifier) -> str | None:
    model = installed_model(root.parent)
    return model.sha256 if model is not None and model.release == clf.release else None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _prune(root: Path, keep: Path) -> None:
    """Drop installed folders beyond the newest ``KEEP_MODELS`` (always keeping ``keep``)."""
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime_ns,
        reverse=True,
    )
    for old in folders[KEEP_MODELS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
