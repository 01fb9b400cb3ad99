"""``medchain ble ...``: scan, record, decode, replay and publish (MQTT replay mode).

Heavy imports (bleak, paho, wfdb) happen inside the handlers so ``medchain --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.errors import CorruptInputError

DECODE_EPILOG = """examples:
  medchain ble decode --char 2a37 --hex "16 48 54 01 EC 02"
  medchain ble decode --char 5c82 --hex 0000943577000000000002 80ff028000
  medchain ble decode --char 5c81 --hex f0010000000001820001010e00
"""


def register(subparsers: Any) -> None:
    """Add ``ble`` and its subcommands to the top-level parser."""
    ble = subparsers.add_parser(
        "ble",
        help="scan / record / decode / replay Bluetooth LE wearables (Polar H10, HRS)",
        description="Bluetooth LE wearables: Polar PMD (ECG/ACC/PPG) and Heart Rate Service.",
    )
    sub = ble.add_subparsers(dest="ble_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("scan", help="list advertising BLE devices (HRS / Polar PMD flagged)")
    p.add_argument("--timeout", type=float, default=5.0, help="scan duration, s (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("record", help="stream from a device into a JSONL capture file")
    p.add_argument("address", help="device address (AA:BB:..) or part of its name")
    p.add_argument("--streams", default="ecg", help="comma list of ecg,acc,ppg,hr (default ecg)")
    p.add_argument("--out", type=Path, required=True, help="capture file to write (.jsonl)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many s")
    p.add_argument(
        "--simulate",
        type=Path,
        default=None,
        metavar="CAPTURE",
        help="no hardware: a simulated device streams this capture (.bin/.jsonl) at max speed",
    )
    p.add_argument("--max-chunks", type=int, default=None, help="stop after this many chunks")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser(
        "decode",
        help="decode one notification given as hex; prints one JSON object",
        epilog=DECODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--char",
        required=True,
        help="characteristic: UUID, 2a37, 5c81 (PMD control), 5c82 (PMD data)",
    )
    p.add_argument("--hex", required=True, nargs="+", help="value bytes in hex (spaces allowed)")
    p.add_argument("--factor", type=float, default=1.0, help="PMD FACTOR for compressed ACC/PPG")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("replay", help="decode a capture (.bin H10 container or .jsonl)")
    p.add_argument("file", type=Path, help="capture file")
    p.add_argument("--json", action="store_true", help="print every decoded frame as a JSON line")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "publish",
        help="MQTT replay mode: publish a recording as raw samples on medchain/v1/raw/ID",
    )
    p.add_argument("record", help="WFDB record path, CSV file or capture (any replay: spec target)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                   help="broker URL mqtt[s]://[user:pw@]host[:port][?ca=PEM&cert=PEM&key=PEM"
                        "&protocol=auto|5|3.1.1]")  # fmt: skip
    p.add_argument("--client-id", required=True, help="device id to publish as")
    p.add_argument(
        "--speed", default="1", help="replay speed factor, or 'max' (default 1 = real time)"
    )
    p.add_argument(
        "--channel", default=None, help="WFDB/CSV channel name(s) or index(es), comma list"
    )
    p.add_argument("--start", type=float, default=0.0, help="start offset in the record, s")
    p.add_argument("--duration", type=float, default=None, help="seconds to publish (default all)")
    p.add_argument("--chunk", type=float, default=1.0, help="chunk length, s (default 1)")
    p.set_defaults(func=cmd_publish)


def _parse_hex(parts: list[str]) -> bytes:
    text = "".join(parts).replace(":", "").replace(",", "").replace("0x", "").replace(" ", "")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise CorruptInputError(f"--hex is not hexadecimal: {' '.join(parts)!r}") from exc


def cmd_decode(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Decode one value; a malformed one prints a JSON error object and returns 2."""
    from firmware_bridge.decode import decode_notification
    from firmware_bridge.frames import DecodeError

    data = _parse_hex(args.hex)
    try:
        frame = decode_notification(args.char, data, factor=args.factor)
    except DecodeError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": exc.reason, "hex": data.hex()}))
        print(f"medchain: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(frame.as_dict()))
    return 0


def cmd_replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Decode every record of a capture; JSON lines with --json, a summary on stderr."""
    try:
        return _replay(args)
    except BrokenPipeError:  # `... --json | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _replay(args: argparse.Namespace) -> int:
    from firmware_bridge.capture import CaptureReader
    from firmware_bridge.decode import decode_notification
    from firmware_bridge.frames import DecodeError, PmdFrame

    reader = CaptureReader(args.file)
    counts = {"records": 0, "frames": 0, "rejected": 0, "samples": 0}
    out = sys.stdout
    for record in reader:
        counts["records"] += 1
        if record.direction == "write":
            if args.json:
                out.write(
                    json.dumps(
                        {
                            "type": "write",
                            "char": record.char,
                            "hex": record.data.hex(),
                            "t_ns": record.t_ns,
                        }
                    )
                    + "\n"
                )
            continue
        try:
            frame = decode_notification(record.char, record.data)
        except Exception as exc:  # one bad record (typed DecodeError, or anything) is counted
            counts["rejected"] += 1
            if args.json:
                reason = exc.reason if isinstance(exc, DecodeError) else str(exc)
                out.write(
                    json.dumps(
                        {"error": type(exc).__name__, "message": reason, "hex": record.data.hex()}
                    )
                    + "\n"
                )
            continue
        counts["frames"] += 1
        if isinstance(frame, PmdFrame):
            counts["samples"] += frame.n_samples
        if args.json:
            obj = frame.as_dict()
            obj["t_ns"] = record.t_ns
            out.write(json.dumps(obj) + "\n")
    summary = {**counts, "truncated": reader.truncated, "bad_lines": reader.rejected}
    print(json.dumps(summary), file=sys.stderr if args.json else sys.stdout)
    if counts["frames"] == 0:
        raise CorruptInputError(f"{args.file.name}: no notification could be decoded")
    return 0


def cmd_scan(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """List nearby devices."""
    from firmware_bridge.ble import scan

    results = asyncio.run(scan(args.timeout))
    for r in results:
        if args.json:
            print(
                json.dumps(
                    {
                        "address": r.address,
                        "name": r.name,
                        "rssi": r.rssi,
                        "heart_rate": r.heart_rate,
                        "pmd": r.pmd,
                    }
                )
            )
        else:
            flags = ",".join(f for f, on in (("HRS", r.heart_rate), ("PMD", r.pmd)) if on)
            print(f"{r.address}  {r.rssi:4d} dBm  {flags:8s} {r.name}")
    if not results and not args.json:
        print("no devices found", file=sys.stderr)
    return 0


def cmd_record(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Record a device's notifications into our JSONL capture format (STOP sent on exit)."""
    from firmware_bridge.ble_source import BleSource
    from firmware_bridge.capture import CaptureWriter

    streams = tuple(s.strip().lower() for s in args.streams.split(",") if s.strip())
    transport = None
    if args.simulate is not None:
        from firmware_bridge.fake_transport import FakeDevice, FakeTransport

        transport = FakeTransport.factory(FakeDevice.from_capture(args.simulate, None))

    async def consume(source: BleSource, writer: CaptureWriter) -> None:
        chunks, start, last = 0, time.monotonic(), time.monotonic()
        async for _chunk in source.chunks():
            chunks += 1
            now = time.monotonic()
            if now - last >= 5:
                last = now
                print(
                    f"\r{now - start:7.0f} s  {source.stats.samples} samples  "
                    f"{writer.count} events",
                    end="",
                    file=sys.stderr,
                )
            if args.max_chunks is not None and chunks >= args.max_chunks:
                return

    async def run(writer: CaptureWriter) -> dict[str, int]:
        source = BleSource(
            args.address, streams=streams, recorder=writer.write, transport_factory=transport
        )
        async with source:
            # --duration bounds the wall time even while the device is out of reach.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.duration):
                    await consume(source, writer)
        return source.stats.as_dict()

    device = {"target": args.address, "streams": list(streams)}
    with CaptureWriter(args.out, device, time.time_ns()) as writer:
        try:
            stats = asyncio.run(run(writer))
        except KeyboardInterrupt:  # Ctrl-C: the source's exit already sent STOP
            stats = {}
    print(json.dumps({"out": str(args.out), "events": writer.count, **stats}))
    return 0


def cmd_publish(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Publish a recording onto medchain/v1/raw/{client_id}."""
    from firmware_bridge.mqtt_replay import MqttReplayPublisher
    from firmware_bridge.sources import open_source

    options: dict[str, Any] = {"speed": args.speed, "chunk_s": args.chunk, "start_s": args.start}
    if args.channel:
        options["channels"] = args.channel
    if args.duration is not None:
        options["duration_s"] = args.duration
    source = open_source(f"replay:{args.record}", **options)
    publisher = MqttReplayPublisher(args.client_id, args.broker)
    start = time.monotonic()
    count = asyncio.run(publisher.publish(source))
    print(
        json.dumps(
            {
                "topic": publisher.topic,
                "chunks": count,
                "refused": publisher.refused,
                "samples": source.stats.samples,
                "seconds": round(time.monotonic() - start, 3),
                "source": source.name,
            }
        )
    )
    return 0
