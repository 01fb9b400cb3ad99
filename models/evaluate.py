"""Evaluate a model on a task split: metrics dict, optional PNG + markdown report.

The metrics are those of ``models.metrics.classification_metrics`` plus the task's extras (the
jk index for ``beat``). ``write_report`` draws the confusion matrix and per-class Se/+P with
matplotlib (Agg backend, no display needed).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.metrics import classification_metrics
from models.tasks.base import Task, TaskData

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


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


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
