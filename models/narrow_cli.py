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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.datasets import default_cache_dir
from common.errors import CorruptInputError

_LOGGER = logging.getLogger(__name__)

AGREE_ATOL = 0.02  # max |probability difference| fused vs reference (rounding, not saturation)


def fused_vs_reference(model: bytes, feed: dict[str, np.ndarray]) -> float:
    """Max |difference| of the first output between onnxruntime's optimized graph (fused
    integer kernels of this CPU) and the unoptimized QDQ graph (float arithmetic on the
    dequantized values: what a CPU without int16 saturation computes)."""
    import onnxruntime as ort

    outs = []
    levels = ort.GraphOptimizationLevel
    for level in (levels.ORT_ENABLE_ALL, levels.ORT_DISABLE_ALL):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        outs.append(np.asarray(sess.run(None, feed)[0], dtype=np.float64))
    return float(np.abs(outs[0] - outs[1]).max(initial=0.0))


def cmd_narrow_weights(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Narrow ``--model``'s weights into ``--out`` (default in place) and re-card it."""
    import onnx

    from common.model_card import card_path_for, load_card
    from models.cards import QUANTIZATION, save_rewritten_card
    from models.evaluate import metrics_from_probs, metrics_line
    from models.onnx_names import compact_names
    from models.predict import onnx_feed, onnx_predictor
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
    narrowed = model.SerializeToString()
    probe = test.subset(np.arange(min(len(test), 4096)))
    gap = fused_vs_reference(narrowed, onnx_feed(onnx_session_bytes(narrowed), probe))
    if gap > AGREE_ATOL:  # never expected with 7-bit weights: refuse rather than ship
        raise CorruptInputError(
            f"{src}: fused kernels still differ from the reference by {gap:.3g}; nothing written"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    measured = metrics_from_probs(task, test, onnx_predictor(out)(test))
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
        f"{WEIGHT_QMAX}] (fused vs reference max |dp| {gap:.2g}; sha256 before it "
        f"{card.artifact.sha256})"
    )
    card = dataclasses.replace(
        card, artifact=dataclasses.replace(card.artifact, quantization=QUANTIZATION)
    )
    save_rewritten_card(card, src, out, parts, note, metrics=metrics)
    print(f"{out}: {count} weight tensors narrowed; {metrics_line(measured)}")
    _LOGGER.info("narrowed %s -> %s", src, out)
    return 0


def onnx_session_bytes(model: bytes) -> Any:
    """A plain onnxruntime session of serialized ``model`` (input names for ``onnx_feed``)."""
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


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
