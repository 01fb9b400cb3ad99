"""``medchain ble`` subcommands through the real top-level CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from firmware_bridge.capture import CaptureRecord, CaptureWriter
from firmware_bridge.gatt import PMD_CONTROL_POINT_UUID, PMD_DATA_UUID
from firmware_bridge.mqtt_replay import MqttReplaySource
from medchain.cli import main
from tests.firmware_bridge.vectors import sdk
from tests.support.datasets import dataset_path
from tests.support.services import Mosquitto


def test_decode_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    rc = main(["ble", "decode", "--char", "2a37", "--hex", "16 48 54 01 EC 02"])

    # Assert
    assert rc == 0
    assert json.loads(capsys.readouterr().out) == {
        "type": "hrs",
        "hr_bpm": 72,
        "sensor_contact": True,
        "energy_expended_kj": None,
        "rr_s": [0.33203125, 0.73046875],
    }


def test_decode_pmd_response_and_data(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    rc1 = main(["ble", "decode", "--char", "5c81", "--hex", sdk.PMD_CP_GET_ECG_H10.hex()])
    rc2 = main(["ble", "decode", "--char", PMD_DATA_UUID, "--hex", sdk.PMD_ECG_TYPE0.hex(" ")])

    # Assert
    response, frame = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (rc1, rc2) == (0, 0)
    assert response["status"] == "success" and response["params"] == "0001820001010e00"
    assert frame["samples"] == [[-32766.0], [32770.0]] and frame["unit"] == "uV"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--char", "5c82", "--hex", "000102"], "TruncatedFrameError"),
        (["--char", "5c81", "--hex", "f0 0c 00 00"], "InvalidFieldError"),
        (["--char", "5c82", "--hex", "05" + "00" * 9 + "01"], "UnsupportedMeasurementError"),
    ],
)
def test_decode_malformed_exits_2_with_typed_error(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    rc = main(["ble", "decode", *argv])

    # Assert
    captured = capsys.readouterr()
    assert rc == 2
    assert json.loads(captured.out)["error"] == error
    assert captured.err.count("\n") == 1 and error in captured.err


@pytest.mark.parametrize(
    "argv", [["--char", "2a37", "--hex", "zz"], ["--char", "nope", "--hex", "00"]]
)
def test_decode_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ble", "decode", *argv]) == 2
    assert capsys.readouterr().err.startswith("medchain: error:")


def test_replay_bin_summary(capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    path = dataset_path("polar_h10_ble_captures") / "hr_data_2023-01-13_11-40-07.bin"

    # Execute
    rc = main(["ble", "replay", str(path)])

    # Assert
    assert rc == 0
    assert json.loads(capsys.readouterr().out) == {
        "records": 12355,
        "frames": 12355,
        "rejected": 0,
        "samples": 901915,
        "truncated": 1,
        "bad_lines": 0,
    }


def test_replay_jsonl_as_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a capture with a write, a response, a frame and a torn frame
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, {"target": "test"}, 1) as writer:
        writer.write(CaptureRecord(PMD_CONTROL_POINT_UUID, sdk.PMD_CMD_START_ECG_H10, 10, "write"))
        writer.write(CaptureRecord(PMD_CONTROL_POINT_UUID, bytes.fromhex("f0020000"), 11))
        writer.write(CaptureRecord(PMD_DATA_UUID, sdk.PMD_ECG_TYPE0, 12))
        writer.write(CaptureRecord(PMD_DATA_UUID, sdk.PMD_ECG_TYPE0[:12], 13))
    with path.open("a") as fh:
        fh.write("not json\n")

    # Execute
    rc = main(["ble", "replay", str(path), "--json"])

    # Assert
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert rc == 0
    assert [line.get("type", line.get("error")) for line in lines] == [
        "write",
        "pmd_response",
        "pmd",
        "InvalidFieldError",
    ]
    assert lines[2]["t_ns"] == 12
    assert json.loads(captured.err.splitlines()[-1]) == {
        "records": 4,
        "frames": 2,
        "rejected": 1,
        "samples": 2,
        "truncated": 0,
        "bad_lines": 1,
    }


@pytest.mark.integration
def test_publish_replays_a_wfdb_record_onto_the_raw_topic(
    mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    record = dataset_path("mitdb") / "100"
    argv = ["ble", "publish", str(record), "--broker", mosquitto.url, "--client-id", "cli-1"]
    argv += ["--speed", "max", "--duration", "5", "--channel", "MLII"]

    async def run() -> tuple[int, int]:
        source = MqttReplaySource("cli-1", mosquitto.url, idle_timeout_s=2.0)
        async with source:
            rc = await asyncio.to_thread(main, argv)
            n = sum([c.n_samples async for c in source.chunks()])
        return rc, n

    # Execute
    rc, n = asyncio.run(asyncio.wait_for(run(), 30))

    # Assert
    assert rc == 0 and n == 1800
    summary = json.loads(capsys.readouterr().out)
    assert summary["topic"] == "medchain/v1/raw/cli-1" and summary["chunks"] == 5


def test_record_then_replay_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a simulated strap streaming the real .bin capture
    capture = dataset_path("polar_h10_ble_captures") / "hr_data_2023-01-13_11-40-07.bin"
    out = tmp_path / "session.jsonl"

    # Execute
    rc = main(
        [
            "ble",
            "record",
            "sim",
            "--simulate",
            str(capture),
            "--out",
            str(out),
            "--max-chunks",
            "20",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    rc2 = main(["ble", "replay", str(out), "--json"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]

    # Assert: the capture holds the protocol and at least the 20 frames, all decodable
    assert (rc, rc2) == (0, 0) and summary["chunks"] == 20
    writes = [x["hex"] for x in lines if x.get("type") == "write"]
    assert writes[:2] == ["0100", "02000001820001010e00"] and writes[-1] == "0300"
    frames = [x for x in lines if x.get("type") == "pmd"]
    assert len(frames) >= 20 and all(f["n_samples"] == 73 for f in frames)
    assert not [x for x in lines if "error" in x]


def test_record_duration_bounds_a_silent_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a simulated device whose capture holds no data frames
    empty = tmp_path / "empty.jsonl"
    with CaptureWriter(empty, {}, 0):
        pass
    out = tmp_path / "s.jsonl"

    # Execute
    rc = main(
        ["ble", "record", "sim", "--simulate", str(empty), "--out", str(out), "--duration", "0.3"]
    )

    # Assert: it returned, the strap was stopped (STOP written) and the capture is valid
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["chunks"] == 0
    assert main(["ble", "replay", str(out), "--json"]) == 0
    writes = [json.loads(x)["hex"] for x in capsys.readouterr().out.splitlines() if '"write"' in x]
    assert writes[-1] == "0300"
