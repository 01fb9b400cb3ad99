"""``medchain narrow-weights``: 7-bit weights for an int8 model quantized before they were the
default, so that it gives the same answers on every CPU; re-card it.

Models quantized with full 8-bit weights change their answers on x86 CPUs without VNNI
(onnxruntime's U8S8 kernels saturate there, ``models.weight_range``). This command rescales the
weights into [-64, 64] without the float checkpoint, checks that onnxruntime's fused kernels now
agree with the unfused QDQ reference on the task's test split (the arithmetic a VNNI or ARM CPU
does), re-measures the metrics there (the card's previous int8 metrics stay as
``*_8bit_weights``) and writes the model and its card.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.datasets import default_cache_dir
from common.errors import CorruptInputError
from models.weight_range import fused_and_reference_sessions, probs_output

if TYPE_CHECKING:
    from models.tasks.base import TaskData

_LOGGER = logging.getLogger(__name__)

_BATCH = 4096  # examples per onnxruntime call in the agreement check


def _agreement(path: Path, test: TaskData) -> tuple[float, int]:
    """Max |probability difference| fused vs reference and beats whose class differs, over the
    whole ``test`` split (batches of :data:`_BATCH`; the two sessions built once)."""
    from models.predict import onnx_feed

    fused_session, reference_session = fused_and_reference_sessions(str(path))
    gap, changed = 0.0, 0
    for start in range(0, len(test), _BATCH):
        part = test.subset(np.arange(start, min(start + _BATCH, len(test))))
        feed = onnx_feed(fused_session, part)
        fused, reference = probs_output(fused_session, feed), probs_output(reference_session, feed)
        gap = max(gap, float(np.abs(fused - reference).max(initial=0.0)))
        changed += int((fused.argmax(axis=1) != reference.argmax(axis=1)).sum())
    return gap, changed


def cmd_narrow_weights(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Narrow ``--model``'s weights into ``--out`` (default in place) and re-card it."""
    import onnx

    from common.model_card import FUSED_INT8_GAP_LIMIT, card_path_for, load_card
    from models.cards import QUANTIZATION, save_rewritten_card
    from models.evaluate import metrics_from_probs, metrics_line
    from models.onnx_names import compact_names
    from models.predict import onnx_predictor
    from models.tasks import LoadOptions, get_task
    from models.tasks.base import require_labels
    from models.weight_range import WEIGHT_QMAX, int8_weight_peak, narrow_weights

    task = get_task(args.task)
    src = Path(args.model)
    out = Path(args.out) if args.out else src
    card = load_card(card_path_for(src))
    if tuple(card.classes) != tuple(task.classes):
        raise CorruptInputError(
            f"{src} has classes {list(card.classes)}, task {task.name} {list(task.classes)}"
        )
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError / OSError variants
        raise CorruptInputError(f"cannot read ONNX model {src}: {exc}") from exc
    peak = int8_weight_peak(model)
    if peak == 0:
        raise CorruptInputError(
            f"{src}: no int8 QDQ weights found (a float or QOperator model); nothing written"
        )
    if peak <= WEIGHT_QMAX:
        print(f"{src}: weights already in [-{WEIGHT_QMAX}, {WEIGHT_QMAX}] (peak {peak}); unchanged")
        return 0
    try:
        count = narrow_weights(model)
    except ValueError as exc:
        raise CorruptInputError(f"{src}: {exc}; nothing written") from exc
    compact_names(model)  # the new tensors' names, short like the rest
    opts = LoadOptions(env=env, cache_dir=default_cache_dir(env) / "preprocessed")
    tests = tuple(args.test_records.split(",")) if args.test_records else None
    test = task.load(task.test_split, dataclasses.replace(opts, records=tests))
    test = require_labels(test, task.name, task.test_split)
    out.parent.mkdir(parents=True, exist_ok=True)
    # checked and measured from a temporary file beside ``out``; ``out`` (possibly ``src``
    # itself) is replaced only when everything passed, then its card follows
    fd, name = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        onnx.save(model, str(tmp))
        gap, changed = _agreement(tmp, test)
        if gap > FUSED_INT8_GAP_LIMIT:  # never expected with 7-bit weights: refuse
            raise CorruptInputError(
                f"{src}: fused kernels still differ from the reference by {gap:.3g}; "
                "nothing written"
            )
        measured = metrics_from_probs(task, test, onnx_predictor(tmp)(test))
        os.chmod(tmp, src.stat().st_mode & 0o777)  # mkstemp made it owner-only
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    metrics: dict[str, Any] = {
        (f"{k}_8bit_weights" if k.startswith("int8") else k): v for k, v in card.metrics.items()
    }
    metrics["int8"] = {**measured, "split": task.test_split}
    parts = ["narrow-weights", "--task", task.name, "--model", str(src)]
    parts += (["--out", str(out)] if args.out else []) + (
        ["--test-records", args.test_records] if args.test_records else []
    )
    note = (
        f"{count} int8 weight tensors rescaled from peak {peak} into [-{WEIGHT_QMAX}, "
        f"{WEIGHT_QMAX}] (on the {len(test)} test examples fused vs unfused: max |dp| "
        f"{gap:.2g}, {changed} classes differ; sha256 before it {card.artifact.sha256})"
    )
    card = dataclasses.replace(
        card, artifact=dataclasses.replace(card.artifact, quantization=QUANTIZATION)
    )
    save_rewritten_card(card, src, out, parts, note, metrics=metrics)
    print(f"{out}: {count} weight tensors narrowed; {metrics_line(measured)}")
    _LOGGER.info("narrowed %s -> %s (fused vs unfused max |dp| %.2g)", src, out, gap)
    return 0


def register(subparsers: Any) -> None:
    """Add ``narrow-weights``."""
    p = subparsers.add_parser(
        "narrow-weights",
        help="7-bit weights for an older int8 model (same answers on CPUs without VNNI)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="beat", help="task (default beat)")
    p.add_argument("--model", required=True, help="int8 .onnx with its card beside it")
    p.add_argument("--out", help="output .onnx (default: rewrite --model in place)")
    p.add_argument("--test-records", help="restrict the test split's records (smoke runs)")
    p.set_defaults(func=cmd_narrow_weights)
