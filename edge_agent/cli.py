"""``medchain edge``: run the edge agent on a BLE device, a replay file or an MQTT raw stream."""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

EPILOG = """examples:
  medchain edge --source replay:../shared/data/mitdb/100 --speed max --out beats.jsonl
  medchain edge --source ble:AA:BB:CC:DD:EE:FF --broker mqtt://127.0.0.1:1883 --client-id patient-7
  medchain edge --source mqtt:sim-101 --broker mqtt://127.0.0.1:1883

Settings also come from a TOML table [edge] (--config) and MEDCHAIN_EDGE_* variables
(e.g. MEDCHAIN_EDGE_BROKER_URL); flags win. The run's counters are printed as JSON at the end.
"""


def register(subparsers: Any) -> None:
    """Add the ``edge`` subcommand."""
    p = subparsers.add_parser(
        "edge",
        help="run the edge agent (streaming beat classification, events, MQTT uplink)",
        description="Streaming on-device monitoring: causal filtering, R-peak detection, int8 "
        "ONNX beat classification, events (VT runs, AF, brady/tachycardia, falls), a local "
        "SQLite buffer and an MQTT uplink (pred/live/status topics).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--source",
        help="ble:ADDRESS | replay:PATH (WFDB record, .csv, .bin/.jsonl capture) | mqtt:CLIENT_ID",
    )
    p.add_argument("--speed", choices=("realtime", "max"), help="replay pacing (default realtime)")
    p.add_argument("--out", type=Path, help="write every beat and event as JSON lines here")
    p.add_argument(
        "--broker", help="MQTT broker URL, mqtt[s]://[user:pass@]host[:port]; none = offline"
    )
    p.add_argument("--client-id", help="device id (default: the mqtt: source id, else edge-1)")
    p.add_argument("--model", type=Path, help="beat model ONNX (card beside it); default: packaged")
    p.add_argument("--buffer", type=Path, help="SQLite buffer file (default edge_buffer.sqlite)")
    p.add_argument("--config", type=Path, help="TOML settings file (table [edge])")
    p.add_argument(
        "--federated",
        action="store_true",
        default=None,
        help="take part in federated rounds (head training on this device's labelled beats)",
    )
    p.add_argument("--workdir", type=Path, help="federated state folder (default edge_state)")
    p.set_defaults(func=run)


def _default_client_id(source: str | None) -> str | None:
    if source and source.startswith("mqtt:"):
        return source[5:].split("?", 1)[0]
    if source and source.startswith("ble:"):
        return "h10-" + re.sub(r"[^A-Za-z0-9]", "", source[4:].split("?", 1)[0])[-12:]
    return None


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    """The frozen ``EdgeSettings`` from TOML, environment and flags."""
    from common.config import load_settings
    from common.protocol import ProtocolError, check_client_id
    from edge_agent.config import EdgeSettings

    overrides = {
        "source": args.source,
        "speed": args.speed,
        "out_path": args.out,
        "broker_url": args.broker,
        "client_id": args.client_id or _default_client_id(args.source),
        "model_path": args.model,
        "buffer_path": args.buffer,
        "federated": args.federated,
        "workdir": args.workdir,
    }
    try:
        settings = load_settings(
            EdgeSettings,
            env=env,
            prefix="MEDCHAIN_EDGE",
            toml_path=args.config,
            table="edge",
            overrides=overrides,
        )
        check_client_id(settings.client_id)
    except (ValueError, ProtocolError) as exc:
        raise ConfigError(str(exc)) from exc
    return settings


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the agent until the source ends (replay) or SIGINT/SIGTERM (live)."""
    import asyncio
    import signal

    from edge_agent.app import run_edge

    settings = settings_from_args(args, env)

    async def main() -> Any:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            if stop.is_set() and task is not None:
                _LOGGER.warning("second signal: stopping now without flushing")
                task.cancel()
                return
            # systemd stops with SIGTERM, a terminal with SIGINT: end like a finished replay
            # (classify what the front end holds, store, send, offline status, counters)
            _LOGGER.warning("signal %d: stopping (flushing the buffer)", signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, int(sig))
        return await run_edge(settings, stop=stop)

    try:
        stats = asyncio.run(main())
    except asyncio.CancelledError:
        _LOGGER.warning("stopped by a second signal: counters not available")
        return 1
    print(json.dumps(stats.as_dict(), indent=1))
    return 0
