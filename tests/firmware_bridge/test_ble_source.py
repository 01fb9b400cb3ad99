"""The BLE adapter against the fake transport: connect, start, frames, drops, stop-before-disconnect."""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from common.types import SignalChunk, StreamKind
from firmware_bridge.ble_policy import UnusableRateError
from firmware_bridge.ble_source import (
    BleSource,
    DeviceUnavailableError,
    ReconnectPolicy,
    StreamRefusedError,
)
from firmware_bridge.capture import CaptureRecord, CaptureWriter
from firmware_bridge.capture_replay import CaptureReplaySource
from firmware_bridge.fake_transport import FakeDevice, FakeTransport
from firmware_bridge.gatt import (
    HEART_RATE_MEASUREMENT_UUID as HRS,
)
from firmware_bridge.gatt import (
    PMD_CONTROL_POINT_UUID as CP,
)
from firmware_bridge.gatt import (
    PMD_DATA_UUID as DATA,
)
from firmware_bridge.gatt import MeasurementType, ResponseStatus
from firmware_bridge.pmd_data import decode_pmd_data
from firmware_bridge.sources import Source, open_source
from firmware_bridge.transport import BluetoothUnavailableError
from tests.firmware_bridge.vectors import sdk
from tests.support.datasets import dataset_path

FAST = ReconnectPolicy(initial_s=0.001, max_s=0.004, response_timeout_s=2.0)
ECG = MeasurementType.ECG
H10_ECG_SETTINGS = bytes.fromhex("00 01 82 00 01 01 0e 00")


@pytest.fixture(scope="module")
def demo_frames() -> list[bytes]:
    """The 52 real ECG notifications of ecg2_demo.txt (read in place)."""
    text = (dataset_path("polar_h10_ble_captures") / "ecg2_demo.txt").read_text()
    return [
        bytes(int(h, 16) for h in re.findall(r"'([0-9a-fA-F]{2})'", line))
        for line in text.splitlines()
        if line.startswith("DATA:")
    ]


async def _take(source: Source, n: int) -> list[SignalChunk]:
    out: list[SignalChunk] = []

    async def run() -> None:
        async with source:
            async for chunk in source.chunks():
                out.append(chunk)
                if len(out) >= n:
                    break

    await asyncio.wait_for(run(), 10)
    return out


def _writes(device: FakeDevice) -> list[str]:
    return [c[2] for c in device.calls if c[0] == "write"]


def test_connect_start_stream_and_stop_before_disconnect(demo_frames: list[bytes]) -> None:
    # Prepare
    device = FakeDevice(frames={ECG: demo_frames[:10]}, settings={ECG: H10_ECG_SETTINGS})
    source = BleSource(
        "fake", transport_factory=FakeTransport.factory(device), policy=FAST, time_base="sensor"
    )

    # Execute
    chunks = asyncio.run(_take(source, 10))

    # Assert: the protocol, in order
    assert device.calls[:5] == [
        ("connect",),
        ("start_notify", CP),
        ("start_notify", DATA),
        ("read", CP),
        ("write", CP, "0100"),
    ]
    assert _writes(device) == ["0100", "02000001820001010e00", "0300"]
    assert device.calls[-1] == ("disconnect",)
    assert device.streaming == set()  # the strap was told to stop
    # Assert: the data, sample-exact and continuous
    decoded = [decode_pmd_data(f) for f in demo_frames[:10]]
    assert [c.seq for c in chunks] == [73 * i for i in range(10)]
    assert all(c.kind is StreamKind.ECG and c.fs == 130.0 for c in chunks)
    np.testing.assert_array_equal(
        np.concatenate([c.samples for c in chunks]), np.concatenate([f.samples for f in decoded])
    )
    last_times = [c.t0_ns + round((c.n_samples - 1) * 1e9 / c.fs) for c in chunks[1:]]
    assert all(abs(t - f.unix_ns) < 2_000_000 for t, f in zip(last_times, decoded[1:], strict=True))
    assert source.stats.chunks == 10 and source.stats.rejected == 0
    assert source.features == {MeasurementType.ECG, MeasurementType.ACC}


def test_unset_sensor_clock_is_rebased_to_the_host_clock(demo_frames: list[bytes]) -> None:
    # Prepare: the demo strap's clock says 2019; the host says 2026-11-28
    host_ns = 1_795_824_000_000_000_000
    device = FakeDevice(frames={ECG: demo_frames[:3]})
    source = BleSource(
        "fake",
        transport_factory=FakeTransport.factory(device),
        policy=FAST,
        clock_ns=lambda: host_ns,
    )

    # Execute
    chunks = asyncio.run(_take(source, 3))

    # Assert: first frame's last sample at the host time, sensor spacing kept after it
    frames = [decode_pmd_data(f) for f in demo_frames[:3]]
    last = [c.t0_ns + round((c.n_samples - 1) * 1e9 / c.fs) for c in chunks]
    assert last[0] == host_ns
    for i in (1, 2):
        assert abs((last[i] - last[0]) - (frames[i].timestamp_ns - frames[0].timestamp_ns)) < 2e6


def test_drop_then_reconnect_keeps_one_continuous_stream(demo_frames: list[bytes]) -> None:
    # Prepare: the link drops after 4 frames of the first connection
    device = FakeDevice(frames={ECG: demo_frames[:12]}, drop_after=[4])
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=FAST)

    # Execute
    chunks = asyncio.run(_take(source, 12))

    # Assert
    names = [c[0] for c in device.calls]
    assert names.count("connect") == 2 and "dropped" in names
    assert source.stats.reconnects == 1
    after_drop = names[names.index("dropped") :]
    assert after_drop.index("write") > after_drop.index("connect")  # START again after reconnect
    assert [c.seq for c in chunks] == [73 * i for i in range(12)]
    np.testing.assert_array_equal(
        np.concatenate([c.samples for c in chunks])[:, 0],
        np.concatenate([decode_pmd_data(f).samples[:, 0] for f in demo_frames[:12]]),
    )
    assert _writes(device)[-1] == "0300" and device.calls[-1] == ("disconnect",)


def test_failed_attempts_back_off_then_connect(demo_frames: list[bytes]) -> None:
    # Prepare
    device = FakeDevice(frames={ECG: demo_frames[:3]}, fail_connects=4)
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=FAST)

    # Execute
    chunks = asyncio.run(_take(source, 3))

    # Assert: exponential back-off, capped at max_s
    assert len(chunks) == 3
    assert [c[0] for c in device.calls].count("connect") == 5
    assert source.backoffs == [0.001, 0.002, 0.004, 0.004]


def test_gives_up_after_max_failures() -> None:
    # Prepare
    device = FakeDevice(fail_connects=100)
    policy = ReconnectPolicy(initial_s=0.001, max_failures=3)
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=policy)

    # Execute / Assert
    with pytest.raises(DeviceUnavailableError, match="3 failed attempts"):
        asyncio.run(_take(source, 1))
    assert [c[0] for c in device.calls] == ["connect"] * 3
    assert source.backoffs == [0.001, 0.002]


def test_refused_start_is_a_typed_error_and_still_stops() -> None:
    # Prepare
    device = FakeDevice(
        frames={ECG: [sdk.PMD_ECG_TYPE0]}, refuse={ECG: ResponseStatus.INVALID_SAMPLE_RATE}
    )
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=FAST)

    # Execute / Assert
    with pytest.raises(StreamRefusedError) as info:
        asyncio.run(_take(source, 1))
    assert info.value.status is ResponseStatus.INVALID_SAMPLE_RATE
    assert _writes(device)[-1] == "0300" and device.calls[-1] == ("disconnect",)


def test_a_rate_the_edge_cannot_process_is_refused_before_start() -> None:
    # Prepare: a device that offers ECG only at 50 Hz; before, it was started and the edge's
    # ECG filters failed on its first chunk
    device = FakeDevice(
        frames={ECG: [sdk.PMD_ECG_TYPE0]}, settings={ECG: bytes.fromhex("00 01 32 00 01 01 0e 00")}
    )
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=FAST)
    # Execute / Assert: one clear error, no START written, not retried
    with pytest.raises(UnusableRateError, match="ECG: the device offers a sampling rate 50 Hz"):
        asyncio.run(_take(source, 1))
    assert not any(w.startswith("02") for w in _writes(device))


def test_unsupported_stream_is_refused_from_features() -> None:
    # Prepare: an H10 (ECG + ACC) asked for PPG
    device = FakeDevice()
    source = BleSource(
        "fake", streams=("ppg",), transport_factory=FakeTransport.factory(device), policy=FAST
    )

    # Execute / Assert
    with pytest.raises(StreamRefusedError, match="PPG: NOT_SUPPORTED"):
        asyncio.run(_take(source, 1))


def test_stream_left_running_is_restarted(demo_frames: list[bytes]) -> None:
    # Prepare: a previous session left ECG streaming
    device = FakeDevice(frames={ECG: demo_frames[:2]}, streaming={ECG})
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=FAST)

    # Execute
    chunks = asyncio.run(_take(source, 2))

    # Assert: START refused (already), STOP, START again
    assert len(chunks) == 2
    assert _writes(device)[1:4] == ["02000001820001010e00", "0300", "02000001820001010e00"]


def test_malformed_notifications_are_counted_not_fatal(demo_frames: list[bytes]) -> None:
    # Prepare
    frames = [demo_frames[0], b"\x00\x01", demo_frames[1][:101], demo_frames[1], demo_frames[1]]
    device = FakeDevice(frames={ECG: frames})
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=FAST)

    async def run() -> list[SignalChunk]:
        chunks = await _take(source, 2)
        return chunks

    # Execute
    chunks = asyncio.run(run())

    # Assert: 2 rejected (short header, torn frame), 1 duplicate dropped
    assert [c.seq for c in chunks] == [0, 73]
    assert source.stats.rejected == 2


def test_compressed_acc_uses_factor_from_start_response() -> None:
    # Prepare: START answers FACTOR = 2.44e-4 (float32 TLV)
    factor_tlv = bytes([5, 1]) + struct.pack("<f", sdk.ACC_COMPRESSED_TYPE0_FACTOR)
    device = FakeDevice(
        frames={MeasurementType.ACC: [sdk.PMD_ACC_COMPRESSED_TYPE0]},
        start_params={MeasurementType.ACC: factor_tlv},
        settings={MeasurementType.ACC: bytes.fromhex("00 01 34 00 01 01 10 00 02 01 08 00")},
    )
    source = BleSource(
        "fake", streams=("acc",), transport_factory=FakeTransport.factory(device), policy=FAST
    )

    # Execute
    (chunk,) = asyncio.run(_take(source, 1))

    # Assert: 200 Hz not offered -> 52 Hz chosen; values in mg
    assert _writes(device)[1] == "02020001340001011000020108 00".replace(" ", "")
    assert chunk.kind is StreamKind.ACC and chunk.fs == 52.0 and chunk.samples.shape == (57, 3)
    np.testing.assert_allclose(
        chunk.samples[0], np.array([1905, 27376, -29282]) * 2.44e-4 * 1000, rtol=1e-6
    )


def test_heart_rate_service_only() -> None:
    # Prepare
    device = FakeDevice(hr_notifications=[sdk.HRS_SMARTGATTLIB, sdk.HRS_POLAR_H7])
    source = BleSource(
        "fake",
        streams=("hr",),
        transport_factory=FakeTransport.factory(device),
        policy=FAST,
        clock_ns=lambda: 42,
    )

    # Execute
    chunks = asyncio.run(_take(source, 2))

    # Assert
    assert [(c.kind, c.samples[0, 0], c.seq, c.t0_ns) for c in chunks] == [
        (StreamKind.HR, 72.0, 0, 42),
        (StreamKind.HR, 60.0, 1, 42),
    ]
    assert ("start_notify", HRS) in device.calls and _writes(device) == []


def test_recorded_capture_replays_to_the_same_samples(
    tmp_path: Path, demo_frames: list[bytes]
) -> None:
    # Prepare: record a session through the recorder hook into our JSONL format
    path = tmp_path / "session.jsonl"
    device = FakeDevice(frames={ECG: demo_frames[:5]})
    with CaptureWriter(path, {"address": "fake"}, 0) as writer:
        source = BleSource(
            "fake",
            transport_factory=FakeTransport.factory(device),
            policy=FAST,
            recorder=writer.write,
        )
        live = asyncio.run(_take(source, 5))

    # Execute
    replayed = asyncio.run(_take(CaptureReplaySource(path, speed=None), 5))

    # Assert
    assert [c.seq for c in replayed] == [c.seq for c in live]
    np.testing.assert_array_equal(
        np.concatenate([c.samples for c in replayed]), np.concatenate([c.samples for c in live])
    )
    assert writer.count > 5  # notifications plus control-point writes/responses


def test_open_source_ble_spec_with_injected_transport(demo_frames: list[bytes]) -> None:
    # Prepare
    device = FakeDevice(frames={ECG: demo_frames[:2]})

    # Execute
    source = open_source(
        "ble:AA:BB:CC:DD:EE:FF?streams=ecg", transport=FakeTransport.factory(device)
    )
    chunks = asyncio.run(_take(source, 2))

    # Assert
    assert isinstance(source, BleSource) and source.name == "ble:AA:BB:CC:DD:EE:FF ecg"
    assert len(chunks) == 2


def test_record_type_is_plain_data() -> None:
    assert CaptureRecord(CP, b"\x01").direction == "notify"


def test_fake_device_from_a_capture_spec() -> None:
    # Prepare
    path = dataset_path("polar_h10_ble_captures") / "hr_data_2023-01-13_11-40-07.bin"

    # Execute
    source = open_source(f"ble:fake?capture={path}&speed=max")
    chunks = asyncio.run(_take(source, 50))

    # Assert
    assert [c.seq for c in chunks] == [73 * i for i in range(50)]
    assert all(c.kind is StreamKind.ECG for c in chunks)


def test_device_stopping_a_stream_by_itself_restarts_the_session(demo_frames: list[bytes]) -> None:
    # Prepare: the sensor reports "ECG stopped" after 3 frames
    device = FakeDevice(frames={ECG: demo_frames[:6]}, self_stop_after=3)
    source = BleSource("fake", transport_factory=FakeTransport.factory(device), policy=FAST)

    # Execute
    chunks = asyncio.run(_take(source, 6))

    # Assert: reconnected, restarted, no sample lost or repeated
    names = [c[0] for c in device.calls]
    assert "self_stop" in names and names.count("connect") == 2
    assert [c.seq for c in chunks] == [73 * i for i in range(6)]
    assert source.stats.reconnects == 1


def test_recorder_failure_ends_the_stream_but_still_stops_the_strap(
    demo_frames: list[bytes],
) -> None:
    # Prepare: the capture disk fills up after a few events
    calls: list[CaptureRecord] = []

    def recorder(record: CaptureRecord) -> None:
        if len(calls) >= 4:
            raise OSError(28, "No space left on device")
        calls.append(record)

    device = FakeDevice(frames={ECG: demo_frames[:10]})
    source = BleSource(
        "fake", transport_factory=FakeTransport.factory(device), policy=FAST, recorder=recorder
    )

    # Execute / Assert
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(_take(source, 10))
    assert _writes(device)[-1] == "0300" and device.calls[-1] == ("disconnect",)


class _NoBluetooth(FakeTransport):
    async def connect(self, on_disconnect: object) -> None:  # type: ignore[override]
        self.device.calls.append(("connect",))
        raise BluetoothUnavailableError("no adapter")


def test_host_without_bluetooth_fails_fast_instead_of_looping() -> None:
    # Prepare
    device = FakeDevice()
    source = BleSource("x", transport_factory=lambda: _NoBluetooth(device), policy=FAST)

    # Execute / Assert
    with pytest.raises(BluetoothUnavailableError, match="no adapter"):
        asyncio.run(_take(source, 1))
    assert device.calls == [("connect",)]
