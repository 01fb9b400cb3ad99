"""``medchain compact``: give an already shipped ONNX model short internal names, re-card it.

``medchain quantize`` / ``train`` / ``rr-gate`` write compact graphs themselves
(``models.onnx_names``). This command does it for a model made before that: the computation and
the contract names are unchanged (onnxruntime gives bit-identical outputs, checked here on
random inputs before anything is written), only the file shrinks; the card's sha256, size,
version and training command follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import CorruptInputError

_LOGGER = logging.getLogger(__name__)


def _random_feed(session: Any, n: int = 16) -> dict[str, np.ndarray]:
    """Inputs of the session's shapes (dynamic axes -> ``n``), positive like RR features."""
    rng = np.random.default_rng(0)
    return {
        i.name: rng.uniform(0.2, 2.0, [d if isinstance(d, int) else n for d in i.shape]).astype(
            np.float32
        )
        for i in session.get_inputs()
    }


def cmd_compact(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Compact ``--model`` into ``--out`` (default in place) and update the card beside it."""
    import onnx
    import onnxruntime as ort

    from common.model_card import card_path_for, file_sha256, load_card, save_card
    from models.onnx_names import compact_names

    src = Path(args.model)
    out = Path(args.out) if args.out else src
    card = load_card(card_path_for(src))
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError / OSError variants
        raise CorruptInputError(f"cannot read ONNX model {src}: {exc}") from exc
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = _random_feed(before)
    reference = before.run(None, feed)
    saved = compact_names(model)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for a, b in zip(reference, after.run(None, feed), strict=True):
        if not np.array_equal(a, b):  # never expected: refuse rather than ship another model
            raise CorruptInputError(f"{src}: outputs changed after compaction; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    if card.head is not None and src.parent.resolve() != out.parent.resolve():
        shutil.copyfile(src.parent / card.head.file, out.parent / card.head.file)
    sha = file_sha256(out)
    parts = ["compact", "--model", str(src)] + (["--out", str(out)] if args.out else [])
    command = "medchain " + " ".join(shlex.quote(a) for a in parts)
    new = dataclasses.replace(
        card,
        training=dataclasses.replace(
            card.training,
            command=f"{card.training.command} && {command}",
            notes=f"{card.training.notes}; internal names compacted (sha256 before "
            f"{card.artifact.sha256}, outputs bit-identical)",
        ),
        artifact=dataclasses.replace(card.artifact, size_bytes=out.stat().st_size, sha256=sha),
        version=f"{card.task}-{sha[:12]}",
    )
    save_card(new, card_path_for(out))
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
