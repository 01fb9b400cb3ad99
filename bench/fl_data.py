"""Shared data of the federated-learning benchmarks: per-record embeddings of MIT-BIH beats.

The frozen backbone is the int8 beat ONNX of ``models/pretrained`` (``--model``); each record's
beats are preprocessed by the MODELS loader (``models.tasks.beat``), embedded once with
onnxruntime and cached (npz in the user cache, never in the repo) keyed by the model's sha256.
Positions of the beats (R-peak sample at 360 Hz) are kept for the time-based personalisation
split.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_aggregator.evaluation import embed_with_onnx, fit_channels, input_channels
from common.datasets import dataset_dir, default_cache_dir
from common.signals import beats_in_bounds, ecg_clean
from common.signals import rr_features as compute_rr
from models.data.mitdb import DS1, DS2, read_record
from models.tasks.beat import BEAT_SPEC, preprocess_record

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "pretrained" / "beat.onnx"
CLASSES = ("N", "S", "V", "F", "Q")


@dataclass
class RecordData:
    """Embeddings (n, E), labels (n,), R-peak sample positions (n,) and fs (Hz) of one record."""

    name: str
    emb: np.ndarray
    labels: np.ndarray
    samples: np.ndarray
    fs: float


def load_embeddings(records: list[str], model: Path = DEFAULT_MODEL) -> dict[str, RecordData]:
    """Embeddings of every record (cached)."""
    env = dict(os.environ)
    onnx_bytes = model.read_bytes()
    key = hashlib.sha256(onnx_bytes).hexdigest()[:12]
    cache = default_cache_dir(env) / "fl-bench" / key
    cache.mkdir(parents=True, exist_ok=True)
    folder = dataset_dir("mitdb", env)
    out = {}
    for name in records:
        f = cache / f"{name}.npz"
        if not f.is_file():
            rec = read_record(folder, name)
            signal, feats, labels = preprocess_record(rec, BEAT_SPEC)
            clean = ecg_clean(rec.signal_uv, rec.fs, BEAT_SPEC.filter)
            rr = compute_rr(rec.beat_samples, rec.fs, BEAT_SPEC)
            ok = beats_in_bounds(rec.beat_samples, clean.size, rec.fs, BEAT_SPEC) & np.all(
                np.isfinite(rr), axis=1
            )
            samples = rec.beat_samples[ok]
            assert len(samples) == len(labels)
            signal = fit_channels(signal, input_channels(onnx_bytes))
            emb = embed_with_onnx(onnx_bytes, {"beat": signal, "rr": feats})
            np.savez(f, emb=emb, labels=labels, samples=samples, fs=rec.fs)
        with np.load(f) as z:
            out[name] = RecordData(
                name, z["emb"], z["labels"].astype(np.int64), z["samples"], float(z["fs"])
            )
    return out


def ds1() -> list[str]:
    return list(DS1)


def ds2() -> list[str]:
    return list(DS2)


def pooled(data: dict[str, RecordData]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated embeddings and labels."""
    return np.concatenate([d.emb for d in data.values()]), np.concatenate(
        [d.labels for d in data.values()]
    )
