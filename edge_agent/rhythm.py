"""Rhythm (AF) model on the stream: 30 s windows of raw ECG + detected R peaks -> AF episodes.

``RhythmMonitor`` (pure) cuts the ECG into the non-overlapping windows of the rhythm model's
card, computes ``common.signals.rhythm.rhythm_window_features`` (RR irregularity + atrial
activity after QRST cancellation) with the R peaks the beat pipeline already found, and asks a
``RhythmScorer`` for P(AF). Consecutive windows with P(AF) >= ``enter`` (and staying above
``leave``) form one ``af_episode`` event (``source: "rhythm"``). ``OnnxRhythmScorer`` is the
onnxruntime adapter for ``models/pretrained/rhythm_softmax.onnx``.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from common.model_card import card_path_for, load_card
from common.signals.rhythm import RHYTHM_FEATURES, rhythm_window_features
from common.types import Event, SignalChunk, event_id

_LOGGER = logging.getLogger(__name__)
_NS = 1_000_000_000
_LATE_S = 4.0  # s past a window's end before it is scored


class RhythmScorer(Protocol):
    """Rhythm features (n, n_features) -> P(AF) per window, shape (n,)."""

    def af_probability(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...


class OnnxRhythmScorer:
    """onnxruntime adapter of the rhythm model (card: ``features`` in, ``probs`` out).

    Raises
    ------
    DataNotFoundError, CorruptInputError
        Missing model/card, or a card whose features are not ``RHYTHM_FEATURES``.
    """

    def __init__(self, model_path: Path | str) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise DataNotFoundError(f"rhythm model {path.name!r}", str(path.parent))
        self.card = load_card(card_path_for(path))
        names = tuple(self.card.input_contract.parameters.get("feature_names", ()))
        if names != RHYTHM_FEATURES:
            raise CorruptInputError(f"rhythm card features {names} differ from {RHYTHM_FEATURES}")
        if "AF" not in self.card.classes:
            raise CorruptInputError(f"rhythm model has no AF class ({self.card.classes})")
        self.window_s = float(self.card.input_contract.parameters.get("window_s", 30.0))
        self._af = self.card.classes.index("AF")
        self._input = self.card.onnx.inputs[0].name
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = False  # a 620-byte model: no arena
        opts.enable_mem_pattern = False
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def af_probability(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """P(AF) per window."""
        (probs,) = self._session.run(["probs"], {self._input: features.astype(np.float32)})
        return np.asarray(probs, dtype=np.float32)[:, self._af]


class RhythmMonitor:
    """AF episodes from windows of the ECG stream.

    Parameters
    ----------
    client_id : str
    scorer : RhythmScorer
    window_s : float
        Window length of the model, s.
    enter, leave : float
        P(AF) that opens / keeps an episode (hysteresis).
    close_after : int
        Consecutive windows below ``leave`` that end an episode (one short non-AF-looking
        window inside a long AF episode does not split it).
    """

    def __init__(
        self,
        client_id: str,
        scorer: RhythmScorer,
        window_s: float = 30.0,
        enter: float = 0.6,
        leave: float = 0.4,
        close_after: int = 2,
    ) -> None:
        self._cid = client_id
        self._scorer = scorer
        self._window_s = window_s
        self._enter, self._leave = enter, leave
        self._close_after = close_after
        self._below = 0
        self._fs = 0.0
        self._next: int | None = None
        self._x: list[npt.NDArray[np.float64]] = []
        self._n = 0
        self._start = 0  # stream index of the window's first sample
        self._t0 = 0  # its time, ns
        self._peaks: list[int] = []
        self._episode: tuple[int, int, float, int] | None = None  # start, end, max p, windows
        self._ready: deque[tuple[npt.NDArray[np.float64], int, int]] = deque()
        self.windows = 0
        self.last_af_probability = float("nan")

    def process(self, chunk: SignalChunk, peaks: list[int], lead: int = 0) -> list[Event]:
        """Feed an ECG chunk and the R peaks (stream indices) the pipeline found so far."""
        events: list[Event] = []
        if chunk.fs != self._fs or chunk.seq != self._next:
            events += self.flush()  # a gap ends the episode and the window
            self._fs, self._x, self._n = chunk.fs, [], 0
            self._start, self._t0, self._peaks = chunk.seq, chunk.t0_ns, []
            self._ready.clear()
        self._next = chunk.seq + chunk.n_samples
        self._peaks += peaks
        x = chunk.samples[:, min(lead, chunk.samples.shape[1] - 1)]
        size = round(self._window_s * self._fs)
        while x.size:
            take = min(size - self._n, x.size)
            self._x.append(x[:take])
            self._n += take
            x = x[take:]
            if self._n == size:
                self._ready.append((np.concatenate(self._x), self._start, self._t0))
                self._start += size
                self._t0 += round(size * _NS / self._fs)
                self._x, self._n = [], 0
        # the pipeline reports a beat about one RR interval after its R peak: score a window
        # once the stream is _LATE_S past its end, when all its peaks are known
        late = round(_LATE_S * self._fs)
        while self._ready and self._ready[0][1] + size + late <= self._next:
            window, start, t0 = self._ready.popleft()
            events += self._score(window, start, t0)
        return events

    def _score(self, window: npt.NDArray[np.float64], start: int, t0: int) -> list[Event]:
        size = window.size
        inside = [p - start for p in self._peaks if start <= p < start + size]
        self._peaks = [p for p in self._peaks if p >= start + size]
        feats = rhythm_window_features(window, self._fs, np.array(inside, np.int64))
        p = float(self._scorer.af_probability(feats[None, :].astype(np.float32))[0])
        self.windows += 1
        self.last_af_probability = p
        t_end = t0 + round(size * _NS / self._fs)
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
        """Score the complete windows still waiting, close the open episode (end of stream,
        gap)."""
        events: list[Event] = []
        while self._ready:
            events += self._score(*self._ready.popleft())
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
