"""``medchain rr-gate``: append the RR gate to an already trained int8 model and update its card.

``medchain train`` fits and appends the gate itself (models/pipeline.py). This command does the
same for a model trained without it (an earlier release, ``--no-rr-gate``): it fits the gate on
the task's *training* split, writes the gated copy and a card whose metrics are re-measured on
the task's test split (the net's own metrics stay in the card as ``*_without_gate``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.datasets import default_cache_dir
from common.errors import CorruptInputError, MedchainError

_LOGGER = logging.getLogger(__name__)


def cmd_rr_gate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Fit the gate on the training split, append it to a copy of the model, re-card it."""
    from common.model_card import card_path_for, load_card
    from models.cards import AppendedStep, append_step_and_recard
    from models.evaluate import metrics_line
    from models.pipeline import gate_for
    from models.rr_gate import GATED_ACTIVATION, add_rr_gate_to_onnx
    from models.tasks import LoadOptions, get_task
    from models.tasks.base import require_labels
    from models.template_veto import vetoed_activation

    task = get_task(args.task)
    src, out = Path(args.model), Path(args.out)
    card = load_card(card_path_for(src))
    if "rr_gate" in card.input_contract.parameters:
        raise CorruptInputError(f"{src} already has an RR gate (its card says so)")

    opts = LoadOptions(env=env, cache_dir=default_cache_dir(env) / "preprocessed")
    records = tuple(args.records.split(",")) if args.records else None
    tests = tuple(args.test_records.split(",")) if args.test_records else None
    train = task.load(task.train_split, dataclasses.replace(opts, records=records))
    train = require_labels(train, task.name, task.train_split)
    test = task.load(task.test_split, dataclasses.replace(opts, records=tests))
    test = require_labels(test, task.name, task.test_split)
    gate = gate_for(task, train, enabled=True)
    if gate is None:
        raise MedchainError(f"task {task.name!r} has no N/S classes and rr input for a gate")
    activation = GATED_ACTIVATION
    if "template_veto" in card.input_contract.parameters:
        # appended after a veto, the gate still gives the same probabilities: it moves mass
        # between N and S only, the veto between V and Q only, on the inputs alone
        activation = vetoed_activation(activation)
    step = AppendedStep(
        lambda path: add_rr_gate_to_onnx(path, gate),
        "rr_gate",
        gate.to_dict(),
        activation,
        "_without_gate",
        f"RR gate fitted on {task.train_split} and appended",
    )
    parts = ["rr-gate", "--task", task.name, "--model", str(src), "--out", str(out)]
    if args.records:
        parts += ["--records", args.records]
    if args.test_records:
        parts += ["--test-records", args.test_records]
    gated = append_step_and_recard(card, src, out, step, task, test, parts)
    print(f"{out}: {metrics_line(gated)}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``rr-gate``."""
    p = subparsers.add_parser(
        "rr-gate",
        help="append the RR gate (N/S re-split by rhythm) to a trained int8 beat model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="beat", help="task (default beat)")
    p.add_argument("--model", required=True, help="int8 .onnx with its card beside it")
    p.add_argument("--out", required=True, help="gated .onnx (card and head npz beside it)")
    p.add_argument("--records", help="restrict the training split's records (smoke runs)")
    p.add_argument("--test-records", help="restrict the test split's records (smoke runs)")
    p.set_defaults(func=cmd_rr_gate)
