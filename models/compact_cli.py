"""``medchain compact``: give an already shipped ONNX model short internal names, re-card it.

``medchain quantize`` / ``train`` / ``rr-gate`` write compact graphs themselves
(``models.onnx_names``). This command does it for a model made before that: the computation and
the contract names are unchanged (onnxruntime gives bit-identical outputs, checked here on
random inputs before anything is written), only the file shrinks; the card's sha256, size,
version and training command follow.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import CorruptInputError

_LOGGER = logging.getLogger(__name__)


def _outputs(
    model: bytes, feed: dict[str, np.ndarray] | None
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The model's outputs on ``feed`` (default: random float inputs of its shapes, dynamic
    axes 16, positive like RR features) and the feed used."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    if feed is None:
        rng = np.random.default_rng(0)
        feed = {
            i.name: rng.uniform(
                0.2, 2.0, [d if isinstance(d, int) else 16 for d in i.shape]
            ).astype(np.float32)
            for i in sess.get_inputs()
        }
    return [np.asarray(x) for x in sess.run(None, feed)], feed


def cmd_compact(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Compact ``--model`` into ``--out`` (default in place) and update the card beside it."""
    import onnx

    from common.model_card import card_path_for, file_sha256, load_card
    from models.cards import save_rewritten_card
    from models.onnx_names import compact_names

    src = Path(args.model)
    out = Path(args.out) if args.out else src
    card = load_card(card_path_for(src))
    try:
        model = onnx.load(str(src))
        reference, feed = _outputs(model.SerializeToString(), None)
    except Exception as exc:  # onnx / onnxruntime raise their own error types
        raise CorruptInputError(f"cannot read ONNX model {src}: {exc}") from exc
    saved = compact_names(model)
    if saved <= 0:
        print(f"{src}: nothing to compact ({src.stat().st_size} bytes)")
        return 0
    try:
        compacted, _ = _outputs(model.SerializeToString(), feed)
    except Exception as exc:  # never expected: refuse rather than ship a broken model
        raise CorruptInputError(
            f"{src}: compacted model does not run ({exc}); nothing written"
        ) from exc
    if any(not np.array_equal(a, b) for a, b in zip(reference, compacted, strict=True)):
        raise CorruptInputError(f"{src}: outputs changed after compaction; nothing written")
    sha_before = file_sha256(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    parts = ["compact", "--model", str(src)] + (["--out", str(out)] if args.out else [])
    note = f"internal names compacted (sha256 before {sha_before}, outputs bit-identical)"
    sha = save_rewritten_card(card, src, out, parts, note).artifact.sha256
    print(f"{out}: {saved} bytes saved, {out.stat().st_size} bytes, sha256 {sha[:12]}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``compact``."""
    p = subparsers.add_parser(
        "compact",
        help="short internal names for an ONNX model made before they were the default",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help=".onnx with its card beside it")
    p.add_argument("--out", help="output .onnx (default: rewrite --model in place)")
    p.set_defaults(func=cmd_compact)
