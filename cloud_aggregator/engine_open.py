"""Opening a round: the next round of the run, its selection, config and announcement."""

from __future__ import annotations

import dataclasses
import logging

from cloud_aggregator import closing
from cloud_aggregator import rounds as rl
from cloud_aggregator.engine_base import EngineBase
from cloud_aggregator.publisher import announcement_for
from cloud_aggregator.releases import wire_release
from cloud_aggregator.round_config import (
    client_round_config,
    round_policy,
    run_label_counts,
    stored_round_config,
)
from common.errors import ConfigError
from common.training_config import check_training_config
from store import ConflictError, DesiredTraining, Round, RoundState, TrainingControl

_LOGGER = logging.getLogger(__name__)
WAITING_LOG_S = 30.0  # how often a round that cannot open for want of devices says so


class OpeningMixin(EngineBase):
    """Opens the next round of the operator's run and (re)announces the open one."""

    def _open_next(self, control: TrainingControl) -> Round | None:
        """Open the next round of the run ``control`` asks for, if it is time to (or stop it)."""
        try:
            control = dataclasses.replace(control, config=check_training_config(control.config))
            strategy = closing.strategy_for(control.strategy or "fedavg", control)
        except ConfigError as exc:  # stored by something that skipped the form's checks
            self._stop_run(control, f"invalid training config: {exc}")
            return None
        past = [
            r
            for r in self.store.list_rounds(task=self.s.task, limit=10_000)
            if r.config.get("run") == control.generation
        ]
        ended = [r.closed_at for r in past if r.closed_at is not None]
        if ended and self.clock() - max(ended) < self.s.round_interval_s:
            return None  # pacing: let devices label new beats before the next round
        closed = [int(r.config["round_no"]) for r in past if r.state == RoundState.CLOSED]
        round_no, total = rl.next_round_number(closed), max(1, control.rounds)
        if round_no > total:
            _LOGGER.info("run %d finished: %d rounds closed", control.generation, len(closed))
            self.retained.clear_announcement()
            self._stop_run(control, "")
            return None
        policy = round_policy(control, self.s)
        attempt = sum(
            1 for r in past if r.state == RoundState.FAILED and r.config.get("round_no") == round_no
        )
        if attempt >= policy.max_attempts:
            self._stop_run(control, f"round {round_no} failed {attempt} times")
            return None
        eligible = {c for c, up in self.online.items() if up} | {
            c.client_id
            for c in self.store.list_clients(online=True)
            if c.task in ("", self.s.task) and c.client_id not in self.online
        }
        # a fresh draw per attempt: OS entropy unless the settings fix a seed (simulations)
        seed = f"{control.generation}/{round_no}/{attempt}/{int(self._rng.integers(1 << 48)):012x}"
        selection = rl.select_clients(eligible, policy, seed)
        if selection is None:  # wait for clients to come online; say so now and then
            if self.clock() - self._waiting_said_at >= WAITING_LOG_S:
                self._waiting_said_at = self.clock()
                _LOGGER.info("round %d waits: %d of %d devices online", round_no, len(eligible),
                             policy.min_clients)  # fmt: skip
            return None
        base = self.ensure_initial_model()
        _, sha = wire_release(self.release(base)[0], base)
        cfg = stored_round_config(
            self.s,
            run=control.generation,
            round_no=round_no,
            total_rounds=total,
            attempt=attempt,
            client=client_round_config(control, self.s, strategy, self._label_counts(past, base)),
            model_sha256=sha,
            n_selected=len(selection.clients),
            population=len(eligible),
            target=selection.target,
            grace_fraction=policy.grace_fraction,
            strategy_params=control.config.get("strategy_params", {}),
            invitation=selection.invitation,
        )
        try:
            rnd = self.store.open_round(
                task=self.s.task,
                strategy=strategy.name,
                base_version=base,
                quorum=policy.quorum(selection.target),
                deadline=self.clock() + policy.deadline_s,
                selected_clients=selection.clients,
                config=cfg,
            )
        except ConflictError:  # another replica opened the task's round first; follow it
            _LOGGER.info("[ROUND %d/%d] opened by another replica", round_no, total)
            return None
        _LOGGER.info(
            "[ROUND %d/%d] opened (attempt %d): %d clients invited for %d updates, "
            "quorum %d, deadline %.0f s",
            round_no,
            total,
            attempt,
            len(selection.clients),
            selection.target,
            rnd.quorum,
            policy.deadline_s,
        )
        return rnd

    def _label_counts(self, past: list[Round], base: int) -> list[float]:
        """Labels per class the run's devices reported in its closed rounds (for
        ``class_balance``; card order of the base release)."""
        classes = closing.release_classes(self.release(base)[0])
        closed = [r for r in past if r.state == RoundState.CLOSED]
        return run_label_counts((self.store.round_metrics(r.round_id) for r in closed), classes)

    def _stop_run(self, control: TrainingControl, reason: str) -> None:
        """Set the run to stopped (the operator's other choices kept); audit why, if failing."""
        self.store.set_training_control(
            desired=DesiredTraining.STOPPED,
            task=control.task,
            strategy=control.strategy,
            dataset=control.dataset,
            rounds=control.rounds,
            config=control.config,
            updated_by=f"aggregator:{self.worker}",
        )
        if reason:
            _LOGGER.error("training stopped: %s", reason)
            self.store.audit(
                f"aggregator:{self.worker}",
                "training_stopped",
                target=self.s.task,
                details={"reason": reason},
            )

    def _announce(self, rnd: Round) -> None:
        """(Re)publish the round's retained announcement and its base model."""
        base = int(rnd.base_version or 0)
        payload, sha = wire_release(self.release(base)[0], base)
        if base not in self.retained.models or self.republish.is_set():
            self.retained.publish_model(base, payload)
        now = self.clock()
        ann = announcement_for(
            rnd.round_id, rnd.config, base, sha, rnd.deadline, now, rnd.selected_clients
        )
        self.republish.clear()
        if not self.retained.announce(ann, rnd.deadline - now):
            self.republish.set()  # retried on the next tick
