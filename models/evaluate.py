"""Evaluate a model on a task split: metrics dict, optional PNG + markdown report.

The metrics are those of ``models.metrics.classification_metrics`` plus the task's extras (the
jk index for ``beat``). ``write_report`` draws the confusion matrix and per-class Se/+P with
matplotlib (Agg backend, no display needed).

Tasks whose shipped model is a feature model fit on few records also define their own held-out
protocol, ``TASK.options["evaluate"]`` (``aft``: leave-one-record-out; ``rhythm``: DS1 -> DS2)
and blind-set predictions, ``TASK.options["predict_test"]`` (``aft``: the challenge lines);
:func:`run_protocol` and :func:`predict_test_lines` call them for ``medchain evaluate``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import MedchainError
from models.metrics import classification_metrics
from models.tasks.base import LoadOptions, Task, TaskData

_LOGGER = logging.getLogger(__name__)


def metrics_from_probs(
    task: Task, data: TaskData, probs: npt.NDArray[np.float32]
) -> dict[str, Any]:
    """Metrics of argmax predictions against ``data.labels`` (plus task extras)."""
    predicted = probs.argmax(axis=1).astype(np.int64)
    metrics = classification_metrics(data.labels, predicted, task.classes)
    if task.metric_extras is not None:
        metrics.update(task.metric_extras(np.asarray(metrics["confusion"]), task.classes))
    return metrics


class NoProtocolError(MedchainError):
    """The task defines no blind-set prediction (``TASK.options["predict_test"]``)."""


def protocol_of(task: Task) -> Any | None:
    """The task's own held-out evaluation ``evaluate(options) -> dict`` or ``None``."""
    return task.options.get("evaluate")


def run_protocol(task: Task, options: LoadOptions) -> dict[str, Any]:
    """Results of ``TASK.options["evaluate"]`` with a one-line description.

    The protocol refits the task's feature model per fold on labelled data only, so its numbers
    do not depend on a model file.

    Returns
    -------
    dict
        ``{"description": str, "results": dict}``; ``{}`` if the task has no protocol.
    """
    protocol = protocol_of(task)
    if protocol is None:
        return {}
    doc = (protocol.__doc__ or protocol.__name__).strip().splitlines()[0]
    _LOGGER.info("task %s: running its protocol (%s)", task.name, doc)
    return {"description": doc, "results": protocol(options)}


def predict_test_lines(task: Task, options: LoadOptions) -> list[str]:
    """Blind-set prediction lines of ``TASK.options["predict_test"]`` (e.g. ``a01 N``).

    Raises
    ------
    NoProtocolError
        If the task defines none.
    """
    predict = task.options.get("predict_test")
    if predict is None:
        raise NoProtocolError(f"task {task.name} has no blind test-set prediction")
    lines = [str(line) for line in predict(options)]
    return lines


def protocol_markdown(protocol: dict[str, Any], title: str) -> str:
    """Markdown of :func:`run_protocol`'s output: metric tables plus the other numbers."""
    parts = [f"## {title}: {protocol['description']}\n"]
    for key, value in protocol["results"].items():
        if isinstance(value, dict) and "confusion" in value:
            parts.append(metrics_markdown(value, key))
        elif isinstance(value, dict) and "overall" in value:
            parts.append(metrics_markdown(value["overall"], f"{key} (overall)"))
        else:
            parts.append(f"- {key}: {json.dumps(value)}\n")
    return "\n".join(parts)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def metrics_line(metrics: dict[str, Any]) -> str:
    """``macro-F1 0.4872, N Se/+P 0.923/0.987, ...``: one line of :func:`metrics_from_probs`."""
    pc = metrics["per_class"]
    return f"macro-F1 {metrics['macro_f1']:.4f}, " + ", ".join(
        f"{c} Se/+P {pc[c]['se'] or 0:.3f}/{pc[c]['ppv'] or 0:.3f}" for c in pc
    )


def metrics_markdown(metrics: dict[str, Any], title: str) -> str:
    """A markdown table of per-class Se/+P/F1, the summary numbers and the confusion matrix."""
    classes = metrics["classes"]
    lines = [f"## {title}", "", "| class | support | Se % | +P % | F1 % |", "|---|---|---|---|---|"]
    for name in classes:
        pc = metrics["per_class"][name]
        lines.append(
            f"| {name} | {pc['support']} | {_fmt(pc['se'])} | {_fmt(pc['ppv'])} | {_fmt(pc['f1'])} |"
        )
    lines += [
        "",
        f"accuracy {_fmt(metrics['accuracy'])} %, macro-F1 {_fmt(metrics['macro_f1'])} %, "
        f"kappa {metrics['kappa']:.3f}"
        + (f", jk index {metrics['jk']:.3f}" if "jk" in metrics else ""),
        "",
        "Confusion matrix (rows = reference, columns = predicted):",
        "",
        "| | " + " | ".join(classes) + " |",
        "|---" * (len(classes) + 1) + "|",
    ]
    for name, row in zip(classes, metrics["confusion"], strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_report(metrics: dict[str, Any], out_dir: Path, title: str) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.png`` (confusion matrix + per-class Se/+P)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    classes = metrics["classes"]
    cm = np.asarray(metrics["confusion"], dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax1.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax1.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8)
    ax1.set_xticks(range(len(classes)), classes)
    ax1.set_yticks(range(len(classes)), classes)
    ax1.set_xlabel("predicted")
    ax1.set_ylabel("reference")
    ax1.set_title("confusion matrix (colour = row-normalised)")
    x = np.arange(len(classes))
    se = [100 * (metrics["per_class"][c]["se"] or 0) for c in classes]
    ppv = [100 * (metrics["per_class"][c]["ppv"] or 0) for c in classes]
    ax2.bar(x - 0.2, se, 0.4, label="Se")
    ax2.bar(x + 0.2, ppv, 0.4, label="+P")
    ax2.set_xticks(x, classes)
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("%")
    ax2.legend()
    ax2.set_title(f"macro-F1 {_fmt(metrics['macro_f1'])} %")
    fig.suptitle(title)
    fig.tight_layout()
    png = out_dir / "report.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    md = out_dir / "report.md"
    md.write_text(
        f"# {title}\n\n![report](report.png)\n\n"
        + metrics_markdown(metrics, "Metrics")
        + "\n```json\n"
        + json.dumps(metrics, indent=1)
        + "\n```\n",
        encoding="utf-8",
    )
    return md, png
