"""``medchain template-veto``: append the template veto to a trained int8 beat model, re-card it.

``medchain train`` appends the veto itself (models/pipeline.py, after the RR gate). This command
does the same for a model trained before it (an earlier release, ``--no-template-veto``): it
writes the vetoed copy and a card whose metrics are re-measured on the task's test split (the
card's previous metrics stay as ``*_without_veto``).
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


def cmd_template_veto(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Append the task's veto (or ``--rms-below``) to a copy of the model and re-card it."""
    from common.model_card import card_path_for, load_card
    from models.cards import AppendedStep, append_step_and_recard
    from models.evaluate import metrics_line
    from models.pipeline import veto_for
    from models.tasks import LoadOptions, get_task
    from models.tasks.base import require_labels
    from models.template_veto import TemplateVeto, add_template_veto_to_onnx, vetoed_activation

    task = get_task(args.task)
    if args.rms_below is not None:
        try:
            TemplateVeto(args.rms_below, 0, 1)  # the same range check as a card's
        except ValueError as exc:
            raise MedchainError(f"--rms-below: {exc}") from exc
        task = dataclasses.replace(task, template_veto_rms=args.rms_below)
    src, out = Path(args.model), Path(args.out)
    card = load_card(card_path_for(src))
    if "template_veto" in card.input_contract.parameters:
        raise CorruptInputError(f"{src} already has a template veto (its card says so)")
    if tuple(card.classes) != tuple(task.classes):
        raise CorruptInputError(
            f"{src} has classes {list(card.classes)}, task {task.name} {list(task.classes)}"
        )
    shape = card.onnx.inputs[0].shape if card.onnx.inputs else ()
    channels = shape[1] if len(shape) == 3 and isinstance(shape[1], int) else 0
    veto = veto_for(task, channels, enabled=True)
    if veto is None:
        raise MedchainError(
            f"task {task.name!r} / model {src}: no template veto (needs a threshold, V and Q "
            "classes and a template channel)"
        )
    opts = LoadOptions(env=env, cache_dir=default_cache_dir(env) / "preprocessed")
    tests = tuple(args.test_records.split(",")) if args.test_records else None
    test = task.load(task.test_split, dataclasses.replace(opts, records=tests))
    test = require_labels(test, task.name, task.test_split)
    step = AppendedStep(
        lambda path: add_template_veto_to_onnx(path, veto, card.onnx.inputs[0].name),
        "template_veto",
        veto.to_dict(),
        vetoed_activation(card.head.activation if card.head else "softmax"),
        "_without_veto",
        f"template veto (channel-1 RMS < {veto.rms_below:g}: V served as Q) appended",
    )
    parts = ["template-veto", "--task", task.name, "--model", str(src), "--out", str(out)]
    if args.rms_below is not None:
        parts += ["--rms-below", str(args.rms_below)]
    if args.test_records:
        parts += ["--test-records", args.test_records]
    vetoed = append_step_and_recard(card, src, out, step, task, test, parts)
    print(f"{out}: {metrics_line(vetoed)}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``template-veto``."""
    p = subparsers.add_parser(
        "template-veto",
        help="serve V calls that look like the wearer's usual beat as Q (trained beat model)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="beat", help="task (default beat)")
    p.add_argument("--model", required=True, help="int8 .onnx with its card beside it")
    p.add_argument("--out", required=True, help="vetoed .onnx (card and head npz beside it)")
    p.add_argument(
        "--rms-below",
        type=float,
        help="threshold on channel 1's RMS, z-score units (default: the task's, chosen on DS1)",
    )
    p.add_argument("--test-records", help="restrict the test split's records (smoke runs)")
    p.set_defaults(func=cmd_template_veto)
