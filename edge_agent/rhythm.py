"""Rhythm model on the stream: AF episodes from 30 s windows, signal quality from 10 s segments.

``RhythmMonitor`` (pure) keeps the recent ECG of the stream and, with a ``WindowScorer``
(``edge_agent.rhythm_verdict``):

- judges every ``quality_window_s`` segment readable or not (the model's noisy class, or a flat
  line), and AF or not (the arg-max), and tells the :class:`~edge_agent.quality_gate.QualityGate`,
  which holds the beats until then, passes unreadable ones on as Q and S calls in AF as N;
- scores every non-overlapping ``window_s`` window; consecutive windows with P(AF) >= ``enter``
  (staying above ``leave``) form one ``af_episode`` event (``source: "rhythm"``). A window the
  model calls noisy, or holding an unreadable segment, is no AF evidence;
- at the end of the stream or a gap, scores what is left when it is at least 9 s long (the
  model decides from 9 s up).

``OnnxRhythmScorer`` is the onnxruntime adapter for a shipped rhythm model: v2
(``models/pretrained/rhythm.onnx``: ``ecg`` + ``features`` in; N / AF / O / noisy) or the v1
feature softmax (``rhythm_softmax.onnx``: ``features`` only; N / AF / O).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import ModelCard, card_path_for, load_card
from common.signals.rhythm_input import (
    FEATURE_NAMES,
    MIN_S,
    RhythmInput,
    prepare_rhythm_input,
    quality_flags,
)
from common.types import Event, SignalChunk, event_id
from edge_agent.quality_gate import JudgementSink
from edge_agent.rhythm_verdict import UNREADABLE, RhythmVerdict, WindowScorer, windows_verdict

_LOGGER = logging.getLogger(__name__)
_NS = 1_000_000_000


class OnnxRhythmScorer:
    """onnxruntime adapter of a rhythm model and its card (a :class:`WindowScorer`).

    Raises
    ------
    DataNotFoundError, CorruptInputError
        Missing model/card, a card whose features are not ``RHYTHM_FEATURES``, no AF class, an
        ``ecg`` input of other than one channel.
    """

    def __init__(self, model_path: Path | str) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise DataNotFoundError(f"rhythm model {path.name!r}", str(path.parent))
        self.card: ModelCard = load_card(card_path_for(path))
        names = tuple(self.card.input_contract.parameters.get("feature_names", ()))
        if names != FEATURE_NAMES:
            raise CorruptInputError(f"rhythm card features {names} differ from {FEATURE_NAMES}")
        if "AF" not in self.card.classes:
            raise CorruptInputError(f"rhythm model has no AF class ({self.card.classes})")
        self._inputs = tuple(i.name for i in self.card.onnx.inputs)
        self.window_s = float(self.card.input_contract.parameters.get("window_s", 30.0))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = False  # small models, windows of varying length: no arena
        opts.enable_mem_pattern = False
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        ecg = [i.shape for i in self._session.get_inputs() if i.name == "ecg"]
        if ecg and (len(ecg[0]) != 3 or ecg[0][1] != 1):  # e.g. a development RR-track model
            raise CorruptInputError(f"rhythm model reads ecg {ecg[0]}; the edge gives (N, 1, L)")

    @property
    def classes(self) -> tuple[str, ...]:
        """Output classes (card order)."""
        return self.card.classes

    @property
    def version(self) -> str:
        """The model's version (card)."""
        return self.card.version

    def probabilities(self, inputs: Sequence[RhythmInput]) -> npt.NDArray[np.float32]:
        """Class probabilities ``(n, len(classes))`` of prepared windows."""
        feats = np.stack([i.features for i in inputs]).astype(np.float32)
        if "ecg" not in self._inputs:  # the v1 feature softmax
            (probs,) = self._session.run(["probs"], {self._inputs[0]: feats})
            return np.asarray(probs, dtype=np.float32)
        out = np.zeros((len(inputs), len(self.classes)), dtype=np.float32)
        lengths = np.array([i.signal.size for i in inputs])
        for length in np.unique(lengths):  # one run per window length (the length axis is free)
            rows = np.flatnonzero(lengths == length)
            ecg = np.stack([inputs[int(r)].signal for r in rows])[:, None, :]
            (probs,) = self._session.run(["probs"], {"ecg": ecg, "features": feats[rows]})
            out[rows] = probs
        return out


class RhythmMonitor:
    """AF episodes and signal quality from the ECG stream (module docstring).

    Parameters
    ----------
    client_id : str
    scorer : WindowScorer
    window_s : float
        AF window, s.
    quality_window_s : float
        Segment judged readable or not, s (>= 9 s: the model's shortest input).
    enter, leave : float
        P(AF) that opens / keeps an episode (hysteresis).
    close_after : int
        Consecutive windows below ``leave`` that end an episode.
    gate : JudgementSink, optional
        Told every segment's judgement (the :class:`~edge_agent.quality_gate.QualityGate`).
    """

    def __init__(
        self,
        client_id: str,
        scorer: WindowScorer,
        window_s: float = 30.0,
        quality_window_s: float = 10.0,
        enter: float = 0.6,
        leave: float = 0.4,
        close_after: int = 2,
        gate: JudgementSink | None = None,
    ) -> None:
        self._cid, self.scorer, self.gate = client_id, scorer, gate
        self._window_s, self._quality_s = window_s, max(quality_window_s, MIN_S)
        self._enter, self._leave, self._close_after = enter, leave, close_after
        self._noisy_class = UNREADABLE in scorer.classes
        self._below = 0
        self._episode: tuple[int, int, float, int] | None = None  # start, end ns, max p, windows
        self._reset(0.0, None, 0, 0)
        self.windows = 0
        self.noisy_windows = 0
        self.unreadable_segments = 0
        self.last_af_probability = float("nan")
        self.last_verdict: RhythmVerdict | None = None
        self.signal_quality = ""  # "ok" / "too noisy": the last judged segment ("" before one)

    def _reset(self, fs: float, seq: int | None, start: int, t0_ns: int) -> None:
        self._fs, self._next = fs, seq
        self._x = np.zeros(0)
        self._x0 = start  # stream index of self._x[0]
        self._t0 = t0_ns  # its time, ns
        self._af_at = self._q_at = start  # next AF window / quality segment start
        self._noisy_until = start  # end of the last unreadable segment

    def process(self, chunk: SignalChunk, peaks: list[int], lead: int = 0) -> list[Event]:
        """Feed an ECG chunk (``peaks``: the pipeline's R peaks, unused: the model detects its
        own on each window, as in training)."""
        del peaks
        events: list[Event] = []
        if chunk.fs != self._fs or chunk.seq != self._next:
            events += self.flush()  # a gap ends the episode and the windows
            self._reset(chunk.fs, chunk.seq, chunk.seq, chunk.t0_ns)
        self._next = chunk.seq + chunk.n_samples
        x = chunk.samples[:, min(lead, chunk.samples.shape[1] - 1)]
        self._x = np.concatenate([self._x, np.asarray(x, dtype=np.float64)])
        if self.gate is not None:
            self.gate.seen(self._next, self._fs)
        q, w = round(self._quality_s * self._fs), round(self._window_s * self._fs)
        while self._next >= self._q_at + q:
            self._judge(self._q_at, self._q_at + q)
            self._q_at += q
        while self._next >= self._af_at + w:
            events += self._score(self._af_at, self._af_at + w)
            self._af_at += w
        self._trim()
        return events

    def _segment(self, start: int, end: int) -> npt.NDArray[np.float64]:
        return self._x[start - self._x0 : end - self._x0]

    def _trim(self) -> None:
        newest = self._x0 + self._x.size
        keep = min(self._af_at, self._q_at, newest - round(MIN_S * self._fs))
        if keep > self._x0:
            self._x = self._x[keep - self._x0 :]
            self._t0 += round((keep - self._x0) * _NS / self._fs)
            self._x0 = keep

    def _verdict(self, x: npt.NDArray[np.float64]) -> RhythmVerdict:
        flags = quality_flags(x, self._fs)
        return windows_verdict([prepare_rhythm_input(x, self._fs)], self.scorer, flags)

    def _judge(self, start: int, end: int, context_from: int | None = None) -> None:
        """Judge ``[start, end)`` readable or not (on ``[context_from, end)`` if given)."""
        verdict = self._verdict(self._segment(start if context_from is None else context_from, end))
        noisy = ("flat" in verdict.quality) or (self._noisy_class and verdict.noisy)
        self.signal_quality = "too noisy" if noisy else "ok"
        if noisy:
            self.unreadable_segments += 1
            self._noisy_until = max(self._noisy_until, end)
        if self.gate is not None:
            self.gate.judge(start, end, noisy, af=not noisy and verdict.label == "AF")

    def _score(self, start: int, end: int) -> list[Event]:
        verdict = self._verdict(self._segment(start, end))
        self.last_verdict, self.windows = verdict, self.windows + 1
        noisy = verdict.noisy or self._noisy_until > start
        self.noisy_windows += noisy
        p = 0.0 if noisy else verdict.probabilities.get("AF", 0.0)
        self.last_af_probability = p
        t0 = self._t0 + round((start - self._x0) * _NS / self._fs)
        t_end = t0 + round((end - start) * _NS / self._fs)
        if self._episode is None:
            if p >= self._enter:
                self._episode = (t0, t_end, p, 1)
            return []
        if p < self._leave:
            self._below += 1
            return self._close() if self._below >= self._close_after else []
        self._below = 0
        s, _, hi, n = self._episode
        self._episode = (s, t_end, max(hi, p), n + 1)
        return []

    def flush(self) -> list[Event]:
        """Judge and score what is left (>= 9 s of context), close the open episode (end of
        stream, gap)."""
        events: list[Event] = []
        if self._fs and self._next is not None:
            min_n = round(MIN_S * self._fs)
            if self._next > self._q_at and self._next - self._x0 >= min_n:
                self._judge(self._q_at, self._next, min(self._q_at, self._next - min_n))
                self._q_at = self._next
            if self._next - self._af_at >= min_n:
                events += self._score(self._af_at, self._next)
                self._af_at = self._next
        return events + self._close()

    def _close(self) -> list[Event]:
        ep, self._episode = self._episode, None
        self._below = 0
        if ep is None:
            return []
        s, e, hi, n = ep
        details: dict[str, float | int | str] = {
            "max_probability": round(hi, 3),
            "windows": n,
            "source": "rhythm",
        }
        return [Event(event_id(self._cid, "af_episode", s), self._cid, "af_episode", s, e, details)]
