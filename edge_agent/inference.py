"""onnxruntime adapter: the beat model (int8 QDQ ONNX) behind the ``BeatClassifier`` port.

The model card beside the ONNX file names the graph's inputs (waveform first, then the RR
feature vector when the model has one) and outputs (``probs`` and, for head-only training,
``embedding``). One session, ``intra_op_num_threads`` = 1 by default: on a Raspberry Pi the
other cores stay free for BLE and MQTT, and batched per-chunk calls keep the overhead low.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import ModelCard, card_path_for, file_sha256, load_card
from common.payloads import MAX_MODEL_VERSION
from edge_agent.beat_quality import VTemplateGate
from edge_agent.kernel_check import kernel_gap
from edge_agent.rr_split import RRSplit

_LOGGER = logging.getLogger(__name__)


def wire_version(version: str) -> str:
    """``version`` if the wire takes it, else its start and a hash of the whole (64 characters):
    a longer one would make the store refuse every beat the device sends."""
    if len(version) <= MAX_MODEL_VERSION:
        return version
    digest = hashlib.sha256(version.encode()).hexdigest()[:12]
    return f"{version[: MAX_MODEL_VERSION - len(digest) - 1]}~{digest}"


# uint8 Max (opset 13), which the int8 beat models' polyphase stages run (models.quantize.int8_max),
# is in onnxruntime's CPU kernels from 1.24 on (1.23.2 refuses the shipped beat.onnx)
ORT_MIN_VERSION = "1.24"


class OnnxBeatClassifier:
    """Batched beat classification with onnxruntime.

    Parameters
    ----------
    model_path : Path
        The ONNX file; its card is ``<stem>.card.json`` beside it.
    intra_op_threads : int
        onnxruntime intra-op threads.
    verify_sha256 : bool
        Check the file against the card's artifact hash before loading.
    release : str, optional
        Federated release this model came from (``v3``): it joins the version
        (``<card version>@v3``) and decides which personal heads fit it.

    Raises
    ------
    DataNotFoundError
        If the model or its card is missing.
    CorruptInputError
        If the card is invalid, the hash differs, or the graph does not match the card.
    """

    def __init__(
        self,
        model_path: Path | str,
        intra_op_threads: int = 1,
        verify_sha256: bool = True,
        release: str | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise DataNotFoundError(f"model {path.name!r}", str(path.parent))
        self.card: ModelCard = load_card(card_path_for(path))
        if (
            verify_sha256
            and self.card.artifact.sha256
            and file_sha256(path) != self.card.artifact.sha256
        ):
            raise CorruptInputError(f"{path} does not match the sha256 in its model card")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # a ~50 KB model needs no memory arena: keeps the agent's RSS low on a Pi
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises plain Exception subclasses on bad graphs
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptInputError(
                f"onnxruntime {ort.__version__} cannot load {path}: {detail} (the int8 beat "
                f"models need onnxruntime >= {ORT_MIN_VERSION})"
            ) from exc
        graph_inputs = [i.name for i in self._session.get_inputs()]
        graph_outputs = [o.name for o in self._session.get_outputs()]
        card_inputs = [t.name for t in self.card.onnx.inputs]
        if set(card_inputs) != set(graph_inputs):
            raise CorruptInputError(
                f"model inputs {graph_inputs} differ from the card's {card_inputs}"
            )
        if "probs" not in graph_outputs:
            raise CorruptInputError(f"model has no 'probs' output (outputs {graph_outputs})")
        try:  # this CPU's fused int8 kernels vs the model's reference arithmetic (warns)
            self.kernel_gap = kernel_gap(path, self.card, self._session)
        except Exception as exc:  # onnxruntime's own error types
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorruptInputError(f"{path}: the load-time kernel check failed: {detail}") from exc
        self._signal = self.card.onnx.inputs[0]
        self._features = self.card.onnx.inputs[1] if len(self.card.onnx.inputs) > 1 else None
        self._has_embedding = "embedding" in graph_outputs
        self._classes = tuple(self.card.classes)
        self._head: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
        self._gate: VTemplateGate | None = None
        self._rr_split: RRSplit | None = None
        self.release = release
        base = self.card.version or self.card.artifact.sha256[:12]
        self._base_version = wire_version(f"{base}@{release}" if release else base)
        self._version = self._base_version
        _LOGGER.info(
            "beat model %s (%s, %s): inputs %s",
            path.name,
            self._version,
            self.card.artifact.quantization,
            card_inputs,
        )

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in ``probs`` column order."""
        return self._classes

    @property
    def version(self) -> str:
        """Model version (card ``version``, else the start of its sha256)."""
        return self._version

    @property
    def has_embedding(self) -> bool:
        """True if the graph exposes the penultimate ``embedding`` (head-only training)."""
        return self._has_embedding

    def feeds(
        self, windows: npt.NDArray[np.float32], rr: npt.NDArray[np.float32]
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Graph inputs by name: windows (n, L) reshaped to the graph's (n, 1, L), RR (n, K)."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        rank = len(self._signal.shape)
        if x.ndim == 2 and rank == 3:
            x = x[:, None, :]  # (N, L) -> (N, 1, L): one lead
        feeds = {self._signal.name: x}
        if self._features is not None:
            feeds[self._features.name] = np.ascontiguousarray(rr, dtype=np.float32)
        return feeds

    def set_head(
        self,
        weight: npt.NDArray[np.float32] | None,
        bias: npt.NDArray[np.float32] | None,
        tag: str = "personal",
        gate: VTemplateGate | None = None,
        rr_split: RRSplit | None = None,
    ) -> None:
        """Use a personal linear head on the frozen backbone's embedding (``None`` restores the
        model's own head): ``probs = softmax(embedding @ W.T + b)``, W (C, E), b (C,), then the
        global RR gate's rhythm evidence if given (``edge_agent.rr_split``: a beat whose RR
        features are premature beyond the patient's threshold is S even if the head says N),
        then the patient's VEB template gate if given
        (``edge_agent.beat_quality``: on channel 0 of the windows, a V call unlike the
        patient's labelled VEBs becomes Q).

        Raises
        ------
        CorruptInputError
            If the model has no embedding output or the shapes (head, gate) do not fit.
        """
        if weight is None or bias is None:
            self._head = None
            self._gate = None
            self._rr_split = None
            self._version = self._base_version
            return
        if not self._has_embedding:
            raise CorruptInputError("this model has no 'embedding' output for a personal head")
        dim = self.card.head.embedding_dim if self.card.head else weight.shape[1]
        if weight.shape != (len(self._classes), dim) or bias.shape != (len(self._classes),):
            raise CorruptInputError(
                f"personal head {weight.shape}/{bias.shape} does not fit "
                f"{len(self._classes)} classes x {dim} embedding"
            )
        length = self._signal.shape[-1] if self._signal.shape else None
        if gate is not None and isinstance(length, int) and gate.templates.shape[1] != length:
            raise CorruptInputError(
                f"V gate templates of {gate.templates.shape[1]} samples vs {length}-sample windows"
            )
        if rr_split is not None:
            k = self._features.shape[-1] if self._features and self._features.shape else None
            if max(rr_split.n, rr_split.s) >= len(self._classes) or (
                isinstance(k, int) and rr_split.weight.shape != (k,)
            ):
                raise CorruptInputError("the personal RR split does not fit this model")
        self._head = (weight.astype(np.float32), bias.astype(np.float32))
        self._gate = gate
        self._rr_split = rr_split
        self._version = wire_version(f"{self._base_version}+{tag}")

    def predict(
        self, windows: npt.NDArray[np.float32], rr: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Class probabilities, shape (n_beats, n_classes)."""
        if windows.shape[0] == 0:
            return np.zeros((0, len(self._classes)), np.float32)
        if self._head is not None:
            emb = self.embed(windows, rr).astype(np.float64)
            logits = emb @ self._head[0].T.astype(np.float64) + self._head[1]
            logits -= logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            out: npt.NDArray[np.float32] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            if self._rr_split is not None:
                out = self._rr_split.apply(out, rr)
            if self._gate is not None:
                out = self._gate.apply(out, windows[:, 0] if windows.ndim == 3 else windows)
            return out
        (probs,) = self._session.run(["probs"], self.feeds(windows, rr))
        return np.asarray(probs, dtype=np.float32)

    def embed(
        self, windows: npt.NDArray[np.float32], rr: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Penultimate activations, shape (n_beats, embedding_dim), for head-only training."""
        if not self._has_embedding:
            raise CorruptInputError("this model has no 'embedding' output")
        (emb,) = self._session.run(["embedding"], self.feeds(windows, rr))
        return np.asarray(emb, dtype=np.float32)
