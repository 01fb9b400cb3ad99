"""``medchain data|train|export|quantize|evaluate`` (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.datasets import default_cache_dir
from common.errors import ConfigError, DataNotFoundError, MedchainError
from models.data_cli import register_data

_LOGGER = logging.getLogger(__name__)


def _cache(env: Mapping[str, str]) -> Path:
    return default_cache_dir(env) / "preprocessed"


def _command_line() -> str:
    return "medchain " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _progress(stage: str) -> Any:
    def report(epoch: int, loss: float, metrics: dict[str, Any] | None) -> None:
        extra = f" val macro-F1 {metrics['macro_f1']:.3f}" if metrics else ""
        print(f"[{stage}] epoch {epoch + 1} loss {loss:.4f}{extra}", file=sys.stderr, flush=True)

    return report


def _check_train_numbers(args: argparse.Namespace) -> None:
    """``--epochs`` >= 1, ``--steps`` >= 0 (0: a whole epoch), ``--threads`` >= 1: an epoch
    count of -1 trained nothing and still wrote a model and its card."""
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    if args.steps is not None and args.steps < 0:
        raise ConfigError(f"--steps must be >= 0 (0: a whole epoch), got {args.steps}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")


def cmd_train(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Teacher -> KD student -> ONNX -> int8 -> card."""
    from models.pipeline import TrainRequest, train_task
    from models.tasks import get_task

    _check_train_numbers(args)
    task = get_task(args.task)
    if "train" in task.options:  # a task with its own pipeline (rhythm: models.rhythm_pipeline)
        return _train_own(task, args, env)
    request = TrainRequest(
        seed=args.seed,
        out_dir=Path(args.out),
        records=tuple(args.records.split(",")) if args.records else None,
        test_records=tuple(args.test_records.split(",")) if args.test_records else None,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        holdout=args.holdout,
        command=_command_line(),
        threads=args.threads,
        rr_gate=not args.no_rr_gate,
        template_veto=not args.no_template_veto,
        views=not args.no_views,
    )
    summary = train_task(task, request, dict(env), _cache(env), on_epoch=_progress)
    if args.json:
        print(json.dumps(summary["evaluations"]))
    else:
        from models.evaluate import metrics_markdown

        for name in ("teacher_fp32", "fp32", "int8"):
            print(metrics_markdown(summary["evaluations"][name], f"{task.name} {name}"))
        print(f"model: {summary['card'].replace('.card.json', '.onnx')}  card: {summary['card']}")
    return 0


def _train_own(task: Any, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``medchain train`` of a task whose ``options["train"]`` runs its own pipeline."""
    from models.pipeline import TrainRequest

    request = TrainRequest(
        seed=args.seed,
        out_dir=Path(args.out),
        records=tuple(args.records.split(",")) if args.records else None,
        test_records=tuple(args.test_records.split(",")) if args.test_records else None,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        command=_command_line(),
        threads=args.threads,
    )
    cv = Path(args.cv_report) if args.cv_report else None
    if cv is not None and not cv.is_file():
        raise DataNotFoundError(f"cross-validation report {cv.name!r}", str(cv.parent))
    summary = task.options["train"](request, dict(env), _cache(env), cv)
    if args.json:
        print(json.dumps(summary["evaluations"]))
    else:
        for name, m in summary["evaluations"].items():
            print(f"{task.name} {name}: AF F1 {m['af_f1']:.3f}  accuracy {m['accuracy']:.3f}")
        print(f"card: {summary['card']}  ({summary['elapsed_s']:.0f} s)")
    return 0


def cmd_export(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Export a torch checkpoint to ONNX (+ head npz)."""
    from models.export import export_onnx, save_head
    from models.predict import load_checkpoint
    from models.tasks import get_task

    task = get_task(args.task)
    net = load_checkpoint(Path(args.checkpoint))
    out = Path(args.out)
    export_onnx(net, out, task.input_names)
    save_head(net, out.with_name(out.stem + ".head.npz"))
    print(out)
    return 0


def cmd_quantize(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Static QDQ int8 with calibration drawn from the task's training split."""
    from models.predict import onnx_session
    from models.quantize import calibration_inputs, quantize
    from models.tasks import LoadOptions, get_task

    task = get_task(args.task)
    src = Path(args.model)
    names = [i.name for i in onnx_session(src).get_inputs()]
    records = tuple(args.records.split(",")) if args.records else None
    data = task.load(task.train_split, LoadOptions(env=env, records=records, cache_dir=_cache(env)))
    quantize(src, Path(args.out), calibration_inputs(data, names, args.per_class, args.seed))
    print(args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Per-class metrics of a model on a split, the task's own protocol, blind predictions."""
    from models.evaluate import (
        metrics_from_probs,
        metrics_markdown,
        predict_test_lines,
        protocol_markdown,
        protocol_of,
        run_protocol,
        write_report,
    )
    from models.predict import load_predictor
    from models.tasks import LoadOptions, get_task, require_labels

    if getattr(args, "bootstrap", 1) < 1:  # checked before minutes of scoring, not after
        raise ConfigError("--bootstrap must be >= 1")
    if args.task == "beat" and args.records and Path(args.records).is_dir():
        from models.record_eval_cli import run_records  # any WFDB folder, serving path

        return run_records(args, env)
    task = get_task(args.task)
    if task.name == "rhythm" and args.labels is not None:
        from models.rhythm_eval import run_rhythm_records  # any folder of recordings

        return run_rhythm_records(args, env)
    if args.model is None and args.predict_test is None:
        raise MedchainError("medchain evaluate: give --model (and/or --predict-test OUT)")
    split = args.split or task.test_split
    records = tuple(args.records.split(",")) if args.records else None
    options = LoadOptions(env=env, records=records, cache_dir=_cache(env))
    if args.predict_test is not None:
        _write_predictions(predict_test_lines(task, options), args.predict_test)
    if args.model is None:
        return 0
    model = Path(args.model)
    if not model.is_file():
        raise DataNotFoundError(f"model {model.name!r}", str(model.parent.resolve()))
    predictor = load_predictor(model)
    data = require_labels(task.load(split, options), task.name, split)
    metrics = metrics_from_probs(task, data, predictor(data))
    metrics |= {"task": task.name, "split": split, "model": str(model)}
    if split == task.train_split:
        metrics["warning"] = (
            f"{split!r} is the task's training split: the model has seen these examples"
            + ("; see 'protocol' for held-out numbers" if protocol_of(task) else "")
        )
    title = f"{task.name} on {split}: {model.name}"
    protocol: dict[str, Any] = {}
    if args.protocol and split == task.test_split:
        protocol = run_protocol(task, options)
        if protocol:
            metrics["protocol"] = protocol
    if args.report:
        md, png = write_report(metrics, Path(args.report), title)
        print(f"report: {md} {png}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(metrics_markdown(metrics, title))
        if "warning" in metrics:
            print(f"warning: {metrics['warning']}\n")
        if protocol:
            print(protocol_markdown(protocol, f"{task.name} protocol"))
    return 0


def _write_predictions(lines: list[str], target: str) -> None:
    """Write prediction lines to a file (``-`` = stdout), one per line."""
    text = "".join(f"{line}\n" for line in lines)
    if target == "-":
        sys.stdout.write(text)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"predictions: {len(lines)} lines -> {path}", file=sys.stderr)


def register(subparsers: Any) -> None:
    """Add ``data``, ``train``, ``export``, ``quantize``, ``evaluate``."""
    from models.tasks import available_tasks

    tasks = available_tasks()
    register_data(subparsers)

    def task_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True, help=f"task: {', '.join(tasks)}")
        p.add_argument(
            "--records",
            help="comma-separated records to restrict the data to (smoke runs); evaluate: or "
            "a folder of recordings (beat: any WFDB folder with beat annotations; rhythm: "
            "with --labels)",
        )

    tr = subparsers.add_parser(
        "train", help="teacher -> distilled student -> ONNX -> int8 -> model card"
    )
    task_arg(tr)
    tr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tr.add_argument("--out", required=True, help="output folder")
    tr.add_argument("--test-records", help="restrict the test split (smoke runs)")
    tr.add_argument("--epochs", type=int, help="override the task's epochs")
    tr.add_argument("--steps", type=int, help="override the steps per epoch")
    tr.add_argument(
        "--holdout",
        action="store_true",
        help="hold out a patient-wise validation split of the training data and report it",
    )
    tr.add_argument(
        "--no-rr-gate",
        action="store_true",
        help="ship the net alone (beat: no RR gate re-splitting N/S, see docs/models.md)",
    )
    tr.add_argument(
        "--no-template-veto",
        action="store_true",
        help="beat: do not serve V calls that look like the wearer's usual beat as Q "
        "(models/template_veto.py)",
    )
    tr.add_argument(
        "--cv-report",
        help="rhythm: cv.json of `python -m models.rhythm_cv` whose tables go into the card",
    )
    tr.add_argument(
        "--no-views",
        action="store_true",
        help="beat: train without the augmented views (other rates, leads, noise; models/augment.py)",
    )
    tr.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    tr.add_argument("--json", action="store_true", help="print metrics as JSON")
    tr.set_defaults(func=cmd_train)

    ex = subparsers.add_parser("export", help="export a torch checkpoint (.pt) to ONNX")
    ex.add_argument("--task", required=True, help=f"task: {', '.join(tasks)}")
    ex.add_argument("--checkpoint", required=True, help="student.pt from `medchain train`")
    ex.add_argument("--out", required=True, help="output .onnx (head npz written beside it)")
    ex.set_defaults(func=cmd_export)

    qu = subparsers.add_parser("quantize", help="int8 static QDQ quantization of an ONNX model")
    task_arg(qu)
    qu.add_argument("--model", required=True, help="fp32 .onnx")
    qu.add_argument("--out", required=True, help="output int8 .onnx")
    qu.add_argument("--per-class", type=int, default=200, help="calibration examples per class")
    qu.add_argument("--seed", type=int, default=0, help="calibration sampling seed")
    qu.set_defaults(func=cmd_quantize)

    ev = subparsers.add_parser(
        "evaluate",
        help="per-class Se/+P, macro-F1, confusion matrix; task protocol; blind predictions",
        description=(
            "Score a model on a labelled split. Tasks with their own held-out protocol (aft: "
            "leave-one-record-out; rhythm: DS1 -> DS2) also report it under 'protocol' when the "
            "task's test split is evaluated. Blind splits (labels -1, e.g. aft test-a/test-b) "
            "are never scored: use --predict-test."
        ),
    )
    task_arg(ev)
    from models.rhythm_eval import add_arguments as rhythm_record_arguments

    rhythm_record_arguments(ev)  # rhythm: --records DIR --labels CSV [--fs HZ]
    ev.add_argument(
        "--model", help=".onnx (onnxruntime) or .pt (torch) model (optional with --predict-test)"
    )
    ev.add_argument("--split", help="split to evaluate (default: the task's test split)")
    ev.add_argument("--json", action="store_true", help="print metrics as JSON")
    ev.add_argument("--report", help="folder for report.md + report.png")
    ev.add_argument(
        "--protocol",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the task's own held-out protocol (refits its feature model per fold; "
        "default on, for the task's test split)",
    )
    ev.add_argument(
        "--predict-test",
        metavar="OUT",
        help="write the task's blind test-set predictions (aft: 'aNN N|T' / 'bNN S|T' lines, "
        "from models fit on the labelled learning set only) to OUT ('-' = stdout)",
    )
    from models.record_eval_cli import add_arguments as beat_record_arguments

    beat_record_arguments(ev)  # beat: --records DIR (any WFDB folder) --lead --personalise
    ev.set_defaults(func=cmd_evaluate)
