"""Signal processing shared by training and the edge (numpy; SciPy only lazily, off the edge path).

The ECG chain is ``EcgFilter``/``ecg_clean`` (causal, stateful) -> ``QRSDetector``/
``ecg_findpeaks`` (streaming R peaks) -> ``beat_windows`` + ``rr_features``/``RRTracker`` (the
model input of a ``BeatSpec``, with the running-median ``template_channel``/``TemplateTracker``). Every streaming class gives the same numbers as its batch
function over the whole record, so a model sees on the device what it saw in training.
See docs/signals.md.
"""

from __future__ import annotations

from common.signals.beats import RR_FEATURES, BeatSpec, beat_windows, beats_in_bounds
from common.signals.ecg import BeatInputs, ecg_beats
from common.signals.filters import CausalSosFilter, EcgFilter, FilterSpec, ecg_clean
from common.signals.matching import PeakMatch, match_peaks
from common.signals.peaks import QRSDetector, ecg_findpeaks
from common.signals.qrs_rules import QRSParams
from common.signals.resample import map_indices, resample_signal, resampling_ratio
from common.signals.rr import RRTracker, rr_features
from common.signals.template import TEMPLATE_BEATS, TemplateTracker, template_channel

__all__ = [
    "PeakMatch",
    "QRSDetector",
    "QRSParams",
    "ecg_findpeaks",
    "match_peaks",
    "RR_FEATURES",
    "BeatInputs",
    "ecg_beats",
    "BeatSpec",
    "CausalSosFilter",
    "EcgFilter",
    "FilterSpec",
    "RRTracker",
    "beat_windows",
    "beats_in_bounds",
    "ecg_clean",
    "map_indices",
    "resample_signal",
    "resampling_ratio",
    "rr_features",
    "TEMPLATE_BEATS",
    "TemplateTracker",
    "template_channel",
]
