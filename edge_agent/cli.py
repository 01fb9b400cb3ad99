"""``medchain edge``: run the edge agent on a BLE device, a replay file or an MQTT raw stream."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from common.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

EPILOG = """examples:
  medchain edge --source replay:../shared/data/mitdb/100 --speed max --out beats.jsonl
  medchain edge --source ble:AA:BB:CC:DD:EE:FF --broker mqtt://127.0.0.1:1883 --client-id patient-7
  medchain edge --source mqtt:sim-101 --broker mqtt://127.0.0.1:1883
  medchain edge --source replay:recording.csv --spot-check     # one 30 s rhythm verdict (JSON)

A replay is paced in real time by default (a 30-min record takes 30 min, as from a device);
--speed max processes it as fast as the CPU allows (a 30-min MIT-BIH record in seconds). On a
terminal a progress bar shows how far it is; a one-line summary ends every run, then the run's
counters as JSON on stdout.

State: the SQLite buffer (edge_buffer.sqlite) and the federated folder live in
$XDG_STATE_HOME/medchain/edge/CLIENT_ID (~/.local/state/... without XDG_STATE_HOME; systemd's
$STATE_DIRECTORY when it sets one); --state-dir, --buffer and --workdir override them.
--out lines: {"type": "beat", "pred": model class, "ref": annotated class (replays with
annotations), "probs", ...} and {"type": "event", ...}.

Settings also come from a TOML table [edge] (--config) and MEDCHAIN_EDGE_* variables
(e.g. MEDCHAIN_EDGE_BROKER_URL); flags win.
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
    p.add_argument(
        "--speed",
        choices=("realtime", "max"),
        help="replay pacing: realtime (default, as from a device) or max (as fast as possible)",
    )
    p.add_argument("--out", type=Path, help="write every beat and event as JSON lines here")
    p.add_argument(
        "--broker", help="MQTT broker URL, mqtt[s]://[user:pass@]host[:port]; none = offline"
    )
    p.add_argument("--client-id", help="device id (default: the mqtt: source id, else edge-1)")
    p.add_argument("--model", type=Path, help="beat model ONNX (card beside it); default: packaged")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="this device's state folder (default $XDG_STATE_HOME/medchain/edge/CLIENT_ID)",
    )
    p.add_argument(
        "--buffer", type=Path, help="SQLite buffer file (default STATE_DIR/edge_buffer.sqlite)"
    )
    p.add_argument("--config", type=Path, help="TOML settings file (table [edge])")
    p.add_argument(
        "--federated",
        action="store_true",
        default=None,
        help="take part in federated rounds (head training on this device's labelled beats)",
    )
    p.add_argument(
        "--workdir", type=Path, help="federated state folder (default STATE_DIR/federated)"
    )
    p.add_argument(
        "--spot-check",
        action="store_true",
        help="record --spot-seconds of the source's ECG, print one rhythm verdict as JSON, exit "
        "(a replay plays as fast as possible unless --speed realtime)",
    )
    p.add_argument(
        "--spot-seconds",
        type=float,
        default=30.0,
        help="spot-check length, 9-60 s (default 30, as a watch records)",
    )
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
    from edge_agent.config import EdgeSettings, default_state_dir

    overrides = {
        "source": args.source,
        "speed": args.speed,
        "out_path": args.out,
        "broker_url": args.broker,
        "client_id": args.client_id or _default_client_id(args.source),
        "model_path": args.model,
        "state_dir": args.state_dir,
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
    if settings.state_dir is None:
        settings = dataclasses.replace(
            settings, state_dir=default_state_dir(env, settings.client_id)
        )
    return settings


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the agent until the source ends (replay) or SIGINT/SIGTERM (live)."""
    import asyncio
    import signal
    import time

    from edge_agent.app import run_edge
    from edge_agent.progress import ReplayProgress, summary_line

    if getattr(args, "spot_check", False):
        return spot_check(args, env)
    settings = settings_from_args(args, env)
    progress = (
        ReplayProgress(sys.stderr, realtime=settings.speed == "realtime")
        if settings.source.split(":", 1)[0] in REPLAY_SCHEMES
        else None
    )

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
            _LOGGER.info("signal %d: stopping (flushing the buffer)", signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, int(sig))
        return await run_edge(settings, stop=stop, progress=progress)

    start = time.monotonic()
    try:
        with _logs_above_the_bar(progress):
            stats = asyncio.run(main())
    except asyncio.CancelledError:
        _LOGGER.warning("stopped by a second signal: counters not available")
        return 1
    where = {"buffer": str(settings.buffer_file)}
    if settings.out_path is not None:
        where = {"out": str(settings.out_path), **where}
    print(summary_line(stats, time.monotonic() - start, where), file=sys.stderr)
    print(json.dumps(stats.as_dict(), indent=1))
    return 0


REPLAY_SCHEMES = ("replay", "wfdb", "csv", "capture")


def spot_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``--spot-check``: one rhythm verdict of the source's first ``--spot-seconds``."""
    from common.spot_payloads import MAX_SPOT_S, MIN_SPOT_S
    from edge_agent.spot_cli import run_spot_check

    if not MIN_SPOT_S <= args.spot_seconds <= MAX_SPOT_S:
        raise ConfigError(
            f"--spot-seconds {args.spot_seconds:g}: give {MIN_SPOT_S:g}-{MAX_SPOT_S:g} s"
        )
    if args.speed is None:
        args.speed = "max"
    print(json.dumps(run_spot_check(settings_from_args(args, env), args.spot_seconds)))
    return 0


@contextlib.contextmanager
def _logs_above_the_bar(progress: Any) -> Iterator[None]:
    """While a progress bar is drawn, log lines go above it instead of through it."""
    if progress is None or not progress.tty:
        yield
        return
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:
        yield
        return
    with logging_redirect_tqdm():
        yield
