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
    "medchain.demo",
    "models.cli",
    "models.template_veto_cli",
    "models.narrow_cli",
    "firmware_bridge.cli",
    "edge_agent.cli",
    "store.cli",
    "cloud_aggregator.cli",
    "medchain.simulation",
    "web.cli",
)

# Which module registers each command: `medchain edge ...` imports only edge_agent.cli, which
# keeps a device's agent free of the other packages' imports (memory on a Raspberry Pi).
COMMAND_OWNERS = {
    "data": "models.cli",
    "train": "models.cli",
    "export": "models.cli",
    "quantize": "models.cli",
    "evaluate": "models.cli",
    "template-veto": "models.template_veto_cli",
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

Start with `medchain demo` (the whole system on one machine); `medchain COMMAND --help` tells
more about each command.
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
