"""A corpus of corrupt replay files, generated from small synthetic recordings.

Each case writes one file (or WFDB record) into a folder and returns the ``replay:`` spec to
open it. Nothing is copied from a dataset: the WFDB record is ``medchain.synthetic_ecg``'s
simulated ECG, the CSV is written here, the captures are H10 notifications built from the same
simulation (:mod:`tests.firmware_bridge.h10_frames`).

``REFUSED`` cases must end in one ``medchain: error:`` line and a non-zero exit code;
``TOLERATED`` ones hold enough good data to be replayed, their bad parts counted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from firmware_bridge.capture import H10_BIN_MAGIC, JSONL_FORMAT
from firmware_bridge.gatt import PMD_DATA_UUID
from medchain.synthetic_ecg import simulate_ecg, write_wfdb
from tests.firmware_bridge.h10_frames import ecg_frames, write_bin

Case = Callable[[Path], str]  # folder -> replay spec
RNG_BYTES = random.Random(1234).randbytes  # noqa: S311 - reproducible garbage


def _record(folder: Path) -> Path:
    """A 20-s simulated WFDB record (``.hea``, ``.dat``, ``.atr``); its path without suffix."""
    return write_wfdb(simulate_ecg(20.0, seed=0), folder, "sim1")


def _header(folder: Path, edit: Callable[[list[list[str]]], None] | None = None) -> str:
    """The record with its header's tokens edited (line 0: record line, 1: signal line)."""
    rec = _record(folder)
    hea = rec.with_suffix(".hea")
    lines = [ln.split() for ln in hea.read_text().splitlines() if ln and not ln.startswith("#")]
    if edit is not None:
        edit(lines)
    hea.write_text("\n".join(" ".join(t) for t in lines) + "\n")
    return f"replay:{rec}"


def _set(line: int, token: int, value: str) -> Callable[[Path], str]:
    def case(folder: Path) -> str:
        def edit(lines: list[list[str]]) -> None:
            lines[line][token] = value

        return _header(folder, edit)

    return case


def _hea_bytes(data: bytes) -> Case:
    def case(folder: Path) -> str:
        rec = _record(folder)
        rec.with_suffix(".hea").write_bytes(data)
        return f"replay:{rec}"

    return case


def _dat(change: Callable[[bytes], bytes | None]) -> Case:
    def case(folder: Path) -> str:
        rec = _record(folder)
        dat = rec.with_suffix(".dat")
        new = change(dat.read_bytes())
        if new is None:
            dat.unlink()
        else:
            dat.write_bytes(new)
        return f"replay:{rec}"

    return case


def _drop_signal_line(folder: Path) -> str:
    def edit(lines: list[list[str]]) -> None:
        del lines[1:]

    return _header(folder, edit)


def _atr(data: bytes) -> Case:
    def case(folder: Path) -> str:
        rec = _record(folder)
        rec.with_suffix(".atr").write_bytes(data)
        return f"replay:{rec}"

    return case


# --- CSV ------------------------------------------------------------------------------------


def _csv_text(text: str | bytes, query: str = "") -> Case:
    def case(folder: Path) -> str:
        path = folder / "ecg.csv"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return f"replay:{path}{query}"

    return case


def _csv(times: np.ndarray | None, values: np.ndarray, query: str = "") -> Case:
    head = "time_s,ecg_uv" if times is not None else "ecg_uv"
    rows = (
        [f"{t!r},{v!r}" for t, v in zip(times.tolist(), values.tolist(), strict=True)]
        if times is not None
        else [repr(v) for v in values.tolist()]
    )
    return _csv_text("\n".join([head, *rows]) + "\n", query)


_SIG = simulate_ecg(10.0, seed=2).signal
_T = np.arange(_SIG.size) / 360.0


# --- captures -------------------------------------------------------------------------------


def _bin(frames_or_bytes: list[bytes] | bytes) -> Case:
    def case(folder: Path) -> str:
        path = folder / "h10.bin"
        if isinstance(frames_or_bytes, bytes):
            path.write_bytes(frames_or_bytes)
        else:
            write_bin(path, frames_or_bytes)
        return f"replay:{path}"

    return case


def _jsonl(lines: list[str], header: str | None = None) -> Case:
    def case(folder: Path) -> str:
        path = folder / "cap.jsonl"
        head = header if header is not None else json.dumps({"format": JSONL_FORMAT, "version": 1})
        path.write_text("\n".join([head, *lines]) + "\n")
        return f"replay:{path}"

    return case


_FRAMES = ecg_frames(20.0, seed=4)


def _note(frame: bytes, t_ns: object = 1) -> str:
    return json.dumps({"t_ns": t_ns, "char": PMD_DATA_UUID, "dir": "notify", "hex": frame.hex()})


_GOOD_LINES = [_note(f, i) for i, f in enumerate(_FRAMES)]
_BAD_TS = [f[:1] + b"\xff" * 8 + f[9:] for f in _FRAMES]  # every timestamp beyond int64

REFUSED: dict[str, Case] = {
    # WFDB header
    "wfdb_garbage_header": _hea_bytes(RNG_BYTES(200)),
    "wfdb_empty_header": _hea_bytes(b""),
    "wfdb_comment_only_header": _hea_bytes(b"# nothing else\n"),
    "wfdb_binary_in_header": _hea_bytes(b"sim1 1 360 7200\n\xff\xfe\x00garbage\n"),
    "wfdb_fs_abc": _set(0, 2, "abc"),
    "wfdb_fs_negative": _set(0, 2, "-360"),
    "wfdb_fs_zero": _set(0, 2, "0"),
    "wfdb_fs_1e10": _set(0, 2, "1e10"),
    "wfdb_fs_nan": _set(0, 2, "nan"),
    "wfdb_fs_inf": _set(0, 2, "inf"),
    "wfdb_n_sig_zero": _set(0, 1, "0"),
    "wfdb_n_sig_abc": _set(0, 1, "abc"),
    "wfdb_n_sig_huge": _set(0, 1, "100000"),
    "wfdb_n_samples_1e12": _set(0, 3, "1000000000000"),
    "wfdb_n_samples_negative": _set(0, 3, "-5"),
    "wfdb_n_samples_beyond_data": _set(0, 3, "72000"),
    "wfdb_format_999": _set(1, 1, "999"),
    "wfdb_gain_abc": _set(1, 2, "abc/mV"),
    "wfdb_signal_file_elsewhere": _set(1, 0, "../../../etc/passwd"),
    "wfdb_byte_offset_huge": _set(1, 1, "16+99999999"),
    "wfdb_no_signal_line": _drop_signal_line,
    "wfdb_truncated_data": _dat(lambda b: b[:1001]),
    "wfdb_empty_data": _dat(lambda b: b""),
    "wfdb_missing_data": _dat(lambda b: None),
    "wfdb_every_sample_invalid": _dat(lambda b: b"\x00\x80" * (len(b) // 2)),
    # CSV
    "csv_empty": _csv_text(""),
    "csv_header_only": _csv_text("time_s,ecg_uv\n"),
    "csv_binary": _csv_text(RNG_BYTES(400)),
    "csv_nul_bytes": _csv_text("time_s,ecg_uv\n0,1\x00\n"),
    "csv_non_numeric": _csv_text("time_s,ecg_uv\n0,abc\n0.01,2\n"),
    "csv_ragged_rows": _csv_text("time_s,ecg_uv\n0,1\n0.01\n"),
    "csv_time_decreasing": _csv(_T[::-1].copy(), _SIG),
    "csv_time_constant": _csv(np.zeros_like(_T), _SIG),
    "csv_time_step_1e-12": _csv(_T * 1e-10, _SIG),
    "csv_time_nan": _csv(np.full_like(_T, np.nan), _SIG),
    "csv_all_values_nan": _csv(_T, np.full_like(_SIG, np.nan)),
    "csv_fs_option_zero": _csv(None, _SIG, "?fs=0"),
    "csv_fs_option_negative": _csv(None, _SIG, "?fs=-360"),
    "csv_fs_option_abc": _csv(None, _SIG, "?fs=abc"),
    "csv_chunk_option_zero": _csv(_T, _SIG, "?chunk_s=0"),
    "csv_chunk_option_abc": _csv(_T, _SIG, "?chunk_s=abc"),
    "csv_start_beyond_the_end": _csv(_T, _SIG, "?start_s=1e9"),
    # captures
    "bin_not_a_capture": _bin(RNG_BYTES(500)),
    "bin_magic_only": _bin(H10_BIN_MAGIC),
    "bin_garbage_length": _bin(H10_BIN_MAGIC + b"\xff\xff\xff\x7f" + RNG_BYTES(100)),
    "bin_every_frame_corrupt": _bin(_BAD_TS),
    "jsonl_bad_header": _jsonl(_GOOD_LINES, header='{"format": '),
    "jsonl_deeply_nested_header": _jsonl(_GOOD_LINES, header="[" * 100_000 + "]" * 100_000),
    "jsonl_every_line_bad": _jsonl(["{}", "[1, 2]", '{"char": 5}', "x" * 1000]),
}

TOLERATED: dict[str, Case] = {
    "wfdb_garbage_annotations": _atr(b"\xff" * 100),
    "wfdb_annotations_cut_off": _atr(b"\x01\x02\x03"),
    "bin_truncated_last_record": _bin(
        H10_BIN_MAGIC + b"".join(len(f).to_bytes(4, "little") + f for f in _FRAMES)[:-50]
    ),
    "bin_one_frame_corrupt": _bin(_FRAMES[:10] + _BAD_TS[10:11] + _FRAMES[11:]),
    "jsonl_some_lines_bad": _jsonl(
        _GOOD_LINES[:10]
        + [
            "[" * 100_000 + "]" * 100_000,  # nesting beyond the JSON parser's recursion
            _note(b"\x00" * 3, "9" * 5000),  # a 5000-digit t_ns
            '{"t_ns": 1, "char": "5c82", "hex": "zz"}',
            "x" * 2_000_000,  # a 2 MB line
        ]
        + _GOOD_LINES[10:]
    ),
}
