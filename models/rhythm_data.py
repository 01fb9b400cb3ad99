"""The rhythm v2 training windows: CinC 2017 + MIT-BIH + AFTDB through one preprocessing.

Every window goes through :func:`common.signals.rhythm_input.prepare_rhythm_input` at its
device rate (CinC 300 Hz, MIT-BIH 360 Hz, AFTDB 128 Hz), exactly as a device or the evaluator
would feed it. A :class:`WindowBank` holds them concatenated:

- CinC: every recording's :func:`~common.signals.rhythm_input.window_starts` windows (itself up
  to 30 s; longer ones 30 s every 10 s) labelled with the recording's class, plus one random
  short window (9-20 s, seeded by the record name) of recordings >= 12 s (``short``: training
  augmentation for the 9 s decisions, never scored);
- MIT-BIH: non-overlapping 30 s windows of lead 0, majority rhythm (``models.tasks.rhythm``);
- AFTDB: two 30 s windows of lead 0 of each of the 80 one-minute records, all AF.

Banks are cached as ``.npz`` under ``<cache>/rhythm_v2/<key>/`` (key = hash of the
preprocessing constants), never in the repository.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.signals import rhythm_input as ri
from common.signals.rr_track import rr_track

_LOGGER = logging.getLogger(__name__)

SHORT_RANGE_S = (9.0, 20.0)  # length of the extra short window of a CinC recording
SHORT_FROM_S = 12.0  # recordings at least this long get one
BANK_VERSION = 1


@dataclass(frozen=True)
class WindowBank:
    """Preprocessed windows, concatenated.

    Attributes
    ----------
    signal : ndarray, shape (total,), float32
        All windows' model signals end to end (``offsets`` delimit them).
    offsets : ndarray, shape (n + 1,), int64
    features : ndarray, shape (n, K), float32
    labels : ndarray, shape (n,), int64
        Class index (``models.tasks.rhythm.CLASSES``).
    records : ndarray, shape (n,), str
        Recording id (``A00243``, ``mitdb/100``, ``aftdb/n01``).
    short : ndarray, shape (n,), bool
        Augmentation windows (training only).
    quality : ndarray, shape (n,), int64
        Bit i set = ``QUALITY_FLAGS[i]``.
    track : ndarray, shape (total,) or (0,), float32
        The RR track of every window, aligned with ``signal`` (:mod:`common.signals.rr_track`;
        development option ``rr_track``: a second input channel), or empty.
    """

    signal: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    records: npt.NDArray[np.str_]
    short: npt.NDArray[np.bool_]
    quality: npt.NDArray[np.int64]
    track: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def channels(self) -> int:
        """Input channels of the model: the ECG, and the RR track when the bank has one."""
        return 2 if self.track.size else 1

    def inputs(self, i: int) -> npt.NDArray[np.float32]:
        """The model input ``(channels, L)`` of window ``i``."""
        part = slice(self.offsets[i], self.offsets[i + 1])
        if not self.track.size:
            return self.signal[part][None, :]
        return np.stack([self.signal[part], self.track[part]])

    def lengths(self) -> npt.NDArray[np.int64]:
        """Samples per window."""
        return np.diff(self.offsets)

    def subset(self, index: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> WindowBank:
        """The windows at ``index`` (indices or mask), signal re-packed."""
        idx = np.flatnonzero(index) if index.dtype == np.bool_ else np.asarray(index, np.int64)
        parts = [self.inputs(int(i)) for i in idx]
        lengths = np.array([p.shape[1] for p in parts], dtype=np.int64)
        both = np.concatenate(parts, axis=1) if parts else np.zeros((self.channels, 0), np.float32)
        return WindowBank(
            both[0],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            self.features[idx],
            self.labels[idx],
            self.records[idx],
            self.short[idx],
            self.quality[idx],
            both[1] if self.track.size else np.zeros(0, np.float32),
        )

    @staticmethod
    def concat(banks: Iterable[WindowBank]) -> WindowBank:
        """One bank of several."""
        items = list(banks)
        if len({b.channels for b in items}) > 1:
            raise ValueError("banks with and without an RR track cannot be concatenated")
        lengths = np.concatenate([b.lengths() for b in items])
        return WindowBank(
            np.concatenate([b.signal for b in items]),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.concatenate([b.features for b in items]),
            np.concatenate([b.labels for b in items]),
            np.concatenate([b.records for b in items]),
            np.concatenate([b.short for b in items]),
            np.concatenate([b.quality for b in items]),
            np.concatenate([b.track for b in items]),
        )


def quality_bits(flags: tuple[str, ...]) -> int:
    """Flags as a bit set over ``QUALITY_FLAGS``."""
    return sum(1 << i for i, f in enumerate(ri.QUALITY_FLAGS) if f in flags)


@dataclass(frozen=True)
class BankSpec:
    """What a bank holds besides the ECG: ``feature_names`` (among
    :data:`common.signals.rhythm_input.KNOWN_FEATURES`) and whether each window's RR track."""

    feature_names: tuple[str, ...] = ri.FEATURE_NAMES
    rr_track: bool = False


SHIPPED_BANK = BankSpec()  # what the shipped model reads: the 15 features, no RR track


class BankBuilder:
    """Collects windows; :meth:`add` preprocesses one raw window as ``spec`` asks."""

    def __init__(self, spec: BankSpec = SHIPPED_BANK) -> None:
        self.feature_names = spec.feature_names
        self.rr_track = spec.rr_track
        self._track: list[npt.NDArray[np.float32]] = []
        self._sig: list[npt.NDArray[np.float32]] = []
        self._feat: list[npt.NDArray[np.float32]] = []
        self._meta: list[tuple[int, str, bool, int]] = []

    def add(
        self,
        raw_uv: npt.NDArray[np.float64],
        fs: float,
        label: int,
        record: str,
        short: bool = False,
    ) -> None:
        """Preprocess ``raw_uv`` (µV at ``fs``) and keep it."""
        inp = ri.prepare_rhythm_input(raw_uv, fs, self.feature_names)
        self._sig.append(inp.signal)
        if self.rr_track:
            self._track.append(rr_track(inp.peaks, inp.signal.size, ri.INPUT_FS_HZ))
        self._feat.append(inp.features)
        self._meta.append((label, record, short, quality_bits(inp.quality)))

    def build(self) -> WindowBank:
        """The bank of everything added."""
        lengths = np.array([s.size for s in self._sig], dtype=np.int64)
        labels, records, short, quality = (
            zip(*self._meta, strict=True) if self._meta else ((), (), (), ())
        )
        return WindowBank(
            np.concatenate(self._sig) if self._sig else np.zeros(0, np.float32),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.asarray(self._feat, dtype=np.float32).reshape(
                len(self._sig), len(self.feature_names)
            ),
            np.asarray(labels, dtype=np.int64),
            np.asarray(records, dtype=np.str_),
            np.asarray(short, dtype=np.bool_),
            np.asarray(quality, dtype=np.int64),
            np.concatenate(self._track) if self._track else np.zeros(0, np.float32),
        )


def add_recording(
    builder: BankBuilder, raw_uv: npt.NDArray[np.float64], fs: float, label: int, record: str
) -> None:
    """A CinC-style recording: its windows, plus one seeded short window when long enough."""
    for start, end in ri.window_starts(raw_uv.size, fs):
        builder.add(raw_uv[start:end], fs, label, record)
    if raw_uv.size >= SHORT_FROM_S * fs:
        rng = np.random.default_rng(zlib.crc32(record.encode()))
        longest = min(SHORT_RANGE_S[1], raw_uv.size / fs - 1.0)  # a part, not the whole
        length = round(rng.uniform(SHORT_RANGE_S[0], longest) * fs)
        start = int(rng.integers(0, raw_uv.size - length + 1))
        builder.add(raw_uv[start : start + length], fs, label, record, short=True)


def spec_key(
    source: str, extra: dict[str, object] | None = None, spec: BankSpec = SHIPPED_BANK
) -> str:
    """Cache key: the preprocessing constants, the bank layout, ``spec`` and ``extra``."""
    key = {
        "source": source,
        "bank": BANK_VERSION,
        "fs": ri.INPUT_FS_HZ,
        "band": ri.BAND_HZ,
        "clip": ri.CLIP,
        "window": (ri.WINDOW_S, ri.HOP_S),
        "short": (SHORT_RANGE_S, SHORT_FROM_S),
        "features": spec.feature_names,
        **({"rr_track": True} if spec.rr_track else {}),  # keys of banks without one unchanged
        **(extra or {}),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_bank(cache_dir: Path | None, key: str, build: Callable[[], WindowBank]) -> WindowBank:
    """``build()`` once, then read from ``<cache_dir>/rhythm_v2/<key>.npz``."""
    if cache_dir is None:
        return build()
    path = cache_dir / "rhythm_v2" / f"{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:  # banks cached before ``track`` lack it
            return WindowBank(**{f.name: z[f.name] for f in fields(WindowBank) if f.name in z})
    bank = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name of this writer's own: two processes building the same bank at once
    # (parallel runs on a fresh cache) must not rename each other's file away
    fd, name = tempfile.mkstemp(prefix=f"{key}.", suffix=".partial.npz", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{f.name: getattr(bank, f.name) for f in fields(WindowBank)})
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _LOGGER.info("cached %d rhythm windows in %s", len(bank), path)
    return bank
