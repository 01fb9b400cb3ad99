"""Closing one federated round: aggregate its stored updates and commit the new global model.

:func:`close_round` is the aggregation half of :class:`cloud_aggregator.service.AggregatorService`:
it claims the round (so one replica aggregates it), aggregates the stored updates with the round's
strategy (and central DP when configured), optionally distils and evaluates the candidate, and
commits the release with ``finalize_round`` -- one conditional transaction, so a round is
committed exactly once even when a killed aggregator's round is re-claimed.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloud_aggregator import rounds as rl
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.privacy import DpPolicy
from cloud_aggregator.release_gate import ReleaseGate
from cloud_aggregator.releases import RELEASE_FORMAT, next_release, stored_blob, version_name
from cloud_aggregator.robust import RobustPolicy
from cloud_aggregator.round_aggregation import RoundResult, StoredUpdate, aggregate_round
from cloud_aggregator.strategies import Strategy, make_strategy
from common import fl_protocol as fl
from common.errors import ConfigError
from store import Round, RoundState, Store, TrainingControl

_LOGGER = logging.getLogger(__name__)

Evaluator = Callable[[fl.ModelRelease], dict[str, float]]
Distiller = Callable[[fl.ModelRelease], fl.ModelRelease]
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


def _judge(
    result: RoundResult,
    aggregate: Callable[..., RoundResult | None],
    rel: fl.ModelRelease,
    round_no: int,
    gate: ReleaseGate,
    evaluator: Evaluator | None,
    current: dict[str, float] | None,
) -> Judged:
    """The round's candidate, chosen and passed through the release gate.

    Returns (result, candidate, scores, excluded clients, refusal or None). When robust bounds
    had to change some updates (an inflated claim or an outlying norm: updates the server cannot
    verify), the candidate without those clients is scored too and the better of the two on the
    validation set is kept (server-side validation of suspect updates, as in Zeno, Xie et al.
    2019, and FLTrust, Cao et al. 2021). The kept candidate must then pass the gate.
    """
    candidate = next_release(rel, result.weights, round_no, {})
    if evaluator is None or current is None:
        return result, candidate, {}, (), None
    scores = evaluator(candidate)
    excluded: tuple[str, ...] = ()
    retry = aggregate(exclude=frozenset(result.suspects)) if result.suspects else None
    if retry is not None:
        retry_candidate = next_release(rel, retry.weights, round_no, {})
        retry_scores = evaluator(retry_candidate)
        if _better(retry_scores, scores):
            _LOGGER.warning("round %d: left out %s (macro_f1 %.3f with them, %.3f without)",
                            round_no, ", ".join(result.suspects), scores.get("macro_f1", math.nan),
                            retry_scores.get("macro_f1", math.nan))  # fmt: skip
            excluded = result.suspects
            result, candidate, scores = retry, retry_candidate, retry_scores
    return result, candidate, scores, excluded, gate.refusal(scores, current)


def _better(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """True when ``a`` has the higher macro-F1 (a NaN loses)."""
    fa, fb = a.get("macro_f1", math.nan), b.get("macro_f1", math.nan)
    return math.isfinite(fa) and (not math.isfinite(fb) or fa > fb)


def _distil(
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


def _finite(metrics: dict[str, float]) -> dict[str, float]:
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


def _dp_setup(
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


def close_round(
    store: Store,
    settings: AggregatorSettings,
    rnd: Round,
    control: TrainingControl,
    *,
    worker: str,
    release: ReleaseLoader,
    rng: np.random.Generator,
    evaluator: Evaluator | None = None,
    distiller: Distiller | None = None,
) -> ClosedRound | None:
    """Claim, aggregate and commit one round.

    Parameters
    ----------
    store : Store
        Source of truth (rounds, updates, models).
    settings : AggregatorSettings
        Service settings (lease in s, DP, distillation cadence).
    rnd : Round
        The round to close (open past its decision, or aggregating after a restart).
    control : TrainingControl
        Current training control (``strategy_params``).
    worker : str
        This replica's name (the claim's owner).
    release : callable
        ``version -> (release, server-optimiser state)`` of the stored base model.
    rng : numpy.random.Generator
        Noise source of central DP.
    evaluator, distiller : callable, optional
        ``release -> metrics`` and ``release -> release`` (every ``settings.distill_every``
        rounds).

    Returns
    -------
    ClosedRound or None
        The committed round, or the refused one (``version`` None: the release gate found the
        candidate worse than the current model on the validation set; the round is failed with
        the reason). None when another replica holds the claim or no update was readable (the
        round is then failed).
    """
    claimed = store.claim_round(rnd.round_id, worker, lease_s=settings.lease_s)
    if claimed is None:
        return None  # another replica aggregates it
    t0 = time.perf_counter()
    base = int(rnd.base_version or 0)
    rel, state = release(base)
    try:
        strategy = round_strategy(rnd, control)
    except ConfigError as exc:
        store.fail_round(rnd.round_id, f"invalid strategy: {exc}", worker=worker)
        return None
    stored = [
        StoredUpdate(u.client_id, u.blob or b"", dict(u.metrics))
        for u in store.list_updates(rnd.round_id)
    ]
    dp, history = _dp_setup(store, settings)
    aggregate = functools.partial(
        aggregate_round,
        rel.tensors,
        state,
        stored,
        strategy,
        dp=dp,
        dp_history=history,
        dp_q=float(rnd.config.get("dp_q", 1.0)),
        rng=rng,
        robust=RobustPolicy(settings.weight_cap, settings.norm_mult),
        max_examples=int(rnd.config.get("client", {}).get("max_examples", 1_000_000)),
    )
    result = aggregate()
    if result is None:
        store.fail_round(rnd.round_id, "no readable updates", worker=worker)
        return None
    round_no = int(rnd.config["round_no"])
    gate = ReleaseGate(settings.gate_margin, settings.gate_class_margin)
    current = None if evaluator is None else evaluator(rel)
    judged = _judge(result, aggregate, rel, round_no, gate, evaluator, current)
    result, candidate, scores, excluded, refusal = judged
    new_state, client_metrics = result.state, result.client_metrics
    metrics = {**result.metrics, **scores, "excluded": float(len(excluded))}
    rejects = store.list_rejected_updates(rnd.round_id)
    rejected = len(rejects) + len(excluded)
    # Failures: selected clients that sent nothing usable (dropped out, too slow, offline).
    offline = len(
        set(rnd.selected_clients) - set(client_metrics) - {r.client_id for r in rejects}
        - set(excluded)
    )  # fmt: skip
    metrics.update(
        selected=float(len(rnd.selected_clients)),
        failures=float(offline),
        rejected=float(rejected),
        quorum=float(rnd.quorum),
    )
    if refusal is not None:
        store.fail_round(rnd.round_id, refusal, worker=worker)
        log_round(rnd, len(client_metrics), offline, rejected, extra=f"REFUSED ({refusal})")
        failed = {"round_id": rnd.round_id, "state": "failed", "reason": refusal}
        return ClosedRound(None, None, {**failed, **run_info(rnd), **_finite(metrics)})
    if (
        distiller is not None
        and settings.distill_every > 0
        and round_no % settings.distill_every == 0
    ):
        distilled = _distil(candidate, distiller, metrics, round_no)
        store.claim_round(rnd.round_id, worker, lease_s=settings.lease_s)  # renew
        if distilled is not None:
            distilled_scores = evaluator(distilled) if evaluator is not None else {}
            if current is not None and gate.refusal(distilled_scores, current) is not None:
                metrics["distill_refused"] = 1.0  # publish the (gated) aggregate instead
            else:
                candidate, new_state = distilled, {}  # moments belonged to the previous head
                metrics.update(distilled_scores)
    metrics["aggregate_s"] = time.perf_counter() - t0
    finite = _finite(metrics)
    new_release = dataclasses.replace(candidate, metrics={**candidate.metrics, **finite})
    mv = store.finalize_round(
        rnd.round_id,
        worker,
        model_blob=stored_blob(new_release, new_state),
        model_format=RELEASE_FORMAT,
        model_metrics=finite,
        model_card={"federated": {"round_no": round_no, "run": rnd.config.get("run")}},
        round_metrics=finite,
        client_metrics=client_metrics,
    )
    extra = " ".join(
        f"{k}={v:.4g}" for k, v in finite.items() if k in ("macro_f1", "dp_epsilon", "aggregate_s")
    )
    log_round(
        rnd,
        len(client_metrics),
        offline,
        rejected,
        extra=f"-> model {version_name(mv.version)} {extra}",
    )
    record = {
        "round_id": rnd.round_id,
        "state": "closed",
        "version": mv.version,
        **run_info(rnd),
        **finite,
    }
    return ClosedRound(mv.version, new_release, record)
