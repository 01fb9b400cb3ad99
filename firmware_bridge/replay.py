"""Replay of a WFDB record as a live source (:class:`WfdbReplaySource`; CSV files:
:mod:`firmware_bridge.csv_replay`), with its reference annotations.

The record is read whole at ``__aenter__`` (a 30-min MIT-BIH record is ~10 MB as float64) and
chunked and paced by :class:`firmware_bridge.array_replay.ArrayReplay`. An ECG channel must be
in a voltage unit; it is streamed in µV.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError, MedchainError
from common.types import StreamKind, microvolts_per
from firmware_bridge.array_replay import ArrayReplay
from firmware_bridge.wfdb_header import MAX_FS, check_wfdb_header

_LOGGER = logging.getLogger(__name__)


def _wfdb() -> Any:
    """The ``wfdb`` package: an extra of its own (it pulls scipy, pandas and matplotlib)."""
    try:
        import wfdb
    except ImportError as exc:
        raise MedchainError(
            "replaying a WFDB record needs wfdb: pip install 'medchain[wfdb]'"
        ) from exc
    return wfdb


class WfdbReplaySource(ArrayReplay):
    """Replay a WFDB record (e.g. MIT-BIH ``mitdb/100``) as ECG in µV.

    Parameters
    ----------
    record : Path
        Record path without or with ``.hea``.
    channels : sequence of str or int, optional
        Signal names (``MLII``) or indices; default the first signal.
    kind : StreamKind
        Stream kind of the samples (ECG by default; physical units are converted to µV).
    speed, chunk_s, t0_ns
        See :class:`ArrayReplay`.
    """

    def __init__(
        self,
        record: Path,
        *,
        channels: Sequence[str | int] | None = None,
        kind: StreamKind = StreamKind.ECG,
        speed: float | None = 1.0,
        chunk_s: float = 1.0,
        t0_ns: int | None = None,
        start_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        record = Path(record)
        if record.suffix in (".hea", ".dat", ".atr"):
            record = record.with_suffix("")
        self.record = record
        self.channels = list(channels) if channels else [0]
        super().__init__(
            f"wfdb:{record.name}",
            kind=kind,
            speed=speed,
            chunk_s=chunk_s,
            t0_ns=t0_ns,
            start_s=start_s,
            duration_s=duration_s,
        )

    def _to_microvolt(self, unit: str, channel: str) -> float:
        """µV per physical unit of an ECG channel. A header without a unit (WFDB writes
        ``NU``) is taken as mV, as WFDB's own default, with a warning; any other unit (mmHg, %)
        is not an ECG: replayed as one, a pressure wave would be scored as beats."""
        factor = microvolts_per(unit)
        if factor is not None:
            return factor
        if str(unit).strip().lower() in ("", "nu"):
            _LOGGER.warning("%s: channel %s has no unit: read as mV", self, channel)
            return 1000.0
        raise CorruptInputError(
            f"{self.record.name}: channel {channel!r} is in {unit!r}, not a voltage: "
            "not an ECG (choose the ECG channel: replay ?channel=NAME, evaluate --lead NAME)"
        )

    def _load(self) -> tuple[npt.NDArray[np.float64], float]:
        wfdb = _wfdb()

        if not self.record.with_suffix(".hea").is_file():
            raise DataNotFoundError(f"WFDB record {self.record.name}", str(self.record.parent))
        header = check_wfdb_header(self.record)
        if header.fs is None:
            _LOGGER.warning("%s: header gives no sampling frequency: WFDB's default 250 Hz", self)
        with _wfdb_errors(self.record):
            names = list(wfdb.rdheader(str(self.record)).sig_name or [])
        idx: list[int] = []
        for ch in self.channels:
            if isinstance(ch, int):
                if not 0 <= ch < len(names):
                    raise CorruptInputError(f"{self.record.name} has no channel {ch} ({names})")
                idx.append(ch)
            elif ch in names:
                idx.append(names.index(ch))
            else:
                raise CorruptInputError(f"{self.record.name} has no channel {ch!r} ({names})")
        with _wfdb_errors(self.record):
            rec = wfdb.rdrecord(str(self.record), channels=idx)
        if rec.p_signal is None or float(rec.fs) != (header.fs or float(rec.fs)):
            raise CorruptInputError(
                f"{self.record.name}: wfdb read {rec.fs} Hz, header {header.fs}"
            )
        signal = np.asarray(rec.p_signal, dtype=np.float64)
        self.channel_names = [names[i] for i in idx]
        if self.kind is StreamKind.ECG:
            units = list(rec.units or ["mV"] * len(idx))
            signal = signal * np.array(
                [self._to_microvolt(u, n) for u, n in zip(units, self.channel_names, strict=True)]
            )
        self._label = f"wfdb:{self.record.name} {','.join(self.channel_names)} @ {rec.fs:g} Hz"
        return signal, float(rec.fs)

    def annotations(self, extension: str = "atr") -> tuple[npt.NDArray[np.int64], list[str]]:
        """Reference beat annotations of the replayed segment (e.g. MIT-BIH ``.atr``).

        Returns
        -------
        samples : ndarray of int64, shape (n,)
            Annotation positions as stream sample indices (``seq`` space: 0 = first replayed
            sample), only those inside the replayed segment.
        symbols : list of str
            The annotation symbols (``N``, ``V``, ``A``...), same order.

        Raises
        ------
        DataNotFoundError
            If the record has no such annotation file.
        CorruptInputError
            If it cannot be read.
        """
        wfdb = _wfdb()

        path = self.record.with_suffix(f".{extension}")
        if not path.is_file():
            raise DataNotFoundError(f"annotations {path.name}", str(path.parent))
        with _wfdb_errors(path):
            ann = wfdb.rdann(str(self.record), extension)
            fs = float(wfdb.rdheader(str(self.record)).fs or 0.0)
        ann_fs = float(ann.fs or fs)
        if not (0 < fs <= MAX_FS and 0 < ann_fs <= MAX_FS):
            raise CorruptInputError(f"{path.name}: sampling frequency {ann_fs} Hz out of range")
        samples = np.asarray(ann.sample, dtype=np.int64)
        if ann_fs != fs:  # an annotation file may count at its own rate: the stream's samples
            samples = np.rint(samples * (fs / ann_fs)).astype(np.int64)
        first = round(self.start_s * fs)
        last = None if self.duration_s is None else first + round(self.duration_s * fs)
        pos = samples - first
        keep = (pos >= 0) & (pos < (np.iinfo(np.int64).max if last is None else last - first))
        symbols = [str(x) for x, k in zip(ann.symbol, keep, strict=True) if k]
        return pos[keep], symbols


@contextlib.contextmanager
def _wfdb_errors(path: Path) -> Iterator[None]:
    """Whatever the ``wfdb`` package raises on a malformed record (``HeaderSyntaxError``,
    ``IndexError``, ``KeyError``, ``MemoryError``...: it has no error type of its own) becomes
    one ``CorruptInputError`` line naming the record."""
    try:
        yield
    except (DataNotFoundError, CorruptInputError):
        raise
    except Exception as exc:  # the wfdb package's errors are not a typed family
        detail = " ".join(str(exc).split())[:200]
        raise CorruptInputError(
            f"{path.name}: unreadable WFDB record ({type(exc).__name__}: {detail})"
        ) from exc
