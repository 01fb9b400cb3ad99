"""Template input channel (parity with training) and the rhythm (AF) monitor."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.signals.template import TemplateTracker, template_channel
from common.types import SignalChunk, StreamKind
from edge_agent.featurize import StreamingBeatFeaturizer
from edge_agent.rhythm import RhythmMonitor
from tests.edge_agent.helpers import SPEC, ThresholdDetector, synthetic_ecg

NS = 1_000_000_000


def test_streaming_template_equals_training_definition() -> None:
    # Prepare
    w = np.random.default_rng(3).normal(size=(40, 96))
    tracker = TemplateTracker(16)
    # Execute: in uneven pieces, as a stream delivers them
    got = np.vstack([tracker.push(w[a:b]) for a, b in ((0, 1), (1, 7), (7, 8), (8, 40))])
    # Assert
    np.testing.assert_allclose(got, template_channel(w, 16), atol=1e-12)


def test_two_channel_featurizer_outputs_beat_and_template() -> None:
    x, peaks = synthetic_ecg([0.8] * 20, 360.0)
    feat = StreamingBeatFeaturizer(
        SPEC, ThresholdDetector, 360.0, ("beat_zscore", "beat_minus_running_median_template")
    )
    batches = [feat.push(x[s : s + 360], s) for s in range(0, x.size, 360)] + [feat.flush()]
    windows = np.concatenate([b.windows for b in batches if len(b)])
    assert windows.shape == (peaks.size, 2, SPEC.window_len)
    np.testing.assert_allclose(
        windows[:, 1], template_channel(windows[:, 0].astype(np.float64)), atol=1e-5
    )


class ByIrregularity:
    """P(AF) from the window's RR coefficient of variation (feature 1)."""

    def af_probability(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return (features[:, 1] > 0.1).astype(np.float32)


def test_rhythm_monitor_reports_one_af_episode() -> None:
    # Prepare: 2 min sinus, 3 min irregular, 2 min sinus at 250 Hz, 1 s chunks
    fs = 250.0
    rng = np.random.default_rng(5)
    rr = [0.8] * 150 + list(rng.uniform(0.45, 1.1, 235)) + [0.8] * 150
    x, peaks = synthetic_ecg(rr, fs)
    mon = RhythmMonitor("d", ByIrregularity(), 30.0)
    events = []
    t0 = 1_000 * NS
    step = int(fs)
    for s in range(0, x.size, step):
        chunk = SignalChunk(StreamKind.ECG, fs, t0 + round(s * NS / fs), x[s : s + step, None], s)
        # the pipeline reports a beat about one RR after its peak
        ready = [int(p) for p in peaks if s - fs <= p < s + step - fs]
        events += mon.process(chunk, ready)
    events += mon.flush()
    # Assert
    assert [e.kind for e in events] == ["af_episode"]
    (e,) = events
    af_start = t0 + round(peaks[150] / fs * NS)
    af_end = t0 + round(peaks[385] / fs * NS)
    assert abs(e.t_start_ns - af_start) <= 31 * NS
    assert abs(e.t_end_ns - af_end) <= 61 * NS
    windows = e.details["windows"]
    assert e.details["source"] == "rhythm"
    assert isinstance(windows, int) and windows >= 4
