"""The buffer's labelled beats as training examples for FEDERATED's trainer (pure adapter).

Implements ``edge_agent.trainer.LabelledExampleSource``: inputs keyed by the model's ONNX input
names (waveform shaped as the graph expects, RR features), labels as class indices in the model
card's order. Labels the model does not know (e.g. a clinician's free text) are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from edge_agent.labelled_beats import LabelledBeats
from edge_agent.trainer import LabelledExamples

_LOGGER = logging.getLogger(__name__)

Feeds = Callable[
    [npt.NDArray[np.float32], npt.NDArray[np.float32]], dict[str, npt.NDArray[np.float32]]
]


class BufferExampleSource:
    """Labelled beats of a buffer -> ``LabelledExamples``.

    Parameters
    ----------
    read : callable
        ``limit -> LabelledBeats`` (``SqliteBuffer.labels.beats``).
    classes : sequence of str
        The model's classes, in card order.
    feeds : callable
        ``(windows, rr) -> {input name: array}`` (``OnnxBeatClassifier.feeds``).
    """

    def __init__(
        self, read: Callable[[int], LabelledBeats], classes: Sequence[str], feeds: Feeds
    ) -> None:
        self._read = read
        self._index = {c: i for i, c in enumerate(classes)}
        self._feeds = feeds

    def labelled_examples(self, limit: int) -> LabelledExamples:
        """Up to ``limit`` newest labelled beats."""
        beats = self._read(limit)
        keep = [i for i, lab in enumerate(beats.labels) if lab in self._index]
        if len(keep) < len(beats):
            _LOGGER.info("%d labelled beats have classes the model lacks", len(beats) - len(keep))
        if not keep:
            empty = self._feeds(np.zeros((0, 1), np.float32), np.zeros((0, 0), np.float32))
            return LabelledExamples(empty, np.zeros(0, np.int64))
        idx = np.array(keep)
        labels = np.array([self._index[beats.labels[i]] for i in keep], np.int64)
        inputs = self._feeds(beats.windows[idx], beats.rr[idx])
        return LabelledExamples(inputs, labels, beats.in_af[idx])
