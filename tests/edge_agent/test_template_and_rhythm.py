"""Template input channel (parity with training); the rhythm monitor: test_rhythm_monitor.py."""

from __future__ import annotations

import numpy as np

from common.signals.template import TemplateTracker, template_channel
from edge_agent.featurize import StreamingBeatFeaturizer
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
