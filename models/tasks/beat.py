"""``beat`` task: AAMI N/S/V/F/Q heartbeat classification on MIT-BIH, inter-patient DS1 -> DS2.

Inputs are made by ``common.signals`` exactly as on the edge: the MLII lead (µV) is cleaned at
its own rate with the causal filter of :data:`BEAT_SPEC`, one window per annotated R peak is cut,
resampled to 128 Hz and z-scored, and the RR features of every beat are computed from the
annotated R peaks (the edge uses its detected peaks instead). Beats whose context crosses the
record edges are dropped. Preprocessed records are cached as npz in the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.datasets import dataset_dir
from common.errors import DataNotFoundError
from common.model_card import FeatureSpec, InputContract
from common.signals import BeatSpec, FilterSpec, beat_windows, beats_in_bounds, ecg_clean
from common.signals import rr_features as compute_rr
from common.signals.beats import RR_FEATURES

# Channel 1 of the input is the beat minus its running-median template (common.signals.template);
# re-exported here because the card's contract names models.tasks.beat.template_channel.
from common.signals.template import TEMPLATE_BEATS as TEMPLATE_BEATS
from common.signals.template import TemplateTracker as TemplateTracker
from common.signals.template import template_channel as template_channel
from models.augment import RecordView, apply_view, training_views
from models.data.mitdb import AAMI_CLASSES, DS1, DS2, MitdbRecord, read_record
from models.metrics import jk_index
from models.tasks.base import LoadOptions, NetSpec, Task, TaskData, TrainSpec
from models.template_veto import BEAT_RMS_BELOW

_LOGGER = logging.getLogger(__name__)

BEAT_SPEC = BeatSpec(
    sampling_rate_hz=128.0,
    before_samples=32,
    after_samples=64,
    filter=FilterSpec(method="bandpass", lowcut_hz=0.5, highcut_hz=40.0, order=2),
    normalization="zscore",
    rr_features=RR_FEATURES,
    rr_local_beats=10,
    rr_long_s=300.0,
    align_window_s=0.05,
)
_LOADER_VERSION = 2
_RR_DESCRIPTIONS = {
    "rr_pre": "interval from the previous R peak to this one",
    "rr_post": "interval from this R peak to the next one (one-beat delay on a stream)",
    "rr_local": "mean of the last 10 RR intervals up to and including rr_pre (causal)",
    "rr_long": "mean of the RR intervals ending in the 300 s before this R peak (causal)",
    "rr_pre_local_ratio": "rr_pre / rr_local",
    "rr_post_local_ratio": "rr_post / rr_local",
    "rr_pre_long_ratio": "rr_pre / rr_long",
    "rr_local_long_ratio": "rr_local / rr_long",
}


def preprocess_record(
    rec: MitdbRecord, spec: BeatSpec = BEAT_SPEC
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Model inputs of one record: windows ``(n, 2, L)``, RR features ``(n, K)``, labels.

    Channel 0 is the normalised beat, channel 1 the beat minus its running template.
    """
    clean = ecg_clean(rec.signal_uv, rec.fs, spec.filter)
    rr = compute_rr(rec.beat_samples, rec.fs, spec)  # over every beat, before dropping edges
    ok = beats_in_bounds(rec.beat_samples, clean.size, rec.fs, spec) & np.all(
        np.isfinite(rr), axis=1
    )
    windows = beat_windows(clean, rec.fs, rec.beat_samples[ok], spec)
    return (
        np.stack([windows, template_channel(windows)], axis=1).astype(np.float32),
        rr[ok].astype(np.float32),
        rec.beat_labels[ok],
    )


def _spec_key(spec: BeatSpec) -> str:
    raw = json.dumps({"spec": spec.to_dict(), "loader": _LOADER_VERSION}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def read_view(folder: Path, name: str, view: RecordView, env: Mapping[str, str]) -> MitdbRecord:
    """Record ``name`` as ``view`` records it (``view.lead == "second"``: its first non-MLII
    signal)."""
    lead = view.lead
    if lead == "second":
        import wfdb

        names = [str(n) for n in wfdb.rdheader(str(folder / name)).sig_name or []]
        others = [n for n in names if n != "MLII"]
        if not others:
            raise DataNotFoundError(f"a second lead of record {name!r}", f"leads {names}")
        lead = others[0]
    return apply_view(read_record(folder, name, lead), view, env)


def load_records(
    records: list[str],
    options: LoadOptions,
    spec: BeatSpec = BEAT_SPEC,
    view: RecordView | Callable[[str], list[RecordView]] | None = None,
) -> TaskData:
    """Preprocessed beats of ``records`` (cached per record and view when
    ``options.cache_dir`` is set). ``view``: one :class:`models.augment.RecordView` for every
    record, or ``record -> views`` (each view's beats are added; groups stay the record's)."""
    folder = dataset_dir("mitdb", options.env)
    parts: list[tuple[Any, ...]] = []
    for name in records:
        if view is None:
            views = [RecordView()]
        elif isinstance(view, RecordView):
            views = [view]
        else:
            views = view(name)
        for v in views:
            parts.append((*_view_arrays(folder, name, v, spec, options), name))
    return TaskData(
        signal=np.concatenate([p[0] for p in parts]),
        features=np.concatenate([p[1] for p in parts]),
        labels=np.concatenate([p[2] for p in parts]).astype(np.int64),
        groups=np.concatenate([np.full(len(p[2]), p[3]) for p in parts]).astype(np.str_),
    )


def _view_arrays(
    folder: Path, name: str, view: RecordView, spec: BeatSpec, options: LoadOptions
) -> tuple[Any, Any, Any]:
    """(signal, features, labels) of one record's view, from the cache when there."""
    cache = None
    if options.cache_dir is not None:
        tag = "" if view.is_identity else f"-{view.key()}"
        cache = options.cache_dir / "beat" / _spec_key(spec) / f"{name}{tag}.npz"
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return z["signal"], z["features"], z["labels"]
    rec = read_view(folder, name, view, options.env)
    signal, feats, labels = preprocess_record(rec, spec)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, signal=signal, features=feats, labels=labels)
    _LOGGER.info("record %s (view %s): %d beats", name, view.key(), len(labels))
    return signal, feats, labels


def load(split: str, options: LoadOptions) -> TaskData:
    """Load ``ds1`` or ``ds2`` (optionally only ``options.records`` of it)."""
    splits = {"ds1": DS1, "ds2": DS2}
    if split not in splits:
        raise DataNotFoundError(f"split {split!r} of task beat", "ds1, ds2")
    records = list(splits[split])
    if options.records is not None:
        unknown = [r for r in options.records if r not in DS1 + DS2]
        if unknown:
            raise DataNotFoundError(f"MIT-BIH record(s) {unknown}", "DS1 + DS2 (non-paced)")
        records = list(options.records)
    return load_records(records, options)


# Augmented views per DS1 record that `medchain train` adds (models.augment.training_views:
# other rates, polarity, gain, wander, real noise); chosen by DS1 patient-wise CV (docs/models.md
# "Augmentation for other devices"); 0 = none.
TRAIN_VIEWS = 0
VIEW_NOISE = True


def load_train_views(records: list[str], options: LoadOptions, seed: int) -> TaskData:
    """:data:`TRAIN_VIEWS` augmented views of each of ``records`` (seeded by ``seed``)."""
    return load_records(
        records, options, BEAT_SPEC, lambda r: training_views(TRAIN_VIEWS, seed, r, VIEW_NOISE)
    )


def contract(spec: BeatSpec = BEAT_SPEC) -> InputContract:
    """The card's input contract for :data:`BEAT_SPEC`."""
    f = spec.filter
    return InputContract(
        sampling_rate_hz=spec.sampling_rate_hz,
        window_before=spec.before_samples,
        window_after=spec.after_samples,
        alignment=(
            f"R peak at index {spec.before_samples} of a {spec.window_len}-sample window "
            f"({spec.before_samples / spec.sampling_rate_hz:.3f} s before, "
            f"{spec.after_samples / spec.sampling_rate_hz:.3f} s from the R peak on); the given "
            f"R peaks (annotated or detected) are first snapped to the largest deflection from "
            f"the pre-QRS baseline within +-{spec.align_window_s * 1000:.0f} ms of the cleaned "
            "signal (common.signals.align_r_peaks, done inside beat_windows); RR features use "
            "the given (unsnapped) R peaks"
        ),
        lead="MLII (single lead; chest-strap lead I-like signals work best with personalisation)",
        units="µV before normalisation",
        filter=(
            f"causal Butterworth {f.method} {f.lowcut_hz}-{f.highcut_hz} Hz, order {f.order}, "
            "sosfilt with steady-state initial conditions, applied at the DEVICE rate before "
            "windowing (common.signals.ecg_clean / EcgFilter)"
        ),
        normalisation=(
            "per window z-score: (x - mean) / std (zeros if std = 0) -> channel 0; channel 1 = "
            f"channel 0 minus the element-wise median of the previous {TEMPLATE_BEATS} "
            "channel-0 windows of the same stream (every detected beat, any class; zeros for the "
            "first beat) -- models.tasks.beat.template_channel"
        ),
        resampling=(
            "filter at the device rate, then cut each beat at the device rate with a margin "
            "and resample it to 128 Hz with scipy.signal.resample_poly (up/down from the rate "
            "ratio, e.g. 360 -> 128 Hz = 16/45, 130 -> 128 Hz = 64/65), crop to the window: "
            "common.signals.beat_windows(clean, fs, r_peaks, BeatSpec.from_dict(parameters))"
        ),
        features=tuple(
            FeatureSpec(name, "ratio" if "ratio" in name else "s", _RR_DESCRIPTIONS[name])
            for name in spec.rr_features
        ),
        parameters={
            "beat_spec": spec.to_dict(),
            "channels": ["beat_zscore", "beat_minus_running_median_template"],
            "template_beats": TEMPLATE_BEATS,
            "rr_from": "annotated R peaks in training; detected R peaks on a device",
        },
    )


def _extras(confusion: npt.NDArray[np.int64], classes: tuple[str, ...]) -> dict[str, Any]:
    return jk_index(confusion, classes)


TASK = Task(
    name="beat",
    classes=AAMI_CLASSES,
    description="AAMI heartbeat class (N, S=SVEB, V=VEB, F, Q) of one beat plus RR features",
    input_names=("beat", "rr"),
    splits={"ds1": "de Chazal DS1 (22 records, train)", "ds2": "de Chazal DS2 (22 records, test)"},
    train_split="ds1",
    test_split="ds2",
    load=load,
    contract=contract,
    teacher=NetSpec("resnet", (32, 48, 64, 64), 7, 64, dropout=0.3, feature_dim=16),
    student=NetSpec("cnn", (16, 24, 32, 32), 7, 32, dropout=0.2, feature_dim=32),
    train=TrainSpec(
        epochs=8,
        batch_size=256,
        lr=3e-3,
        weight_decay=1e-3,
        balance=0.4,
        loss_balance=0.0,
        kd_temperature=3.0,
        kd_alpha=0.7,
        augment=True,
        steps_per_epoch=120,
    ),
    data_description=(
        "MIT-BIH Arrhythmia Database v1.0.0 (PhysioNet, ODC-By 1.0), lead MLII, reference "
        "beat annotations (R-peak positions and labels), AAMI EC57 class mapping"
    ),
    metric_extras=_extras,
    notes="paced records 102, 104, 107, 217 excluded; Q has ~15 beats in DS1+DS2",
    # V calls this close to the running template are served as Q (models/template_veto.py);
    # chosen on DS1 patient-wise CV, seeds 0-2 (docs/models.md "Template veto")
    template_veto_rms=BEAT_RMS_BELOW,
    options=(
        {
            "train_views": load_train_views,
            "train_views_description": f"{TRAIN_VIEWS} per record: 128-500 Hz, polarity, gain, "
            "baseline wander" + (", CinC 2017 noise at 24-0 dB" if VIEW_NOISE else ""),
        }
        if TRAIN_VIEWS
        else {}
    ),
)
