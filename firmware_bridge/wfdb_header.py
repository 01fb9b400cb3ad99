"""Checks of a WFDB header (``.hea``) before the ``wfdb`` package reads the record.

``wfdb`` is lenient where a replay must not be: a sampling frequency of ``abc`` or ``-360``
silently becomes WFDB's default 250 Hz (a 360 Hz record then replays 30 % slow and raises false
bradycardia alarms), ``1e10`` becomes 1 Hz, a signal count or a sample count that the data file
cannot hold ends in an allocation of terabytes or an unclear ``ValueError``. This module reads
the record line and the signal lines itself (the format of
https://physionet.org/physiotools/wag/header-5.htm) and refuses such a header with one
:class:`~common.errors.CorruptInputError` naming the field; it is pure apart from reading the
header and the data files' sizes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import CorruptInputError

__all__ = ["MAX_FS", "WfdbHeader", "check_wfdb_header"]

MAX_FS = 10_000.0  # Hz; no body-surface recording is sampled faster
MAX_SIGNALS = 64
MAX_HEADER_BYTES = 1 << 20
_NUMBER = re.compile(r"^(\d+\.?\d*|\.\d+)$")  # WFDB numbers: no sign, no exponent
_GAIN = re.compile(r"^([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)?(\([-+]?\d+\))?(/\S*)?$")
_FORMAT = re.compile(r"^(\d+)(x\d+)?(:\d+)?(\+\d+)?$")
# bits per sample of the fixed-width formats (212: 3 bytes per 2 samples, 310/311: 4 per 3)
_BITS = {8: 8.0, 16: 16.0, 24: 24.0, 32: 32.0, 61: 16.0, 80: 8.0, 160: 16.0, 212: 12.0}
_BITS |= {310: 32 / 3, 311: 32 / 3}
_FLAC = {508, 516, 524}


@dataclass(frozen=True, slots=True)
class WfdbHeader:
    """What the checked header says.

    Attributes
    ----------
    n_sig : int
        Signals in the record.
    fs : float or None
        Sampling frequency, Hz; None when the header gives none (WFDB then means 250 Hz).
    sig_len : int or None
        Samples per signal, if the header says.
    """

    n_sig: int
    fs: float | None
    sig_len: int | None


def check_wfdb_header(record: Path) -> WfdbHeader:
    """Check ``record.hea`` (and its data files' sizes) before ``wfdb`` reads the record.

    Parameters
    ----------
    record : Path
        Record path without suffix.

    Raises
    ------
    CorruptInputError
        A header that is not text, lacks the record or a signal line, or holds a signal count,
        sampling frequency, sample count, signal file, format or gain that is not one; a data
        file that is missing or too short for the samples the header announces.
    """
    hea = record.with_suffix(".hea")
    raw = hea.read_bytes()[: MAX_HEADER_BYTES + 1]
    name = hea.name
    if len(raw) > MAX_HEADER_BYTES:
        raise CorruptInputError(f"{name}: larger than {MAX_HEADER_BYTES} bytes: not a header")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CorruptInputError(f"{name}: not a text file (byte {raw[:64]!r}...)") from None
    lines = [
        ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines or len(lines[0]) < 2:
        raise CorruptInputError(f"{name}: no record line ('NAME N_SIGNALS [FS [N_SAMPLES]]')")
    head = lines[0]
    n_sig = _count(name, "signal count", head[1], 1, MAX_SIGNALS)
    fs = _frequency(name, head[2]) if len(head) > 2 else None
    sig_len = _count(name, "sample count", head[3], 0, 2**62) if len(head) > 3 else None
    if "/" in head[0]:  # a multi-segment record: its segments carry the signal lines
        return WfdbHeader(n_sig, fs, sig_len)
    signals = lines[1 : 1 + n_sig]
    if len(signals) < n_sig:
        raise CorruptInputError(f"{name}: {n_sig} signal(s) announced, {len(signals)} described")
    _check_data_files(record.parent, name, signals, sig_len)
    return WfdbHeader(n_sig, fs, sig_len)


def _count(name: str, what: str, token: str, lo: int, hi: int) -> int:
    if not token.isdigit() or not lo <= int(token) <= hi:
        raise CorruptInputError(
            f"{name}: {what} {token[:40]!r} is not a whole number in [{lo}, {hi}]"
        )
    return int(token)


def _frequency(name: str, token: str) -> float:
    fs_text = token.split("/", 1)[0]
    fs = float(fs_text) if _NUMBER.match(fs_text) else math.nan
    if not 0 < fs <= MAX_FS:
        raise CorruptInputError(
            f"{name}: sampling frequency {fs_text[:40]!r} is not a number in (0, {MAX_FS:g}] Hz"
        )
    return fs


def _check_data_files(
    folder: Path, name: str, signals: list[list[str]], sig_len: int | None
) -> None:
    bits: dict[str, float | None] = {}  # data file -> bits per frame (None: variable width)
    offsets: dict[str, int] = {}
    for i, sig in enumerate(signals):
        if len(sig) < 2:
            raise CorruptInputError(f"{name}: signal line {i + 1} lacks a format")
        file, fmt = sig[0], _FORMAT.match(sig[1])
        if file in ("", ".", "..") or "/" in file or "\\" in file:
            raise CorruptInputError(f"{name}: signal file {file[:60]!r} is not a file beside it")
        if fmt is None or (int(fmt[1]) not in _BITS and int(fmt[1]) not in _FLAC):
            raise CorruptInputError(f"{name}: signal {i + 1} has no known format ({sig[1][:20]!r})")
        if len(sig) > 2 and not _GAIN.match(sig[2]):
            raise CorruptInputError(f"{name}: signal {i + 1} gain {sig[2][:40]!r} is not a number")
        per_frame = int(fmt[2][1:]) if fmt[2] else 1
        width = _BITS.get(int(fmt[1]))
        old = bits.get(file, 0.0)
        bits[file] = None if width is None or old is None else old + width * per_frame
        offsets.setdefault(file, int(fmt[4][1:]) if fmt[4] else 0)
    for file, frame_bits in bits.items():
        path = folder / file
        if not path.is_file():
            raise CorruptInputError(f"{name}: signal file {file} is missing")
        if sig_len is None or frame_bits is None:
            continue
        need = offsets[file] + math.ceil(sig_len * frame_bits / 8)
        have = path.stat().st_size
        if have < need:
            raise CorruptInputError(
                f"{name}: {sig_len} samples announced, {file} holds {have} bytes of the {need} "
                "they need (truncated data, or a wrong sample count)"
            )
