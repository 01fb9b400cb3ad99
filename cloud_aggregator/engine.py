"""The round engine: one object owns every round from selection to finalisation.

As Flower's ``Strategy.start(grid)``: :class:`RoundEngine` selects clients (with over-selection),
announces the round and its model, admits updates until the closing rule of
:mod:`cloud_aggregator.rounds` says so, validates, aggregates (robust bounds + strategy + DP),
judges the candidate (release gate), releases it and finalises the round exactly once. It talks
to devices only through a :class:`~cloud_aggregator.grid.Grid` (MQTT in production, in-memory
for tests, benches and simulations) and keeps every fact in the store, so ``kill -9`` at any
moment and a restart (or another replica) resume the round.

The aggregator service (:mod:`cloud_aggregator.service`) feeds it updates and ticks it; the
simulations and benches drive the same engine on an
:class:`~cloud_aggregator.grid_memory.InMemoryGrid`.
"""

from __future__ import annotations

import logging

from cloud_aggregator import closing
from cloud_aggregator import rounds as rl
from cloud_aggregator.engine_close import ClosingMixin
from cloud_aggregator.engine_intake import IntakeMixin
from cloud_aggregator.engine_open import OpeningMixin
from store import (
    DesiredTraining,
    Round,
    RoundState,
)

_LOGGER = logging.getLogger(__name__)


class RoundEngine(OpeningMixin, IntakeMixin, ClosingMixin):
    """Runs the federated rounds of one task (see the module docstring).

    Parameters
    ----------
    store : Store
        Source of truth for rounds, updates and models.
    grid : Grid
        Where announcements and models are published.
    settings : AggregatorSettings
        Service settings (defaults under the operator's training config).
    evaluator : callable, optional
        ``release -> metrics`` on the server's held-out set (release gate, round metrics).
    distiller : callable, optional
        ``release -> release`` every ``settings.distill_every`` rounds.
    builder : callable, optional
        ``(release, tensors, round_no) -> release`` of whole-model rounds (export + int8;
        :func:`cloud_aggregator.full_release.full_builder`).
    clock : callable
        Unix seconds (tests and simulations inject their own).
    """

    # ------------------------------------------------------------------ the round's life
    def tick(self) -> None:
        """Open, close, fail or keep waiting on the task's round, as the operator's control says."""
        control = self.store.get_training_control()
        active = self.store.active_round(self.s.task)
        self._open = (
            {} if active is None or active.state != RoundState.OPEN else {active.round_id: active}
        )
        if control.desired != DesiredTraining.RUNNING or control.task not in ("", self.s.task):
            if active is not None and active.state == RoundState.OPEN:
                self.store.fail_round(active.round_id, "training stopped")
                self.retained.clear_announcement()
            return
        if active is None:
            opened = self._open_next(control)
            if opened is not None:
                self._open = {opened.round_id: opened}  # its first updates need no query
                self._announce(opened)
            return
        if self.republish.is_set() or self.retained.announced != active.round_id:
            self._announce(active)
        if active.state == RoundState.AGGREGATING:
            self.close(active, control)
            return
        progress = self._progress(active)
        decision = rl.decide(progress, self.clock())
        if decision == rl.Decision.CLOSE:
            self.close(active, control)
        elif decision == rl.Decision.FAIL:
            got = progress.reported
            why = f"quorum not reached: {got} of {active.quorum} needed, {progress.failures} dropped out"
            self._fail(active, why, got, progress.failures)

    def _progress(self, rnd: Round) -> rl.RoundProgress:
        """Who reported, dropped out or was refused in an open round, and when quorum came
        (counts from the store: a few queries whatever the round's size)."""
        offline = [c for c in rnd.selected_clients if self.online.get(c) is False]
        tally = self.store.round_tally(rnd.round_id, rnd.quorum, offline)
        return rl.RoundProgress(
            len(rnd.selected_clients),
            tally.accepted,
            len(offline) - tally.offline_reported,
            rnd.quorum,
            rnd.deadline,
            tally.refused,
            target=rnd.config.get("target"),
            opened_at=rnd.opened_at,
            quorum_at=tally.quorum_at,
            grace_fraction=float(rnd.config.get("grace_fraction", self.s.grace_fraction)),
        )

    def _fail(self, rnd: Round, why: str, received: int, failures: int) -> None:
        self._open.pop(rnd.round_id, None)
        if self.store.fail_round(rnd.round_id, why):
            closing.log_round(rnd, received, failures, extra=f"FAILED ({why})")
            self.history.append(
                {
                    "round_id": rnd.round_id,
                    "state": "failed",
                    "reason": why,
                    **closing.run_info(rnd),
                }
            )
