"""The steps of closing a round that need no engine state: strategy, DP, judging, distilling.

:meth:`cloud_aggregator.engine.RoundEngine.close` runs them in order: the round's strategy
(:func:`round_strategy`), its DP policy (:func:`dp_setup`), the candidate chosen and passed
through the release gate (:func:`judge`), the optional distillation (:func:`distil`), and the
round-structured log line (:func:`log_round`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloud_aggregator import rounds as rl
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.privacy import DpPolicy
from cloud_aggregator.release_gate import ReleaseGate
from cloud_aggregator.releases import next_release
from cloud_aggregator.round_aggregation import RoundResult
from cloud_aggregator.strategies import Strategy, make_strategy
from common import fl_protocol as fl
from store import Round, RoundState, Store, TrainingControl

_LOGGER = logging.getLogger(__name__)

Evaluator = Callable[[fl.ModelRelease], dict[str, float]]
Distiller = Callable[[fl.ModelRelease], fl.ModelRelease]
# (base release, aggregated tensors, round number) -> the round's deployable release
Builder = Callable[[fl.ModelRelease, fl.Tensors, int], fl.ModelRelease]
ReleaseLoader = Callable[[int], tuple[fl.ModelRelease, fl.Tensors]]


@dataclass(frozen=True, slots=True)
class ClosedRound:
    """A committed round, or one the release gate refused.

    Attributes
    ----------
    version : int or None
        Store version of the new global model (None: refused, the round failed).
    release : ModelRelease or None
        The new global model (with its finite round metrics); None when refused.
    record : dict
        History entry (``round_id``, ``state``, ``version`` or ``reason``, run info, metrics).
    """

    version: int | None
    release: fl.ModelRelease | None
    record: dict[str, Any]


Judged = tuple[RoundResult, fl.ModelRelease, dict[str, float], tuple[str, ...], str | None]


def judge(
    result: RoundResult,
    aggregate: Callable[..., RoundResult | None],
    rel: fl.ModelRelease,
    round_no: int,
    gate: ReleaseGate,
    evaluator: Evaluator | None,
    current: dict[str, float] | None,
    build: Builder = lambda rel, w, r: next_release(rel, w, r, {}),
    screen: bool = True,
) -> Judged:
    """The round's candidate, chosen and passed through the release gate.

    Returns (result, candidate, scores, excluded clients, refusal or None). When robust bounds
    had to change some updates (an inflated claim or an outlying norm: updates the server cannot
    verify), the candidate without those clients is scored too and the better of the two on the
    validation set is kept (server-side validation of suspect updates, as in Zeno, Xie et al.
    2019, and FLTrust, Cao et al. 2021). The kept candidate must then pass the gate.
    """
    candidate = build(rel, result.weights, round_no)
    if evaluator is None or current is None:
        return result, candidate, {}, (), None
    scores = evaluator(candidate)
    excluded: tuple[str, ...] = ()
    retry = aggregate(exclude=frozenset(result.suspects)) if screen and result.suspects else None
    if retry is not None:
        retry_candidate = build(rel, retry.weights, round_no)
        retry_scores = evaluator(retry_candidate)
        if better(retry_scores, scores):
            _LOGGER.warning("round %d: left out %s (macro_f1 %.3f with them, %.3f without)",
                            round_no, ", ".join(result.suspects), scores.get("macro_f1", math.nan),
                            retry_scores.get("macro_f1", math.nan))  # fmt: skip
            excluded = result.suspects
            result, candidate, scores = retry, retry_candidate, retry_scores
    return result, candidate, scores, excluded, gate.refusal(scores, current)


def better(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """True when ``a`` has the higher macro-F1 (a NaN loses)."""
    fa, fb = a.get("macro_f1", math.nan), b.get("macro_f1", math.nan)
    return math.isfinite(fa) and (not math.isfinite(fb) or fa > fb)


def distil(
    candidate: fl.ModelRelease, distiller: Distiller, metrics: dict[str, float], round_no: int
) -> fl.ModelRelease | None:
    """The distilled student of ``candidate``, or None when distillation failed (logged)."""
    try:
        distilled = distiller(candidate)  # new int8 student backbone + its head
    except Exception:  # the round's aggregate is still good: publish it undistilled
        _LOGGER.exception("round %d: distillation failed; publishing the aggregate", round_no)
        metrics["distill_failed"] = 1.0
        return None
    metrics["distill_s"] = float(distilled.metrics.get("distill_s", 0.0))
    return distilled


def finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if np.isfinite(v)}


def strategy_for(name: str, control: TrainingControl) -> Strategy:
    """The named strategy with the control's numeric ``strategy_params`` (ConfigError if bad)."""
    params = control.config.get("strategy_params", {})
    return make_strategy(name, **{k: float(v) for k, v in params.items()})


def round_strategy(rnd: Round, control: TrainingControl) -> Strategy:
    """The strategy a round was opened with (its stored parameters; the control's for rounds
    stored before they were kept)."""
    params = rnd.config.get("strategy_params")
    if not isinstance(params, dict):
        return strategy_for(rnd.strategy, control)
    return make_strategy(rnd.strategy, **{k: float(v) for k, v in params.items()})


def run_info(rnd: Round) -> dict[str, Any]:
    """Run, round number and attempt of a stored round (from its config)."""
    cfg = rnd.config
    return {"run": cfg.get("run"), "round_no": cfg.get("round_no"), "attempt": cfg.get("attempt")}


def log_round(rnd: Round, received: int, failures: int, rejected: int = 0, extra: str = "") -> None:
    """Log the round-structured line ``[ROUND 3/10] received 18 updates, 2 failures ...``."""
    cfg = rnd.config
    _LOGGER.info(
        "%s",
        rl.round_log_line(
            int(cfg["round_no"]), int(cfg["total_rounds"]), received, failures, rejected, extra
        ),
    )


def dp_setup(
    store: Store, settings: AggregatorSettings
) -> tuple[DpPolicy | None, list[tuple[float, float]]]:
    """Central DP policy and the (q, z) of earlier DP rounds (for the accountant), if enabled."""
    if settings.dp_clip <= 0:
        return None, []
    dp = DpPolicy(settings.dp_clip, settings.dp_noise, settings.dp_delta)
    history = [
        (float(r.config.get("dp_q", 1.0)), float(r.config.get("dp_z", 0.0)))
        for r in store.list_rounds(task=settings.task, limit=10_000)
        if r.state == RoundState.CLOSED and "dp_z" in r.config
    ]
    return dp, history


def device_evaluation(
    client_metrics: Mapping[str, Mapping[str, float]], classes: Sequence[str]
) -> dict[str, float]:
    """Pooled device-side evaluation of the model a round started from.

    Each device reports confusion counts on its own labelled beats before training
    (``edge_agent.federated_eval``); summed over the round's devices they give ``device_n``,
    per class ``device_count_<c>`` (labelled examples), ``device_se_<c>``, ``device_ppv_<c>``
    and ``device_f1_<c>`` (0..1; absent when undefined) and ``device_macro_f1`` over the
    classes with support. Empty when no device reported counts.
    """
    total: dict[str, float] = {}
    for m in client_metrics.values():
        for k, v in m.items():
            if k.startswith("eval_"):
                total[k] = total.get(k, 0.0) + float(v)
    if not total.get("eval_n"):
        return {}
    out = {"device_n": total["eval_n"]}
    f1s = []
    for i, name in enumerate(classes):
        tp, fp, fn = (total.get(f"eval_{k}_{i}", 0.0) for k in ("tp", "fp", "fn"))
        out[f"device_count_{name}"] = tp + fn  # the devices' labels: for class_balance
        if tp + fn > 0:
            out[f"device_se_{name}"] = tp / (tp + fn)
            f1s.append(2 * tp / (2 * tp + fp + fn))
            out[f"device_f1_{name}"] = f1s[-1]
        if tp + fp > 0:
            out[f"device_ppv_{name}"] = tp / (tp + fp)
    if f1s:
        out["device_macro_f1"] = sum(f1s) / len(f1s)
    return out


def card_summary(release: fl.ModelRelease) -> dict[str, Any]:
    """``task`` and ``classes`` of a release's card, for the store's record of the model."""
    raw = release.files.get("model.card.json")
    try:
        card = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {k: card[k] for k in ("task", "classes") if k in card}


def release_classes(release: fl.ModelRelease) -> tuple[str, ...]:
    """The class names of a release's card, in index order (empty when it has none)."""
    raw = release.files.get("model.card.json")
    try:
        classes = json.loads(raw)["classes"] if raw else []
    except (ValueError, KeyError, TypeError):
        return ()
    return tuple(str(c) for c in classes) if isinstance(classes, list) else ()
