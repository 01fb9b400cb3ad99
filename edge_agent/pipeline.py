"""The pure ECG path of the agent: chunks in, classified beats out.

``EcgPipeline`` owns the stream bookkeeping (sequence numbers, gaps, duplicates, sample ->
wall-clock time) and batches the beats found in one chunk into a single inference call. The
signal processing (causal filter, streaming R-peak detector, beat windows and RR features per
the model card) sits behind the ``BeatFeaturizer`` port and the model behind the
``BeatClassifier`` port, so this module imports neither onnxruntime nor any DSP details.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.types import BeatPrediction, SignalChunk, StreamKind

_LOGGER = logging.getLogger(__name__)
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BeatBatch:
    """Model inputs for the beats completed by one chunk.

    Attributes
    ----------
    samples : ndarray, shape (n_beats,), int64
        R-peak positions as stream sample indices (at the source rate).
    windows : ndarray, shape (n_beats, ...), float32
        Beat windows exactly as the model's card asks (rate, length, filtering, scaling).
    rr : ndarray, shape (n_beats, n_rr_features), float32
        RR features as the card asks.
    rr_s : ndarray, shape (n_beats,), float64
        RR interval before each beat, s (NaN for the first beat of a stream).
    """

    samples: npt.NDArray[np.int64]
    windows: npt.NDArray[np.float32]
    rr: npt.NDArray[np.float32]
    rr_s: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.samples.shape[0])


@dataclass(frozen=True, slots=True)
class EcgResult:
    """What one chunk produced.

    Attributes
    ----------
    beats : list of BeatPrediction
        Classified beats, in stream order.
    batch : BeatBatch
        Their model inputs (kept for local training when labels arrive).
    reset : bool
        True if a gap or a rate change reset the stream before this chunk; open episodes
        should be closed by the caller.
    """

    beats: list[BeatPrediction]
    batch: BeatBatch
    reset: bool


def empty_batch() -> BeatBatch:
    """A batch with no beats."""
    return BeatBatch(
        np.zeros(0, np.int64),
        np.zeros((0, 0), np.float32),
        np.zeros((0, 0), np.float32),
        np.zeros(0, np.float64),
    )


def concat_batches(a: BeatBatch, b: BeatBatch) -> BeatBatch:
    """Two batches as one (``a`` first); an empty batch contributes nothing."""
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    return BeatBatch(
        np.concatenate([a.samples, b.samples]),
        np.concatenate([a.windows, b.windows]),
        np.concatenate([a.rr, b.rr]),
        np.concatenate([a.rr_s, b.rr_s]),
    )


class BeatFeaturizer(Protocol):
    """Streaming ECG front end: filter, detect R peaks, cut windows, compute RR features."""

    def push(self, ecg_uv: npt.NDArray[np.float64], start: int) -> BeatBatch:
        """Consume consecutive samples (µV, shape (n,)) starting at stream index ``start``."""
        ...

    def reset(self, sampling_rate: float) -> None:
        """Forget all state (stream start, gap) and take the device rate in Hz."""
        ...

    def flush(self) -> BeatBatch:
        """End of stream: beats still waiting for their next R peak or their context."""
        ...


class BeatClassifier(Protocol):
    """A beat model: batched windows + RR features -> class probabilities."""

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in output order."""
        ...

    @property
    def version(self) -> str:
        """Model version recorded with every prediction."""
        ...

    def predict(
        self, windows: npt.NDArray[np.float32], rr: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Probabilities, shape (n_beats, n_classes), rows summing to 1."""
        ...


@dataclass
class StreamClock:
    """Maps stream sample indices to wall-clock time for one stream.

    Anchored on the first chunk; re-anchored after a gap, so device clock drift never
    accumulates across gaps.
    """

    fs: float = 0.0
    seq0: int = 0
    t0_ns: int = 0
    next_seq: int | None = None

    def anchor(self, chunk: SignalChunk) -> None:
        self.fs, self.seq0, self.t0_ns = chunk.fs, chunk.seq, chunk.t0_ns
        self.next_seq = chunk.seq

    def time_ns(self, sample: int) -> int:
        return self.t0_ns + round((sample - self.seq0) * _NS / self.fs)


class EcgPipeline:
    """Chunks of ECG -> beat predictions, one batched inference per chunk.

    Parameters
    ----------
    client_id : str
        Device id stamped on every prediction.
    featurizer : BeatFeaturizer
        The streaming front end.
    classifier : BeatClassifier
        The model adapter.
    lead : int
        ECG channel (column) used.

    Notes
    -----
    Duplicated samples (``seq`` below the next expected index) are dropped; a gap (``seq``
    above it) or a change of sampling rate resets the front end, because bridging a gap would
    invent RR intervals. ``gaps`` and ``duplicates`` count those cases.
    """

    def __init__(
        self,
        client_id: str,
        featurizer: BeatFeaturizer,
        classifier: BeatClassifier,
        lead: int = 0,
    ) -> None:
        self.client_id = client_id
        self._feat = featurizer
        self._clf = classifier
        self._lead = lead
        self._clock = StreamClock()
        self.gaps = 0
        self.duplicates = 0
        self.beats = 0

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names of the classifier in use."""
        return self._clf.classes

    def set_classifier(
        self, classifier: BeatClassifier, featurizer: BeatFeaturizer | None = None
    ) -> None:
        """Switch to a new model (e.g. a new global model from a federated round); beats from
        the next chunk on carry its version. A model with another input contract comes with
        its own ``featurizer``: the stream then restarts at the next chunk (the one or two
        beats the old front end still held are dropped)."""
        self._clf = classifier
        if featurizer is not None:
            self._feat = featurizer
            self._clock.next_seq = None

    @property
    def classifier(self) -> BeatClassifier:
        """The classifier in use."""
        return self._clf

    @property
    def featurizer(self) -> BeatFeaturizer:
        """The front end in use."""
        return self._feat

    @property
    def model_version(self) -> str:
        """Version of the classifier in use."""
        return self._clf.version

    def process(self, chunk: SignalChunk) -> EcgResult:
        """Classify the beats completed by ``chunk`` (one batched model call).

        Before a reset (gap, rate change) the beats still held by the front end are flushed
        and classified with the old stream's clock, so no detected beat is lost.
        """
        if chunk.kind != StreamKind.ECG:
            raise ValueError(f"EcgPipeline takes ECG chunks, got {chunk.kind}")
        x = chunk.samples[:, min(self._lead, chunk.samples.shape[1] - 1)]
        start = chunk.seq
        expected = self._clock.next_seq
        before: list[BeatPrediction] = []
        held = empty_batch()
        reset = expected is not None and (chunk.fs != self._clock.fs or start > expected)
        if expected is not None and start < expected and chunk.fs == self._clock.fs:
            overlap = expected - start
            self.duplicates += min(overlap, x.shape[0])
            if overlap >= x.shape[0]:
                return EcgResult([], empty_batch(), False)
            x, start = x[overlap:], expected
        elif expected is None or reset:
            if reset:
                _LOGGER.warning(
                    "stream discontinuity before seq %d (expected %d, %s -> %s Hz): detector reset",
                    start,
                    expected,
                    self._clock.fs,
                    chunk.fs,
                )
                self.gaps += 1
                held = self._feat.flush()
                before = self._classify(held)
            self._feat.reset(chunk.fs)
            self._clock.anchor(chunk)
        self._clock.next_seq = start + x.shape[0]
        batch = self._feat.push(np.ascontiguousarray(x, dtype=np.float64), start)
        beats = self._classify(batch)
        if before:
            batch = concat_batches(held, batch)
        return EcgResult(before + beats, batch, reset)

    def flush(self) -> EcgResult:
        """End of stream: classify the beats the front end still holds."""
        if self._clock.next_seq is None:
            return EcgResult([], empty_batch(), False)
        batch = self._feat.flush()
        return EcgResult(self._classify(batch), batch, False)

    def _classify(self, batch: BeatBatch) -> list[BeatPrediction]:
        if len(batch) == 0:
            return []
        probs = self._clf.predict(batch.windows, batch.rr)
        classes = self._clf.classes
        if probs.shape != (len(batch), len(classes)):
            raise ValueError(f"classifier returned shape {probs.shape} for {len(batch)} beats")
        best = np.argmax(probs, axis=1)
        version = self._clf.version
        out = [
            BeatPrediction(
                self.client_id,
                self._clock.time_ns(int(s)),
                int(s),
                classes[int(k)],
                {c: round(float(p), 5) for c, p in zip(classes, row, strict=True)},
                version,
                float(rr),
            )
            for s, k, row, rr in zip(batch.samples, best, probs, batch.rr_s, strict=True)
        ]
        self.beats += len(out)
        return out
