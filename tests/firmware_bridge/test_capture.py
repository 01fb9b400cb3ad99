"""Capture files: the H10 .bin container and our JSONL format, with damaged input."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import CorruptInputError
from firmware_bridge.capture import H10_BIN_MAGIC, CaptureReader, CaptureRecord, CaptureWriter
from firmware_bridge.capture_replay import CaptureReplaySource
from firmware_bridge.gatt import PMD_DATA_UUID
from tests.firmware_bridge.vectors import sdk


def _bin(tmp_path: Path, *records: bytes, tail: bytes = b"") -> Path:
    path = tmp_path / "c.bin"
    path.write_bytes(
        H10_BIN_MAGIC + b"".join(struct.pack("<I", len(r)) + r for r in records) + tail
    )
    return path


@pytest.mark.parametrize(
    ("tail", "n", "truncated", "rejected"),
    [
        (b"", 2, 0, 0),
        (b"\x10\x00", 2, 1, 0),  # length field cut
        (struct.pack("<I", 16) + b"\x00" * 5, 2, 1, 0),  # payload cut
        (struct.pack("<I", 1 << 20) + b"\x00" * 50, 2, 0, 1),  # absurd length: stop, count
    ],
)
def test_bin_reader_tolerates_damaged_tails(
    tmp_path: Path, tail: bytes, n: int, truncated: int, rejected: int
) -> None:
    # Prepare
    path = _bin(tmp_path, sdk.PMD_ECG_TYPE0, sdk.PMD_ECG_TYPE0, tail=tail)
    reader = CaptureReader(path)

    # Execute
    records = list(reader)

    # Assert
    assert [r.data for r in records] == [sdk.PMD_ECG_TYPE0] * n
    assert all(r.char == PMD_DATA_UUID and r.t_ns is None for r in records)
    assert (reader.truncated, reader.rejected) == (truncated, rejected)


def test_jsonl_round_trip_and_bad_lines(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.jsonl"
    records = [
        CaptureRecord(PMD_DATA_UUID, sdk.PMD_ECG_TYPE0, 5),
        CaptureRecord("00002a37-0000-1000-8000-00805f9b34fb", sdk.HRS_SMARTGATTLIB, 6),
    ]
    with CaptureWriter(path, {"target": "x"}, 1) as writer:
        for r in records:
            writer.write(r)
    with path.open("a") as fh:
        fh.write('{"char": 5, "hex": "00"}\n["list"]\n{"char": "x", "hex": "zz"}\n\n')
        fh.write(
            '{"char": "x", "hex": "00", "dir": "sideways"}\n{"char": "x", "hex": "00", "t_ns": true}\n'
        )
    reader = CaptureReader(path)

    # Execute
    got = list(reader)

    # Assert
    assert got == records
    assert reader.header["device"] == {"target": "x"} and reader.header["version"] == 1
    assert reader.rejected == 5


@pytest.mark.parametrize("content", [b"hello world", b"{not json"])
def test_unknown_files_are_clear_errors(tmp_path: Path, content: bytes) -> None:
    # Prepare
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)

    # Execute / Assert
    with pytest.raises(CorruptInputError):
        list(CaptureReader(path))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorruptInputError, match="does not exist"):
        list(CaptureReader(tmp_path / "none.bin"))


def test_replay_counts_unknown_characteristics_instead_of_crashing(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, {}, 0) as writer:
        writer.write(CaptureRecord("not-a-uuid", b"\x00", 1))
        writer.write(CaptureRecord(PMD_DATA_UUID, sdk.PMD_ECG_TYPE0, 2))
    source = CaptureReplaySource(path, speed=None)

    async def run() -> int:
        async with source:
            return len([c async for c in source.chunks()])

    # Execute / Assert
    assert asyncio.run(run()) == 1
    assert source.stats.rejected == 1


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=6))
def test_jsonl_reader_fuzz(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    # Prepare: a valid header then arbitrary lines
    path = tmp_path_factory.mktemp("fz") / "c.jsonl"
    header = '{"format": "medchain-ble-capture", "version": 1}\n'
    path.write_bytes((header + "\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass"))
    reader = CaptureReader(path)

    # Execute
    records = list(reader)

    # Assert: every non-blank line is a record or a counted reject
    assert len(records) + reader.rejected == sum(
        1 for x in "\n".join(lines).split("\n") if x.strip()
    )
