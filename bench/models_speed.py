"""int8 onnxruntime vs torch fp32 eager on the same batches, side by side in one process.

    python bench/models_speed.py --run runs/beat          # student.pt, beat.onnx, beat_fp32.onnx
    python bench/models_speed.py --run runs/beat --int8 old=a.onnx --int8 new=b.onnx
    python bench/models_speed.py --run runs/beat --phases 4,2,2,1 --phases i2:2,2,1,1

Every contender gets one thread (``torch.set_num_threads(1)``; onnxruntime
``intra_op_num_threads=1``, ``inter_op_num_threads=1``, sequential execution). The machine is
shared, so load drifts during a run: the contenders are timed in interleaved rounds (one timed
block of each per round, in a seeded random order each round, each block after one untimed call that
brings the contender's weights back into the caches) after a warm-up, and the speed-up is
reported both as the ratio of the median block times and as the 10th percentile of the
per-round paired ratios (a robust lower bound: 90 % of rounds were at least that fast).
Inputs are real MIT-BIH beats (DS2 record 100), tiled to the batch size. Prints one JSON object.

``--phases P1,P2,...`` adds the run's ``student.pt`` exported in that polyphase layout
(``models.polyphase.polyphase_net``), quantized like ``medchain train`` (stratified DS1 calibration)
and given the run's RR gate (and template veto) when its card has them: the layout's speed on
this machine.

Large allocations are served from the heap (:func:`heap_allocations`; ``--default-malloc``
turns it off): with glibc's default, torch eager's per-call tensors above the mmap threshold
fault their pages in on every call, which made torch 1.6-1.8x slower at 256-2048 beats
depending on what the process had freed before.

``torch_fp32`` runs the net alone (logits, embedding: the conservative baseline). When a
contender's card carries the RR gate, ``torch_fp32_same_model`` also runs what the gated ONNX
computes (net, softmax, gate, and the template veto when the card has it) and
``cpu_vs_same_model`` gives the speed-ups against it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from bench.timing import cpu_int8, heap_allocations, interleaved, summarise  # noqa: E402
from common.datasets import default_cache_dir  # noqa: E402
from common.model_card import card_path_for, load_card  # noqa: E402
from models.polyphase import polyphase_net  # noqa: E402
from models.predict import load_checkpoint, onnx_feed, onnx_session  # noqa: E402
from models.rr_gate import RRGate  # noqa: E402
from models.tasks import LoadOptions, get_task  # noqa: E402
from models.template_veto import TemplateVeto  # noqa: E402

TORCH = "torch_fp32"
TORCH_SAME = "torch_fp32_same_model"  # net + softmax + the card's gate (+ veto), as the ONNX does


def _ort_call(session: Any, feed: dict[str, Any]) -> Callable[[], object]:
    """Zero-argument call of ``session`` on ``feed`` (both outputs, as the edge agent uses)."""

    def call() -> object:
        return session.run(["probs", "embedding"], feed)

    return call


def _contenders(args: argparse.Namespace, run: Path, task_name: str) -> dict[str, Path]:
    """``{label: onnx path}``: ``--int8 label=path`` entries, else the run's own models."""
    if args.int8:
        return {s.split("=", 1)[0]: Path(s.split("=", 1)[1]) for s in args.int8}
    found = {"int8": run / f"{task_name}.onnx"}
    if (run / f"{task_name}_fp32.onnx").is_file():
        found["fp32_ort"] = run / f"{task_name}_fp32.onnx"
    return found


def _card_gate(models: dict[str, Path]) -> tuple[RRGate | None, TemplateVeto | None]:
    """The RR gate and template veto of the first contender whose card carries a gate."""
    for path in models.values():
        card = card_path_for(path)
        if card.is_file():
            params = load_card(card).input_contract.parameters
            if "rr_gate" in params:
                veto = params.get("template_veto")
                return (
                    RRGate.from_dict(params["rr_gate"]),
                    None if veto is None else TemplateVeto.from_dict(veto),
                )
    return None, None


def _torch_same_model(
    net: torch.nn.Module,
    gate: RRGate,
    veto: TemplateVeto | None,
    signal: torch.Tensor,
    feats: torch.Tensor,
) -> Callable[[], object]:
    """Torch eager doing what the gated ONNX does: net, softmax, RR gate (see models/rr_gate)
    and the template veto when there is one (models/template_veto)."""
    w = torch.from_numpy(gate.weight.astype(np.float32))
    n, s = gate.n_index, gate.s_index

    def call() -> object:
        with torch.inference_mode():
            logits, emb = net(signal, feats)
            p = torch.softmax(logits, dim=1)
            q = torch.sigmoid(torch.log(torch.clamp(feats, min=gate.floor)) @ w + gate.bias)
            ns = p[:, n] + p[:, s]
            out = p.clone()
            out[:, s], out[:, n] = ns * q, ns * (1 - q)
            if veto is not None:
                low = signal[:, veto.channel].square().mean(dim=1) < veto.rms_below**2
                moved = torch.where(low, out[:, veto.v_index], 0.0)
                out[:, veto.q_index] += moved
                out[:, veto.v_index] -= moved
            return out, emb

    return call


def parse_layout(text: str) -> tuple[tuple[int, ...], int]:
    """``"[iQ:]P1,P2,..."`` -> (output phases per stage, input phases Q (default 1)).

    Raises ValueError on anything else."""
    head, _, body = text.rpartition(":")
    if head and not head.startswith("i"):
        raise ValueError(text)
    split = int(head[1:]) if head else 1
    return tuple(int(p) for p in body.split(",")), split


def _layout_contenders(
    phases: list[str], run: Path, net: torch.nn.Module, out: Path
) -> dict[str, Path]:
    """``{"phases_4-2-2-1": int8 path}``: the student in each layout, quantized and gated as
    ``medchain train`` ships it (same weights, so the outputs agree to float rounding)."""
    from models.export import export_onnx
    from models.quantize import calibration_inputs, quantize
    from models.rr_gate import add_rr_gate_to_onnx
    from models.template_veto import add_template_veto_to_onnx

    task = get_task("beat")
    ds1 = task.load(
        task.train_split,
        LoadOptions(env=os.environ, cache_dir=default_cache_dir(os.environ) / "preprocessed"),
    )
    gate, veto = _card_gate({"run": run / f"{task.name}.onnx"})
    found = {}
    for text in phases:
        schedule, split = parse_layout(text)
        label = "phases_" + (f"i{split}-" if split > 1 else "") + "-".join(map(str, schedule))
        fp32, int8 = out / f"{label}_fp32.onnx", out / f"{label}.onnx"
        names = export_onnx(
            net,  # type: ignore[arg-type]
            fp32,
            task.input_names,
            phases=schedule,
            input_phases=split,
        )
        quantize(fp32, int8, calibration_inputs(ds1, names, 200, 0))
        if gate is not None:
            add_rr_gate_to_onnx(int8, gate)
        if veto is not None:
            add_template_veto_to_onnx(int8, veto, names[0])
        found[label] = int8
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="folder of `medchain train` output")
    parser.add_argument("--task", default="beat")
    parser.add_argument("--record", default="100")
    parser.add_argument("--batches", default="1,32,256,2048")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--int8", action="append", default=[], help="LABEL=PATH of an ONNX model (repeatable)"
    )
    parser.add_argument(
        "--phases",
        action="append",
        default=[],
        help="[iQ:]P1,P2,... polyphase output phases per stage (iQ: the input split into Q "
        "phases first): export student.pt in that layout (beat task; repeatable)",
    )
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's mmap threshold alone (torch then pays page faults above 128 kB)",
    )
    registry.add_record_argument(parser, "models_speed")
    args = parser.parse_args()
    allocator = "default" if args.default_malloc else heap_allocations()
    run = Path(args.run)
    task = get_task(args.task)
    data = task.load(
        task.test_split,
        LoadOptions(
            env=os.environ,
            records=[args.record] if args.task == "beat" else None,
            cache_dir=default_cache_dir(os.environ) / "preprocessed",
        ),
    )
    torch.set_num_threads(1)
    net = load_checkpoint(run / "student.pt")
    models = _contenders(args, run, task.name)
    if args.phases and args.task != "beat":
        parser.error("--phases is for the beat task")
    for text in args.phases:
        try:
            schedule, split = parse_layout(text)
        except ValueError:
            parser.error(f"--phases {text}: comma-separated integers, e.g. 2,2,1,1 or i2:2,2,1,1")
        if polyphase_net(net, schedule, split) is None:  # type: ignore[arg-type]
            parser.error(f"--phases {text}: not a polyphase layout of this net (export_onnx)")
    with tempfile.TemporaryDirectory() as tmp:  # onnxruntime keeps the models in memory
        if args.phases:
            models.update(_layout_contenders(args.phases, run, net, Path(tmp)))
        sessions = {label: onnx_session(path, threads=1) for label, path in models.items()}
        sizes = {k: v.stat().st_size for k, v in models.items()}
    gate, veto = _card_gate(models)
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        part = data.subset(np.arange(batch) % len(data))
        signal, feats = torch.from_numpy(part.signal), torch.from_numpy(part.features)

        def run_torch(s: torch.Tensor = signal, f: torch.Tensor = feats) -> object:
            with torch.inference_mode():
                return net(s, f)

        fns: dict[str, Callable[[], object]] = {TORCH: run_torch}
        if gate is not None:
            fns[TORCH_SAME] = _torch_same_model(net, gate, veto, signal, feats)
        for label, sess in sessions.items():
            fns[label] = _ort_call(sess, onnx_feed(sess, part))
        wall, cpu = interleaved(fns, args.rounds)
        row = {"batch": batch, "wall": summarise(wall, TORCH), "cpu": summarise(cpu, TORCH)}
        if gate is not None:  # the same model on both sides: gated ONNX vs torch net + gate
            same = {k: v for k, v in cpu.items() if k != TORCH}
            row["cpu_vs_same_model"] = summarise(same, TORCH_SAME)
        results.append(row)
    out = {
                "task": task.name,
                "student": str(run / "student.pt"),
                "models": {k: str(v) for k, v in models.items()},
                "sizes_bytes": sizes,
                "threads": 1,
                "cpu_int8": cpu_int8(),
                "allocator": allocator,
                "rounds": args.rounds,
                "results": results,
    }  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)


if __name__ == "__main__":
    main()
