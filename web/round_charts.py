"""Which charts the federation page draws from the round-level metrics, in page order (pure).

Model quality first: macro-F1 per round from the server's validation set and from the devices'
own data, side by side; then the classes that matter clinically for the task (VEB and SVEB
Se/+P for beats, AF F1 for rhythm); then every class, accuracy and Cohen's κ ("quality_detail").
The plumbing of the rounds (participation, time, upload, robust bounds, privacy) comes after,
and keys without a human name last, under their raw name ("other"). A chart lists only series
that have a value in at least one round; a round without a value is a gap, never a zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from web.metric_names import (
    MEASURES,
    PLUMBING_CHARTS,
    SERVER,
    class_name,
    describe,
    in_unit,
    plumbing_keys,
    source_of,
    split_class_key,
)

# Classes shown first per task, with the measures shown for them.
HEADLINE: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "beat": (("V", ("se", "ppv")), ("S", ("se", "ppv"))),
    "rhythm": (("AF", ("f1",)),),
}
MEASURE_COLORS = {"se": "#2471a3", "ppv": "#d35400", "f1": "#16a085"}
SOURCE_COLORS = {"server": "#2471a3", "device": "#16a085"}
PALETTE = ("#2471a3", "#c0392b", "#16a085", "#d35400", "#7d3c98", "#2e4053")
NO_VALIDATION = (
    "No value from a validation set: the aggregator runs without one (--validation), or the "
    "rounds shown failed before it scored them."
)
NO_DEVICES = "No device reported an evaluation on its own labelled data in these rounds."
MAX_CLASSES = 32  # classes read from a card; more is not a classifier this page can show


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: a stored key, its legend, colour, dashed for devices."""

    key: str
    label: str
    measure_label: str
    source: str
    color: str
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: id, title, page group, unit, display scale and decimals, its series."""

    id: str
    title: str
    group: str  # "quality" | "quality_detail" | "plumbing" | "other"
    unit: str
    scale: float
    decimals: int
    series: tuple[Series, ...]
    note: str = ""

    def as_json(self) -> dict[str, object]:
        """The chart as the JSON API sends it."""
        return {"id": self.id, "title": self.title, "group": self.group, "unit": self.unit,
                "scale": self.scale, "decimals": self.decimals, "note": self.note,
                "series": [{"key": s.key, "label": s.label, "color": s.color, "dashed": s.dashed}
                           for s in self.series]}  # fmt: skip


def card_classes(card: Mapping[str, object]) -> tuple[str, ...]:
    """Class codes of a model card, in index order (empty when it names none)."""
    raw = card.get("classes")
    if not isinstance(raw, list) or len(raw) > MAX_CLASSES:
        return ()
    return tuple(c for c in raw if isinstance(c, str) and 0 < len(c) <= 32)


def key_classes(keys: Iterable[str]) -> list[str]:
    """Class codes named by per-class keys (``se_V``, ``device_f1_AF``), first seen first."""
    out: list[str] = []
    for key in keys:
        parts = split_class_key(key)
        if parts is not None and parts[1] not in out:
            out.append(parts[1])
    return out


def build_charts(
    present: set[str], tasks: Sequence[str], classes: Mapping[str, Sequence[str]]
) -> list[Chart]:
    """Every chart of the page, in page order.

    Parameters
    ----------
    present : set of str
        Keys with a value in at least one round of the window.
    tasks : sequence of str
        Tasks of the rounds in the window, most recent first.
    classes : mapping of str to sequence of str
        Class codes per task (model card order, then codes only the keys name).
    """
    several, latest = len(tasks) > 1, tasks[0] if tasks else "beat"
    charts = [c for c in [_macro_f1(present, latest)] if c]
    for task in tasks:
        for cls, measures in HEADLINE.get(task, ()):
            if cls in classes.get(task, ()):
                charts += _class_chart(cls, measures, task, present, "quality", several)
    charts += _single("accuracy", latest, present) + _single("kappa", latest, present)
    drawn: set[str] = set()  # a class code two tasks share (N) is one series: drawn once
    for task in tasks:
        for cls in classes.get(task, ()):
            if cls not in drawn:
                drawn.add(cls)
                charts += _class_chart(cls, tuple(MEASURES), task, present, "quality_detail",
                                       several)  # fmt: skip
    charts += _single("device_n", latest, present)
    charts += _plumbing(present)
    known = {s.key for c in charts for s in c.series}
    for key in sorted(present - known):
        if describe(key).group == "other":
            charts.append(Chart(f"other-{key}", key, "other", "", 1.0, 3,
                                (Series(key, key, key, "", PALETTE[0]),)))  # fmt: skip
    return charts


def _macro_f1(present: set[str], task: str) -> Chart | None:
    series = []
    for key, kind in (("macro_f1", "server"), ("device_macro_f1", "device")):
        if key in present:
            src = source_of(key, task)
            series.append(Series(key, src, "Macro-F1", src, SOURCE_COLORS[kind], kind == "device"))
    if not series:
        return None
    note = ""
    if "macro_f1" not in present:
        note = NO_VALIDATION
    elif "device_macro_f1" not in present:
        note = NO_DEVICES
    return Chart("macro_f1", "Macro-F1 per round", "quality", "%", 100.0, 1, tuple(series), note)


def _class_chart(
    cls: str, measures: Sequence[str], task: str, present: set[str], group: str, several: bool
) -> list[Chart]:
    series, shown = [], []
    for device in (False, True):
        for m in measures:
            key = f"{'device_' if device else ''}{m}_{cls}"
            if key in present:
                src = source_of(key, task)
                series.append(Series(key, f"{MEASURES[m]}, {src}",
                                     f"{class_name(cls, task)} {MEASURES[m]}", src,
                                     MEASURE_COLORS[m], device))  # fmt: skip
                shown += [MEASURES[m]] if MEASURES[m] not in shown else []
    if not series:
        return []
    name = class_name(cls, task)
    listed = " and ".join(shown) if len(shown) < 3 else f"{', '.join(shown[:-1])} and {shown[-1]}"
    title = f"{name} {listed}" + (f" (class {cls})" if name != cls else "")
    title += f", {task} task" if several else ""
    return [Chart(f"{group}-{task}-{cls}", title, group, "%", 100.0, 1, tuple(series))]


def _single(key: str, task: str, present: set[str]) -> list[Chart]:
    """A quality_detail chart of one key (accuracy, kappa, device_n), if it has values."""
    if key not in present:
        return []
    n = describe(key, task)
    device = key.startswith("device_")
    s = Series(key, n.full_label, n.label, n.source, SOURCE_COLORS["device" if device else "server"],
               device)  # fmt: skip
    return [Chart(f"quality_detail-{key}", n.full_label, "quality_detail", n.unit, n.scale,
                  n.decimals, (s,))]  # fmt: skip


def _plumbing(present: set[str]) -> list[Chart]:
    charts = []
    for cid, (title, unit) in PLUMBING_CHARTS.items():
        keys = [k for k in plumbing_keys(cid) if k in present]
        if not keys:
            continue
        names = [describe(k) for k in keys]
        series = tuple(Series(n.key, n.label, n.label, "", PALETTE[i % len(PALETTE)])
                       for i, n in enumerate(names))  # fmt: skip
        charts.append(Chart(f"plumbing-{cid}", title, "plumbing", unit, names[0].scale,
                            max(n.decimals for n in names), series))  # fmt: skip
    return charts


Cell = tuple[str, int]  # (value as shown, round id)


def latest_values(
    charts: Sequence[Chart], rounds: Sequence[int], series: Mapping[str, Sequence[float | None]]
) -> tuple[list[str], list[tuple[str, list[Cell | None]]]]:
    """The latest value of each headline series as a table.

    Returns
    -------
    sources : list of str
        Column heads (the validation set first, then the devices).
    rows : list of (measure, cells)
        One row per headline measure (``"VEB Se"``); one cell per source, None when no round
        of the window has that value.
    """
    found: dict[str, dict[str, Cell]] = {}
    for chart in charts:
        if chart.group != "quality":
            continue
        for s in chart.series:
            values = series.get(s.key, [])
            last = next((i for i in range(len(values) - 1, -1, -1) if values[i] is not None), None)
            if last is None:
                continue
            v = values[last]
            assert v is not None
            shown = in_unit(v, chart.scale, chart.decimals, chart.unit)
            found.setdefault(s.measure_label, {})[s.source or SERVER] = (shown, rounds[last])
    sources = list(dict.fromkeys(src for cells in found.values() for src in cells))
    sources.sort(key=lambda src: src != SERVER)
    return sources, [(m, [cells.get(src) for src in sources]) for m, cells in found.items()]
