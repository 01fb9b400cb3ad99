"""Rhythm (AF) task: labels from MIT-BIH rhythm annotations, rate-independent features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from common.model_card import load_card
from common.signals.accel import FeatureClassifier
from common.signals.peaks import ecg_findpeaks
from common.signals.resample import resample_signal
from common.signals.rhythm import rhythm_window_features
from models.tasks import get_task, rhythm
from models.tasks.base import LoadOptions
from tests.common.signals.synthetic import synthetic_ecg


@pytest.mark.parametrize(
    ("aux", "label"), [("(N\x00", 0), ("(AFIB", 1), ("(AFL\x00", 2), ("(VT", 2), ("(SBR", 2)]
)
def test_rhythm_annotation_mapping(aux: str, label: int) -> None:
    assert rhythm.rhythm_of(aux) == label


@pytest.mark.datasets("mitdb")
def test_real_record_windows_carry_af_labels(data_root: Path) -> None:
    # Execute: record 202 starts in sinus rhythm and has AF/AFL later
    data = rhythm.load_mitdb(
        ["202"], LoadOptions(env={**os.environ, "MEDCHAIN_DATA": str(data_root)})
    )
    # Assert
    assert get_task("rhythm") is rhythm.TASK
    assert data.signal.shape[1:] == (1, 3840) and len(data) == 60
    assert data.labels[0] == 0 and np.sum(data.labels == 1) >= 15
    af, sinus = data.features[data.labels == 1], data.features[data.labels == 0]
    cv = rhythm.FEATURE_NAMES.index("rr_cv")
    assert np.median(af[:, cv]) > 2 * np.median(sinus[:, cv])


def test_features_do_not_depend_on_the_device_rate() -> None:
    # Prepare: the same synthetic ECG recorded at 360 Hz and at 250 Hz
    feats = []
    for fs in (360.0, 250.0):
        x, _ = synthetic_ecg(fs, 30.0, hr_bpm=75.0, seed=5, rr_jitter=0.2, wander_uv=50.0)
        # Execute: both documented paths (device rate, and resample -> detect at 128 Hz)
        native = rhythm_window_features(x, fs, ecg_findpeaks(x, fs))
        x128 = resample_signal(x, fs, rhythm.FS_HZ)[: rhythm.WINDOW]
        feats += [native, rhythm.window_features(x128, ecg_findpeaks(x128, rhythm.FS_HZ))]
    # Assert: RR statistics agree within a few percent, the match-count based entropies (short
    # series, discrete counts) within 0.3, the atrial frequency within 0.5 Hz
    names = rhythm.FEATURE_NAMES
    entropy = [names.index("sample_entropy"), names.index("cosen")]
    stats = [i for i in range(names.index("rr_range_norm") + 1) if i not in entropy]
    for f in feats[1:]:
        np.testing.assert_allclose(f[stats], feats[0][stats], rtol=0.1, atol=0.02)
        np.testing.assert_allclose(f[entropy], feats[0][entropy], atol=0.3)
        assert abs(f[names.index("daf_hz")] - feats[0][names.index("daf_hz")]) < 0.5


def test_shipped_model_flags_irregular_rhythm_as_af() -> None:
    # Prepare
    folder = Path(__file__).resolve().parents[2] / "models" / "pretrained"
    card = load_card(folder / "rhythm_softmax.card.json")
    clf = FeatureClassifier.from_dict(
        __import__("json").loads((folder / "rhythm_softmax.json").read_text())
    )
    probs = []
    for jitter in (0.02, 0.25):
        x, _ = synthetic_ecg(128.0, 30.0, hr_bpm=85.0, seed=11, rr_jitter=jitter, wander_uv=30.0)
        # Execute
        probs.append(clf.predict_proba(rhythm.window_features(x, ecg_findpeaks(x, 128.0)))[0])
    # Assert
    assert card.classes == rhythm.CLASSES
    assert probs[0].argmax() == 0 and probs[1][1] > probs[0][1]
