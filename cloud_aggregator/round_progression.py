"""Progression of a training run: open its next round, judge the active one, stop the run.

The opening half of :class:`cloud_aggregator.service.AggregatorService` (closing is
:mod:`cloud_aggregator.round_closing`, intake :mod:`cloud_aggregator.update_intake`). Everything
is read from and written to the store, so a restarted aggregator picks the run up where it was:
the round number and attempt come from the run's stored rounds, not from process state.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping

from cloud_aggregator import rounds as rl
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.publisher import RetainedState
from cloud_aggregator.releases import wire_release
from cloud_aggregator.round_closing import ReleaseLoader, strategy_for
from cloud_aggregator.round_opening import client_round_config, round_policy, stored_round_config
from common.errors import ConfigError
from common.training_config import check_training_config
from store import DesiredTraining, Round, RoundState, Store, TrainingControl
from store.errors import ConflictError

_LOGGER = logging.getLogger(__name__)

__all__ = ["open_next_round", "round_progress", "rounds_of_run", "stop_training"]


def rounds_of_run(store: Store, task: str, run: int) -> list[Round]:
    """All stored rounds (every state and attempt) of training run ``run`` of ``task``."""
    return [r for r in store.list_rounds(task=task, limit=10_000) if r.config.get("run") == run]


def round_progress(store: Store, rnd: Round, online: Mapping[str, bool]) -> rl.RoundProgress:
    """What is known about an open round now: who reported, dropped out or was refused.

    Parameters
    ----------
    store : Store
        Holds the round's accepted and rejected updates.
    rnd : Round
        The open round.
    online : mapping of str to bool
        Last known status per client (absent = unknown, counted as not offline).
    """
    reported = frozenset(u.client_id for u in store.list_updates(rnd.round_id, include_blobs=False))
    offline = frozenset(c for c in rnd.selected_clients if online.get(c) is False)
    refused = frozenset(r.client_id for r in store.list_rejected_updates(rnd.round_id))
    return rl.RoundProgress(
        rnd.selected_clients, reported, offline, rnd.quorum, rnd.deadline, refused
    )


def stop_training(store: Store, control: TrainingControl, worker: str) -> None:
    """Set the desired state to STOPPED, keeping the rest of the operator's control."""
    store.set_training_control(
        desired=DesiredTraining.STOPPED,
        task=control.task,
        strategy=control.strategy,
        dataset=control.dataset,
        rounds=control.rounds,
        config=control.config,
        updated_by=f"aggregator:{worker}",
    )


def open_next_round(
    store: Store,
    settings: AggregatorSettings,
    control: TrainingControl,
    *,
    worker: str,
    online: Mapping[str, bool],
    retained: RetainedState,
    release: ReleaseLoader,
    base_version: Callable[[], int],
    clock: Callable[[], float],
) -> Round | None:
    """Open the next round of the run ``control`` asks for, if it is time to.

    Nothing is opened while the pause after the last round (``round_interval_s``) lasts or too
    few clients are online; after the last planned round, or when a round failed
    ``max_attempts`` times, the run is stopped (the retained announcement cleared first when
    the run is complete).

    Parameters
    ----------
    store : Store
        Source of truth (rounds, clients, training control, audit log).
    settings : AggregatorSettings
        Service settings (defaults under the control's config).
    control : TrainingControl
        The operator's request; ``generation`` numbers the run.
    worker : str
        This replica's name (audit and control authorship).
    online : mapping of str to bool
        Client statuses seen by this process (the store's online clients are added).
    retained : RetainedState
        The retained announcement, cleared when the run is complete.
    release : callable
        ``version -> (release, server state)`` of a stored model.
    base_version : callable
        The latest model version (seeding the initial model into an empty store).
    clock : callable
        Unix seconds.

    Returns
    -------
    Round or None
        The opened round (to announce), or None when none was opened.
    """
    try:
        control = dataclasses.replace(control, config=check_training_config(control.config))
        strategy = strategy_for(control.strategy or "fedavg", control)
    except ConfigError as exc:
        # Stored by something that skipped the web form's checks: stop with the reason rather
        # than fail on every tick.
        _LOGGER.error("training config refused, run stopped: %s", exc)
        stop_training(store, control, worker)
        store.audit(f"aggregator:{worker}", "training_stopped", target=settings.task,
                    details={"reason": f"invalid training config: {exc}"})  # fmt: skip
        return None
    run = control.generation
    past = rounds_of_run(store, settings.task, run)
    ended = [r.closed_at for r in past if r.closed_at is not None]
    if ended and clock() - max(ended) < settings.round_interval_s:
        return None  # pacing: let devices label new beats before the next round
    closed = [int(r.config["round_no"]) for r in past if r.state == RoundState.CLOSED]
    round_no = rl.next_round_number(closed)
    total = max(1, control.rounds)
    if round_no > total:
        _LOGGER.info("run %d finished: %d rounds closed", run, len(closed))
        retained.clear_announcement()
        stop_training(store, control, worker)
        return None
    policy = round_policy(control, settings)
    attempt = sum(
        1 for r in past if r.state == RoundState.FAILED and r.config.get("round_no") == round_no
    )
    if attempt >= policy.max_attempts:
        _LOGGER.error("round %d failed %d times: stopping the run", round_no, attempt)
        stop_training(store, control, worker)
        store.audit(
            f"aggregator:{worker}",
            "training_stopped",
            target=settings.task,
            details={"reason": f"round {round_no} failed {attempt} times"},
        )
        return None
    eligible = [c for c, up in online.items() if up]
    eligible += [
        c.client_id
        for c in store.list_clients(online=True)
        if c.task in ("", settings.task) and c.client_id not in online
    ]
    selected = rl.select_clients(eligible, policy, f"{run}/{round_no}/{attempt}")
    if selected is None:
        return None  # wait for clients to come online
    base = base_version()
    rel, _ = release(base)
    _, sha = wire_release(rel, base)
    cfg = stored_round_config(
        settings,
        run=run,
        round_no=round_no,
        total_rounds=total,
        attempt=attempt,
        client=client_round_config(control, settings, strategy),
        model_sha256=sha,
        n_selected=len(selected),
        population=len(set(eligible)),
        strategy_params=control.config.get("strategy_params", {}),
    )
    try:
        rnd = store.open_round(
            task=settings.task,
            strategy=strategy.name,
            base_version=base,
            quorum=policy.quorum(len(selected)),
            deadline=clock() + policy.deadline_s,
            selected_clients=selected,
            config=cfg,
        )
    except ConflictError:
        # Another replica opened the task's round first (one active round per task is a
        # constraint of the store); this one follows it from the next tick.
        _LOGGER.info("[ROUND %d/%d] opened by another replica", round_no, total)
        return None
    _LOGGER.info(
        "[ROUND %d/%d] opened (attempt %d): %d clients selected, quorum %d, deadline %.0f s",
        round_no,
        total,
        attempt,
        len(selected),
        rnd.quorum,
        policy.deadline_s,
    )
    return rnd
