"""Human names, units and groups of the round-level metrics the round engine stores (pure).

One mapping for every page and API that shows a round's metrics: ``describe(key, task)`` turns
a stored name (``macro_f1``, ``device_se_V``, ``aggregate_s``) into a :class:`MetricName`
(label, where the figure comes from, unit, display scale, group); ``format_value`` writes a
value in that unit (``0.7123`` -> ``"71.2 %"``). Keys this module does not know are kept, in
the group ``"other"``, under their raw name.

Quality metrics (``cloud_aggregator.evaluation.summary_metrics`` and
``cloud_aggregator.closing.device_evaluation``): without prefix they score the round's new
model on the aggregator's validation set; with ``device_`` they pool what each selected device
measured on its own labelled data with the model the round started from, before training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Group = Literal["quality", "plumbing", "other"]

SERVER = "validation set (server)"
DEVICE_SOURCE = {
    "beat": "devices' own beats (before training)",
    "rhythm": "devices' own recordings (before training)",
}
DEVICE_OTHER = "devices' own data (before training)"

# Class codes of a task's model card, in words (unknown codes are shown as they are).
CLASS_NAMES: dict[str, dict[str, str]] = {
    "beat": {"N": "Normal", "S": "SVEB", "V": "VEB", "F": "Fusion", "Q": "Unclassifiable"},
    "rhythm": {
        "N": "Normal rhythm",
        "AF": "AF",
        "O": "Other rhythm",
        "noisy": "Noisy",
        "~": "Noisy",
    },
}
MEASURES = {"se": "Se", "ppv": "+P", "f1": "F1"}
MEASURE_HELP = (
    "Se: sensitivity, the share of true beats of the class found. +P: positive predictivity, "
    "the share of the model's calls of the class that are right. F1: their harmonic mean."
)

# key -> (label, unit, scale, decimals, group, plumbing chart)
_FIXED: dict[str, tuple[str, str, float, int, Group, str]] = {
    "macro_f1": ("Macro-F1", "%", 100.0, 1, "quality", ""),
    "accuracy": ("Accuracy", "%", 100.0, 1, "quality", ""),
    "kappa": ("Cohen's κ", "", 1.0, 3, "quality", ""),
    "device_macro_f1": ("Macro-F1", "%", 100.0, 1, "quality", ""),
    "device_n": ("Labelled examples scored on the devices", "", 1.0, 0, "quality", ""),
    "selected": ("Devices selected", "", 1.0, 0, "plumbing", "participation"),
    "received": ("Updates received", "", 1.0, 0, "plumbing", "participation"),
    "quorum": ("Quorum (updates needed)", "", 1.0, 0, "plumbing", "participation"),
    "failures": ("Devices dropped out", "", 1.0, 0, "plumbing", "participation"),
    "rejected": ("Updates rejected or left out", "", 1.0, 0, "plumbing", "participation"),
    "excluded": ("Left out after validation", "", 1.0, 0, "plumbing", "robustness"),
    "weights_capped": ("Example counts capped", "", 1.0, 0, "plumbing", "robustness"),
    "norms_clipped": ("Update norms clipped", "", 1.0, 0, "plumbing", "robustness"),
    "dp_clipped": ("Clipped for privacy", "", 1.0, 0, "plumbing", "robustness"),
    "round_s": ("Round duration", "s", 1.0, 1, "plumbing", "time"),
    "aggregate_s": ("Aggregation", "s", 1.0, 2, "plumbing", "time"),
    "distill_s": ("Distillation", "s", 1.0, 1, "plumbing", "time"),
    "uplink_bytes_mean": ("Upload per device (mean)", "KiB", 1 / 1024, 1, "plumbing", "traffic"),
    "dp_epsilon": ("Privacy budget spent (ε, cumulative)", "", 1.0, 2, "plumbing", "privacy"),
    "distill_failed": ("Distillation failed", "", 1.0, 0, "plumbing", "distillation"),
    "distill_refused": ("Distilled model refused", "", 1.0, 0, "plumbing", "distillation"),
}
# Plumbing charts in page order: id -> (title, unit shown on the axis).
PLUMBING_CHARTS: dict[str, tuple[str, str]] = {
    "participation": ("Participation per round (devices, updates)", ""),
    "time": ("Time per round", "s"),
    "traffic": ("Upload per device", "KiB"),
    "robustness": ("Updates changed or left out by the robust bounds", ""),
    "privacy": ("Differential privacy", ""),
    "distillation": ("Distillation (1 = yes)", ""),
}
_PER_CLASS = ("device_se_", "device_ppv_", "device_f1_", "se_", "ppv_", "f1_")


@dataclass(frozen=True, slots=True)
class MetricName:
    """How one stored metric is shown.

    Attributes
    ----------
    key : str
        The stored name.
    label : str
        Human name without its source (``"VEB Se"``, ``"Round duration"``).
    source : str
        Where the figure comes from (:data:`SERVER` or a device source); empty for plumbing.
    unit : str
        Unit of the displayed value (``"%"``, ``"s"``, ``"KiB"`` or empty).
    scale : float
        Displayed value = stored value × scale (0..1 -> %, bytes -> KiB).
    decimals : int
        Decimals shown.
    group : {"quality", "plumbing", "other"}
        Section of the page.
    chart : str
        Plumbing chart id (:data:`PLUMBING_CHARTS`); the key itself for ``other``.
    cls : str
        Class code of a per-class metric (``"V"``), else empty.
    measure : str
        ``"se"``, ``"ppv"`` or ``"f1"`` for a per-class metric, else empty.
    """

    key: str
    label: str
    source: str
    unit: str
    scale: float
    decimals: int
    group: Group
    chart: str = ""
    cls: str = ""
    measure: str = ""

    @property
    def full_label(self) -> str:
        """Label with its source: ``"Macro-F1, validation set (server)"``."""
        return f"{self.label}, {self.source}" if self.source else self.label

    def as_json(self) -> dict[str, object]:
        """The fields the JSON API carries."""
        return {"label": self.label, "source": self.source, "unit": self.unit,
                "scale": self.scale, "decimals": self.decimals, "group": self.group}  # fmt: skip


def plumbing_keys(chart: str) -> list[str]:
    """The plumbing keys drawn on one chart of :data:`PLUMBING_CHARTS`, in legend order."""
    return [key for key, spec in _FIXED.items() if spec[5] == chart]


def source_of(key: str, task: str) -> str:
    """Where a quality figure comes from: the server's validation set or the devices."""
    if key.startswith("device_"):
        return DEVICE_SOURCE.get(task, DEVICE_OTHER)
    return SERVER


def class_name(cls: str, task: str) -> str:
    """A class code in words (``"V"`` -> ``"VEB"`` for the beat task); unknown codes as given."""
    return CLASS_NAMES.get(task, {}).get(cls, cls)


def split_class_key(key: str) -> tuple[str, str, bool] | None:
    """``(measure, class, on devices)`` of a per-class key (``device_se_V`` -> se, V, True)."""
    for prefix in _PER_CLASS:
        if key.startswith(prefix) and len(key) > len(prefix):
            device = prefix.startswith("device_")
            return prefix.removeprefix("device_").rstrip("_"), key[len(prefix) :], device
    return None


def describe(key: str, task: str = "beat") -> MetricName:
    """The :class:`MetricName` of a stored key for a round of ``task``."""
    fixed = _FIXED.get(key)
    if fixed is not None:
        label, unit, scale, decimals, group, chart = fixed
        source = source_of(key, task) if group == "quality" and key != "device_n" else ""
        return MetricName(key, label, source, unit, scale, decimals, group, chart)
    parts = split_class_key(key)
    if parts is not None:
        measure, cls, _ = parts
        label = f"{class_name(cls, task)} {MEASURES[measure]}"
        return MetricName(key, label, source_of(key, task), "%", 100.0, 1, "quality",
                          cls=cls, measure=measure)  # fmt: skip
    return MetricName(key, key, "", "", 1.0, 3, "other", chart=key)


def format_value(name: MetricName, value: object) -> str:
    """A value in the metric's unit (``"71.2 %"``, ``"3.4 s"``); text as it is; ``"–"`` when
    neither text nor a finite number."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return in_unit(value, name.scale, name.decimals, name.unit)


def in_unit(value: float, scale: float, decimals: int, unit: str) -> str:
    """``value × scale`` with ``decimals`` decimals and the unit (``0.7123`` -> ``"71.2 %"``)."""
    shown = f"{value * scale:.{decimals}f}"
    return f"{shown} {unit}" if unit else shown
