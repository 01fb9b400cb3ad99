"""The round-level metrics of the federation page and API, read from the store.

:func:`metrics` reads the last rounds' metrics, finds each task's class codes (model cards,
then the keys) and lists the charts (``web.round_charts``) with the human names of
``web.metric_names``.
"""

from __future__ import annotations

from typing import Any

from store.errors import NotFoundError
from store.records import Round
from web.metric_names import describe, format_value
from web.round_charts import Chart, build_charts, card_classes, key_classes
from web.views.context import store


def metric_series(limit: int = 50) -> dict[str, Any]:
    """Round-level metrics of the last ``limit`` rounds and their charts (see :func:`metrics`)."""
    return metrics(limit)[0]


def metrics(limit: int = 50) -> tuple[dict[str, Any], list[Chart]]:
    """Round-level metrics of the last ``limit`` rounds and the charts that show them.

    ``{rounds: [id], tasks: [task], series: {key: [value or None]},
    classes: {task: [class]}, names: {key: {label, source, unit, scale, decimals, group}},
    charts: [{id, title, group, unit, scale, decimals, note, series: [{key, label, color,
    dashed}]}]}`` (oldest round first; a round without a value is None: a gap), and the charts.
    """
    rounds = list(reversed(store().list_rounds(limit=limit)))
    per_round = [
        {k: v for k, v in store().round_metrics(r.round_id).items() if v == v} for r in rounds
    ]
    keys = sorted({k for m in per_round for k in m})
    tasks = list(dict.fromkeys(r.task for r in reversed(rounds)))  # most recent first
    classes = task_classes(rounds, per_round)
    task_of = {k: r.task for r, m in zip(rounds, per_round, strict=True) for k in m}
    charts = build_charts(set(keys), tasks, classes)
    return {
        "rounds": [r.round_id for r in rounds],
        "tasks": [r.task for r in rounds],
        "series": {k: [m.get(k) for m in per_round] for k in keys},
        "classes": classes,
        "names": {k: describe(k, task_of[k]).as_json() for k in keys},
        "charts": [c.as_json() for c in charts],
    }, charts


def task_classes(rounds: list[Round], per_round: list[dict[str, float]]) -> dict[str, list[str]]:
    """Class codes per task: the newest model card that names them (the round's result, else
    its base), then any code only the metric keys name."""
    cards: dict[int, tuple[str, ...]] = {}
    out: dict[str, list[str]] = {}
    for r in reversed(rounds):
        have = out.setdefault(r.task, [])
        if not have:
            for version in (r.result_version, r.base_version):
                if version is not None and not have:
                    have += _card_classes(int(version), cards)
    for r, m in zip(rounds, per_round, strict=True):
        out[r.task] += [c for c in key_classes(m) if c not in out[r.task]]
    return {t: c for t, c in out.items() if c}


def _card_classes(version: int, cache: dict[int, tuple[str, ...]]) -> tuple[str, ...]:
    if version not in cache:
        try:
            cache[version] = card_classes(store().get_model(version).card)
        except NotFoundError:
            cache[version] = ()
    return cache[version]


def metric_text(key: str, value: object, task: str = "beat") -> str:
    """One stored metric in words: ``"Macro-F1, validation set (server): 71.2 %"``."""
    name = describe(key, task)
    return f"{name.full_label}: {format_value(name, value)}"
