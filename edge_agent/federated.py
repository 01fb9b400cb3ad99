"""Device-side participation in federated rounds.

:class:`FederatedParticipant` is transport-free: feed it every message of its
:meth:`~FederatedParticipant.subscriptions` with ``on_message`` and call ``poll`` (blocking: it
trains; run it in a worker thread from an asyncio agent) to get the ``(topic, payload)`` pairs
to publish with QoS 1. It

1. keeps the latest round announcement (empty retained payload = no round);
2. reassembles the announced model from ``model/{version}[/i]`` and checks its sha256;
3. when selected and before the deadline, embeds the local labelled beats with the release's
   int8 ONNX backbone (cached per backbone hash), trains the head (FedProx term from the round
   config), and returns the int8-compressed update, chunked if needed;
4. refreshes the device's personalised head (``personal_head.npz`` in ``workdir``) that the
   inference path loads with :func:`edge_agent.trainer.load_personal_head`.

:func:`run_fleet` runs many simulated patients (one per ``.npz`` of labelled beats) against a
real broker, with random drop-outs and slow clients (``python -m edge_agent.federated``).

The participant lives in :mod:`edge_agent.federated_participant` (its agent adapter in
:mod:`edge_agent.agent_participant`), the fleet in
:mod:`edge_agent.federated_fleet`; this module re-exports them and is the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path

from edge_agent.agent_participant import AgentParticipant, ReliablePublisher
from edge_agent.federated_fleet import NpzExamples, run_client, run_fleet
from edge_agent.federated_participant import (
    EmbedderFactory,
    FederatedParticipant,
    ParticipantStats,
)

__all__ = [
    "AgentParticipant",
    "EmbedderFactory",
    "FederatedParticipant",
    "NpzExamples",
    "ParticipantStats",
    "ReliablePublisher",
    "main",
    "run_client",
    "run_fleet",
]


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_agent.federated --broker URL --data DIR --work DIR --seconds S``."""
    ap = argparse.ArgumentParser(description="simulated federated clients (one per npz)")
    ap.add_argument("--broker", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--slow-s", type=float, default=0.0)
    ap.add_argument("--stats", type=Path)
    ap.add_argument(
        "--shard", default="0/1", help="K/N: run the K-th of every N clients (one process each)"
    )
    args = ap.parse_args(argv)
    k, _, n = args.shard.partition("/")
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        ap.error(f"--shard {args.shard!r}: expected K/N with 0 <= K < N")
    logging.basicConfig(level=logging.WARNING)
    if args.stats:  # the work folder may not exist yet: devices that never personalise
        args.stats.parent.mkdir(parents=True, exist_ok=True)  # create nothing in it
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())  # clean stop: offline statuses, stats written
    timer = threading.Timer(args.seconds, stop.set)
    timer.start()
    threading.Thread(target=_stop_when_orphaned, args=(stop, os.getppid()), daemon=True).start()
    try:
        stats = run_fleet(
            args.broker,
            args.data,
            args.work,
            stop,
            (int(k), int(n)),
            drop_prob=args.drop,
            slow_prob=args.slow,
            slow_s=args.slow_s,
        )
    finally:
        timer.cancel()
    if args.stats:
        args.stats.write_text(json.dumps(stats))
    return 0


def _stop_when_orphaned(stop: threading.Event, parent: int, every_s: float = 1.0) -> None:
    """Stop the fleet once its parent is gone (re-parented): a simulation killed without its
    clean-up must not leave 22 devices logged in, each taking over the next run's sessions."""
    while not stop.wait(every_s):
        if os.getppid() != parent:
            logging.getLogger(__name__).warning("parent %d is gone: stopping the fleet", parent)
            stop.set()


if __name__ == "__main__":
    raise SystemExit(main())
