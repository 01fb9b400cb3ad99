"""A folder of recordings and a ``record,label`` file, for ``medchain evaluate --task rhythm``.

Labels: one row per recording, ``record,label`` (extra columns ignored, an optional header row
``record,label``); CinC 2017's ``REFERENCE.csv`` works as it is. Label codes (case-insensitive):
``N``; ``A``/``AF``/``AFIB``; ``O``/``other``; ``~``/``noisy``. An unknown label, a repeated
record, or a listed record without a file is one error naming the file and line.

Recordings (found as ``DIR/<record>.<ext>``, first match in this order):

- ``.hea``: a WFDB record (also CinC's ``.hea`` + ``.mat``), physical units converted to µV,
  read with the edge's replay reader (``firmware_bridge.replay.WfdbReplaySource``);
- ``.mat``: MATLAB v4 with one vector ``val`` in ADC units of 1000 per mV at ``fs`` Hz (CinC
  2017 without its headers: 300 Hz);
- ``.csv``: a header row, an optional time column (s) and the ECG in µV (first value column),
  read with ``firmware_bridge.csv_replay.CsvReplaySource`` (``fs`` needed without a time column).
"""

from __future__ import annotations

import asyncio
import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from common.types import StreamKind
from models.data.cinc2017 import read_mat_uv

_LOGGER = logging.getLogger(__name__)

LABEL_ALIASES: dict[str, str] = {
    "n": "N",
    "normal": "N",
    "a": "AF",
    "af": "AF",
    "afib": "AF",
    "o": "O",
    "other": "O",
    "~": "noisy",
    "noisy": "noisy",
    "noise": "noisy",
}
EXTENSIONS = (".hea", ".mat", ".csv")
MAX_RECORDS = 100_000


@dataclass(frozen=True)
class Recording:
    """One lead of one recording in µV."""

    name: str
    signal_uv: npt.NDArray[np.float64]
    fs: float
    path: Path


def read_labels(path: Path) -> list[tuple[str, str]]:
    """``(record, class name)`` rows of a labels file, in file order.

    Raises
    ------
    DataNotFoundError, CorruptInputError
        Missing file; a bad row (file and line named).
    """
    if not path.is_file():
        raise DataNotFoundError(f"labels file {path.name}", str(path.parent))
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            for line, row in enumerate(csv.reader(fh), start=1):
                cells = [c.strip() for c in row]
                if not cells or not any(cells):
                    continue
                if line == 1 and [c.lower() for c in cells[:2]] == ["record", "label"]:
                    continue
                if len(cells) < 2 or not cells[0]:
                    raise CorruptInputError(f"{path}:{line}: expected 'record,label'")
                label = LABEL_ALIASES.get(cells[1].lower())
                if label is None:
                    known = "N, A (AF), O (other), ~ (noisy)"
                    raise CorruptInputError(
                        f"{path}:{line}: unknown label {cells[1][:20]!r} for {cells[0][:40]!r} (known: {known})"
                    )
                if cells[0] in seen:
                    raise CorruptInputError(f"{path}:{line}: record {cells[0][:40]!r} listed twice")
                seen.add(cells[0])
                rows.append((cells[0], label))
                if len(rows) > MAX_RECORDS:
                    raise CorruptInputError(f"{path}: more than {MAX_RECORDS} records")
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CorruptInputError(f"{path}: not a CSV text file ({exc})") from exc
    if not rows:
        raise CorruptInputError(f"{path}: no 'record,label' rows")
    return rows


def find_file(folder: Path, record: str) -> Path:
    """The file of ``record`` in ``folder`` (``.hea`` before ``.mat`` before ``.csv``)."""
    if "/" in record or "\\" in record or record.startswith("."):
        raise CorruptInputError(f"record name {record[:40]!r}: give a name inside the folder")
    for ext in EXTENSIONS:
        path = folder / f"{record}{ext}"
        if path.is_file():
            return path
    raise DataNotFoundError(f"recording {record!r} (.hea, .mat or .csv)", str(folder))


def read_recording(path: Path, *, fs: float | None = None, lead: str | None = None) -> Recording:
    """One recording (module docstring); ``lead``: WFDB signal name (default the first)."""
    name = path.stem
    if path.suffix == ".mat":
        return Recording(name, read_mat_uv(path), fs or 300.0, path)
    from firmware_bridge.csv_replay import CsvReplaySource
    from firmware_bridge.replay import WfdbReplaySource

    source: WfdbReplaySource | CsvReplaySource
    if path.suffix == ".hea":
        source = WfdbReplaySource(path, channels=[lead] if lead else None, speed=None, chunk_s=1e7)
    else:
        source = CsvReplaySource(
            path, fs=fs, kind=StreamKind.ECG, columns=[0], speed=None, chunk_s=1e7
        )
    x, rate = asyncio.run(_whole(source))
    return Recording(name, x, rate, path)


async def _whole(source: object) -> tuple[npt.NDArray[np.float64], float]:
    """Every sample of an array replay (one lead) and its rate."""
    parts, rate = [], 0.0
    async with source as src:  # type: ignore[attr-defined]
        async for chunk in src.chunks():
            parts.append(chunk.samples[:, 0])
            rate = chunk.fs
        gaps, missing = src.stats.gaps, src.stats.missing_samples
    if not parts:
        raise CorruptInputError(f"{source}: no samples")
    if gaps:  # joining the two sides would invent RR intervals
        raise CorruptInputError(
            f"{source}: {gaps} gap(s) in its time column ({missing / rate:.3g} s missing): "
            "a rhythm verdict needs one continuous recording"
        )
    return np.concatenate(parts).astype(np.float64), float(rate)
