"""Uplink bytes per client per round: head mode (numpy, int8 delta of W (C, E) + b) on a real
DS1 client, and full mode (every float weight of the beat student, int8 and float32). Prints
JSON. Target: head mode <= 100 KB.

    python bench/fl_uplink.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from bench.fl_data import DEFAULT_MODEL, load_embeddings  # noqa: E402
from common import fl_protocol as fl  # noqa: E402
from edge_agent import trainer as tr  # noqa: E402
from edge_agent.trainer_torch import net_tensors  # noqa: E402
from models.nets import build_net  # noqa: E402
from models.tasks import get_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    registry.add_record_argument(ap, "fl_uplink")
    args = ap.parse_args()
    d = load_embeddings(["208"], DEFAULT_MODEL)["208"]
    with np.load(DEFAULT_MODEL.with_name("beat.head.npz")) as z:
        glob = {tr.HEAD_W: z["W"], tr.HEAD_B: z["b"]}
    u, _ = tr.head_update(
        round_id="1",
        client_id="mitdb-208",
        base_version="v1",
        global_tensors=glob,
        emb=d.emb,
        labels=d.labels,
        config=fl.RoundConfig(local_epochs=2, lr=0.05, clip_norm=5.0),
    )
    head_bytes = len(fl.encode_update(u))
    torch.manual_seed(0)
    task = get_task("beat")
    card = json.loads(DEFAULT_MODEL.with_name("beat.card.json").read_text())
    c_in, length = card["onnx"]["inputs"][0]["shape"][1:]
    n_feat = card["onnx"]["inputs"][1]["shape"][1]
    net = build_net(task.student, c_in, length, n_feat, 5)
    weights = net_tensors(net)
    delta = {
        k: (np.random.default_rng(0).normal(0, 1e-3, v.shape)).astype(np.float32)
        for k, v in weights.items()
    }
    full = {
        c: len(fl.encode_update(fl.ClientUpdate("1", "mitdb-208", "v1", 1000, delta, c)))
        for c in ("int8", "none")
    }
    out = {
                "benchmark": "fl_uplink",
                "head_mode_bytes": head_bytes,
                "head_mode_compression": u.compression,
                "head_mode_compression_error": round(u.compression_error, 5),
                "full_mode_parameters": int(sum(v.size for v in weights.values())),
                "full_mode_int8_bytes": full["int8"],
                "full_mode_float32_bytes": full["none"],
                "target_head_bytes": 100_000,
    }  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)


if __name__ == "__main__":
    main()
