"""The 30 s spot check: one rhythm verdict for one short recording, as a watch takes it.

``SpotCheckRecorder`` (pure) collects the next ``duration_s`` of ECG from a stream (a gap or a
rate change ends the recording early: the model decides from 9 s on, below that the verdict is
``decided: false``). ``SpotCheckService`` runs requests on a device: a ``spot_check`` message on
``control/{client_id}`` arms a recorder on the live stream; when it is full the verdict goes out
as ``spot_result`` on ``spot/{client_id}`` and as a ``spot_check`` event (stored and sent with
the device's predictions). ``medchain edge --source replay:FILE --spot-check`` runs the same
recorder on the first ``duration_s`` of a file (``edge_agent.spot_cli``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from common.protocol import Channel, ProtocolError, client_topic
from common.spot_payloads import (
    SpotCheckRequest,
    SpotCheckResult,
    decode_spot_request,
    encode_spot_result,
)
from common.types import Event, SignalChunk, event_id
from edge_agent.rhythm_verdict import RhythmVerdict, WindowScorer, recording_verdict

_LOGGER = logging.getLogger(__name__)
_NS = 1_000_000_000
SPOT_CHECK_S = 30.0


class SpotCheckRecorder:
    """The next ``duration_s`` of one ECG lead of a stream.

    Parameters
    ----------
    duration_s : float
        Recording length, s.
    lead : int
        Column of the chunks' samples.
    """

    def __init__(self, duration_s: float = SPOT_CHECK_S, lead: int = 0) -> None:
        self.duration_s, self._lead = duration_s, lead
        self._parts: list[npt.NDArray[np.float64]] = []
        self.fs = 0.0
        self.t_start_ns = 0
        self._next: int | None = None
        self._n = 0
        self.done = False

    @property
    def seconds(self) -> float:
        """Seconds recorded so far."""
        return self._n / self.fs if self.fs else 0.0

    def push(self, chunk: SignalChunk) -> bool:
        """Add a chunk; True once the recording is complete (full, or ended by a gap)."""
        if self.done:
            return True
        if self._next is not None and (chunk.seq != self._next or chunk.fs != self.fs):
            self.done = True  # a gap or a new rate: the recording ends here
            return True
        if self._next is None:
            self.fs, self.t_start_ns = chunk.fs, chunk.t0_ns
        self._next = chunk.seq + chunk.n_samples
        want = round(self.duration_s * self.fs) - self._n
        x = chunk.samples[:want, min(self._lead, chunk.samples.shape[1] - 1)]
        self._parts.append(np.asarray(x, dtype=np.float64))
        self._n += x.size
        self.done = self._n >= round(self.duration_s * self.fs)
        return self.done

    def samples(self) -> npt.NDArray[np.float64]:
        """The recording, µV."""
        return np.concatenate(self._parts) if self._parts else np.zeros(0)

    def verdict(self, scorer: WindowScorer) -> RhythmVerdict:
        """The rhythm of what was recorded (undecided below 9 s or for a flat line)."""
        return recording_verdict(self.samples(), self.fs or 1.0, scorer)

    @property
    def t_end_ns(self) -> int:
        """Time just after the last recorded sample, ns."""
        return self.t_start_ns + round(self._n * _NS / self.fs) if self.fs else self.t_start_ns


Publish = Callable[[str, bytes], None]


class SpotCheckService:
    """Spot checks on request, on a device's live stream (module docstring).

    Parameters
    ----------
    client_id : str
    scorer : WindowScorer
    model_version : str
        Reported with every verdict.
    publish : callable, optional
        ``publish(topic, payload)`` for the ``spot_result`` (None: the event only).
    """

    def __init__(
        self,
        client_id: str,
        scorer: WindowScorer,
        model_version: str,
        publish: Publish | None = None,
    ) -> None:
        self._cid, self._scorer, self._version, self.publish = (
            client_id,
            scorer,
            model_version,
            publish,
        )
        self._request: SpotCheckRequest | None = None
        self._recorder: SpotCheckRecorder | None = None
        self.completed = 0
        self.refused = 0

    def request(self, payload: bytes) -> None:
        """A ``spot_check`` payload from the control topic (untrusted).

        Raises
        ------
        ProtocolError
            Malformed, for another device, or while another spot check is running.
        """
        req = decode_spot_request(payload)
        if req.client_id != self._cid:
            raise ProtocolError(f"spot check for {req.client_id!r} on the topic of {self._cid!r}")
        if self._recorder is not None:
            self.refused += 1
            raise ProtocolError(
                f"spot check {req.request_id!r} refused: {self._request_id()} is running"
            )
        self._request, self._recorder = req, SpotCheckRecorder(req.duration_s)
        _LOGGER.info("spot check %s: recording %.0f s", req.request_id, req.duration_s)

    def _request_id(self) -> str:
        return self._request.request_id if self._request else "?"

    def process(self, chunk: SignalChunk) -> list[Event]:
        """Feed an ECG chunk; the ``spot_check`` event once a recording is complete."""
        if self._recorder is None or not self._recorder.push(chunk):
            return []
        return self._finish()

    def flush(self) -> list[Event]:
        """End of stream: judge a running recording with what it has."""
        return self._finish() if self._recorder is not None and self._recorder.fs else []

    def _finish(self) -> list[Event]:
        rec, req = self._recorder, self._request
        self._recorder = self._request = None
        if rec is None or req is None:
            return []
        verdict = rec.verdict(self._scorer)
        self.completed += 1
        result = SpotCheckResult(
            self._cid, req.request_id, rec.t_start_ns, rec.t_end_ns, verdict.label,
            {k: round(v, 4) for k, v in verdict.probabilities.items()}, verdict.quality,
            verdict.decided, verdict.heart_rate_bpm, self._version,
        )  # fmt: skip
        if self.publish is not None:
            self.publish(client_topic(Channel.SPOT, self._cid), encode_spot_result(result))
        details: dict[str, float | int | str] = {
            "request_id": req.request_id,
            "class": verdict.label,
            "decided": int(verdict.decided),
            "quality": ",".join(verdict.quality),
            "duration_s": round(verdict.duration_s, 2),
            **{f"p_{k}": round(v, 4) for k, v in verdict.probabilities.items()},
        }
        if verdict.label == "AF":  # the live view's rhythm (web.live.hub reads details.rhythm)
            details["rhythm"] = "AF"
        _LOGGER.info("spot check %s: %s %s", req.request_id, verdict.label, verdict.probabilities)
        return [
            Event(
                event_id(self._cid, "spot_check", rec.t_start_ns),
                self._cid,
                "spot_check",
                rec.t_start_ns,
                rec.t_end_ns,
                details,
            )
        ]
