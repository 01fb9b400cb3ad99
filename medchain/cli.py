"""Entry point of the ``medchain`` command.

Each package owns its subcommands in a light ``cli.py`` module exposing
``register(subparsers)``; heavy imports (torch, onnxruntime, psycopg, flask) happen inside the
command functions, so ``medchain --help`` is fast and an edge-only install works without torch.
Errors derived from :class:`common.errors.MedchainError` become a one-line message and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from common.errors import MedchainError

_LOGGER = logging.getLogger(__name__)

# Modules that contribute subcommands, in --help order.
COMMAND_MODULES = (
    "models.cli",
    "models.rr_gate_cli",
    "models.template_veto_cli",
    "models.compact_cli",
    "models.narrow_cli",
    "firmware_bridge.cli",
    "edge_agent.cli",
    "store.cli",
    "cloud_aggregator.cli",
    "medchain.simulation",
    "web.cli",
    "medchain.demo",
)

# Which module registers each command: `medchain edge ...` imports only edge_agent.cli, which
# keeps a device's agent free of the other packages' imports (memory on a Raspberry Pi).
COMMAND_OWNERS = {
    "data": "models.cli",
    "train": "models.cli",
    "export": "models.cli",
    "quantize": "models.cli",
    "evaluate": "models.cli",
    "rr-gate": "models.rr_gate_cli",
    "template-veto": "models.template_veto_cli",
    "compact": "models.compact_cli",
    "narrow-weights": "models.narrow_cli",
    "ble": "firmware_bridge.cli",
    "edge": "edge_agent.cli",
    "db": "store.cli",
    "aggregator": "cloud_aggregator.cli",
    "simulate": "medchain.simulation",
    "broker": "cloud_aggregator.cli",
    "web": "web.cli",
    "demo": "medchain.demo",
}

DESCRIPTION = """MedChain: personalised heart monitoring from wearables with federated learning.

Main commands:
  demo        run the whole system on this machine (broker, store, aggregator, edge agents, web)
  data        download PhysioNet datasets into the cache / list what is available
  train       train a task's teacher and distilled student (beat, ptb, aft, rhythm)
  export      export a trained student to ONNX        quantize   int8 static QDQ quantization
  evaluate    per-class metrics of an ONNX/torch model on a task's evaluation split
  rr-gate     append the RR gate (N/S re-split by rhythm) to a trained beat model
  template-veto  serve V calls that look like the wearer's usual beat as Q (trained beat model)
  compact     short internal names for an older ONNX model (same outputs, smaller file)
  narrow-weights  7-bit weights for an older int8 model (same answers on CPUs without VNNI)
  ble         scan / record / decode / replay Bluetooth LE wearables (Polar H10, HRS)
  edge        run the edge agent on a BLE device, a replay file or an MQTT replay stream
  aggregator  run the federated-learning aggregator service
  simulate    MIT-BIH patients as devices of the round engine (real broker or in memory)
  web         serve the clinician/patient web app
  db          store schema migrations      broker   generate a production Mosquitto config
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Assemble the parser from the packages' ``register`` functions.

    Parameters
    ----------
    only : str, optional
        A module of ``COMMAND_MODULES``: register just its commands (the one being run).
    """
    parser = argparse.ArgumentParser(
        prog="medchain",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # a partial install (e.g. edge-only) lacks some packages
            _LOGGER.debug("commands of %s unavailable: %s", name, exc)
            continue
        register: Callable[[Any], None] = module.register
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(COMMAND_OWNERS.get(command or ""))
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args, os.environ)
    except MedchainError as exc:
        print(f"medchain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medchain: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
