"""Closing a round: claim, aggregate, judge, release and finalise it exactly once."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time

from cloud_aggregator import closing
from cloud_aggregator.closing import ClosedRound
from cloud_aggregator.engine_base import EngineBase
from cloud_aggregator.release_gate import ReleaseGate
from cloud_aggregator.releases import (
    RELEASE_FORMAT,
    ReleaseBuildError,
    is_whole_model,
    next_release,
    stored_blob,
    version_name,
    wire_release,
)
from cloud_aggregator.robust import RobustPolicy
from cloud_aggregator.round_aggregation import StoredUpdate, aggregate_round
from cloud_aggregator.update_cache import kept_update
from common import fl_protocol as fl
from common.errors import ConfigError
from common.fl_patch import downlink_tensors, encode_patch, make_patch
from store import Round, TrainingControl

_LOGGER = logging.getLogger(__name__)


class ClosingMixin(EngineBase):
    """Turns a round's updates into its release (or its refusal)."""

    def close(self, rnd: Round, control: TrainingControl) -> ClosedRound | None:
        """Claim, aggregate, judge, release and finalise one round (exactly once).

        Returns the committed round, or the refused one (``version`` None: the release gate
        failed it with the reason; the current model stays published); None when another
        replica holds the claim or nothing was readable.
        """
        self._open.pop(rnd.round_id, None)  # from now on its updates are late
        if self.store.claim_round(rnd.round_id, self.worker, lease_s=self.s.lease_s) is None:
            return None  # another replica aggregates it
        t0 = time.perf_counter()
        base = int(rnd.base_version or 0)
        rel, state = self.release(base)
        try:
            strategy = closing.round_strategy(rnd, control)
        except ConfigError as exc:
            self.store.fail_round(rnd.round_id, f"invalid strategy: {exc}", worker=self.worker)
            return None
        stored = self._stored_updates(rnd.round_id)
        dp, history = closing.dp_setup(self.store, self.s)
        aggregate = functools.partial(
            aggregate_round,
            rel.tensors,
            state,
            stored,
            strategy,
            dp=dp,
            dp_history=history,
            dp_q=float(rnd.config.get("dp_q", 1.0)),
            rng=self._rng,
            robust=RobustPolicy(self.s.weight_cap, self.s.norm_mult),
            max_examples=int(rnd.config.get("client", {}).get("max_examples", 1_000_000)),
        )
        result = aggregate()
        if result is None:
            self.store.fail_round(rnd.round_id, "no readable updates", worker=self.worker)
            return None
        round_no = int(rnd.config["round_no"])
        build = self._builder(rel)
        if build is None:
            why = (
                "a whole-model release needs the aggregator's release builder "
                "(the train extra and server-side beats for the int8 calibration)"
            )
            self.store.fail_round(rnd.round_id, why, worker=self.worker)
            return None
        current = None if self.evaluator is None else self.evaluator(rel)
        gate = ReleaseGate(self.s.gate_margin, self.s.gate_class_margin)
        try:
            result, candidate, scores, excluded, refusal = closing.judge(
                result,
                aggregate,
                rel,
                round_no,
                gate,
                self.evaluator,
                current,
                build,
                self.s.screen_suspects,
            )
        except ReleaseBuildError as exc:  # the deployable model cannot take the new weights
            self.store.fail_round(rnd.round_id, f"release not built: {exc}", worker=self.worker)
            _LOGGER.error("round %d: release not built: %s", round_no, exc)
            return None
        devices = closing.device_evaluation(result.client_metrics, closing.release_classes(rel))
        metrics = self._round_metrics(
            rnd, {**result.metrics, **devices}, scores, excluded, set(result.client_metrics)
        )
        if refusal is not None:
            self.store.record_metrics(rnd.round_id, closing.finite(metrics))  # refused: shown too
            self.store.fail_round(rnd.round_id, refusal, worker=self.worker)
            closing.log_round(
                rnd,
                len(result.client_metrics),
                int(metrics["failures"]),
                int(metrics["rejected"]),
                extra=f"REFUSED ({refusal})",
            )
            record = {
                "round_id": rnd.round_id,
                "state": "failed",
                "reason": refusal,
                **closing.run_info(rnd),
                **closing.finite(metrics),
            }
            self.history.append(record)
            return ClosedRound(None, None, record)
        new_state = result.state
        if (
            self.distiller is not None
            and self.s.distill_every > 0
            and round_no % self.s.distill_every == 0
        ):
            candidate, new_state = self._distilled(
                rnd, candidate, new_state, current, gate, metrics
            )
        metrics["aggregate_s"] = time.perf_counter() - t0
        metrics["round_s"] = self.clock() - (rnd.opened_at or self.clock())
        return self._commit(rnd, candidate, new_state, metrics, result.client_metrics, base)

    def _stored_updates(self, round_id: int) -> list[StoredUpdate]:
        """The round's accepted updates, decoded where the intake kept them.

        When the intake kept every stored update (same id, same digest) only the digests are
        read; otherwise (another replica took some, or this process restarted) the updates
        with their blobs, decoding those not kept. A round of 5,000 head updates: 3.5 MB and
        5,000 rows parsed for nothing otherwise.
        """
        kept = self._decoded.take(round_id)  # what the intake decoded, by update id
        digests = self.store.update_digests(round_id)
        if all(kept_update(kept, uid, sha) for uid, sha in digests.items()):
            ours = sorted((kept[uid] for uid in digests), key=lambda k: k.update.client_id)
            return [StoredUpdate(k.update.client_id, b"", dict(k.metrics), k.update) for k in ours]
        stored = []
        for u in sorted(self.store.list_updates(round_id), key=lambda u: u.client_id):
            found = kept_update(kept, u.update_id, u.sha256)
            decoded = None if found is None else found.update
            stored.append(StoredUpdate(u.client_id, u.blob or b"", dict(u.metrics), decoded))
        return stored

    def _builder(self, rel: fl.ModelRelease) -> closing.Builder | None:
        """How this round's release is made: the head patched into the int8 model, or (a
        whole-model release) the aggregator's builder; None when that is missing."""
        inner = self.builder if is_whole_model(rel) else _patched_head
        if inner is None:
            return None

        def build(base: fl.ModelRelease, weights: fl.Tensors, round_no: int) -> fl.ModelRelease:
            # the weights devices will rebuild from the patch's int8 deltas, bit for bit
            exact, deltas = downlink_tensors(base.tensors, weights)
            release = inner(base, exact, round_no)
            self._downlink[id(release)] = (release, deltas)
            return release

        return build

    def _round_metrics(
        self,
        rnd: Round,
        aggregated: dict[str, float],
        scores: dict[str, float],
        excluded: tuple[str, ...],
        counted: set[str],
    ) -> dict[str, float]:
        """The round's metrics: aggregation, scores, and who took part, dropped out or was refused."""
        rejects = {r.client_id for r in self.store.list_rejected_updates(rnd.round_id)}
        offline = set(rnd.selected_clients) - counted - rejects - set(excluded)
        return {
            **aggregated,
            **scores,
            "excluded": float(len(excluded)),
            "selected": float(len(rnd.selected_clients)),
            "failures": float(len(offline)),
            "rejected": float(len(rejects) + len(excluded)),
            "quorum": float(rnd.quorum),
        }

    def _distilled(
        self,
        rnd: Round,
        candidate: fl.ModelRelease,
        state: fl.Tensors,
        current: dict[str, float] | None,
        gate: ReleaseGate,
        metrics: dict[str, float],
    ) -> tuple[fl.ModelRelease, fl.Tensors]:
        """The distilled student when it passes the gate too, else the aggregate itself."""
        assert self.distiller is not None
        distilled = closing.distil(candidate, self.distiller, metrics, int(rnd.config["round_no"]))
        self.store.claim_round(rnd.round_id, self.worker, lease_s=self.s.lease_s)  # renew
        if distilled is None:
            return candidate, state
        scores = self.evaluator(distilled) if self.evaluator is not None else {}
        if current is not None and gate.refusal(scores, current) is not None:
            metrics["distill_refused"] = 1.0  # publish the (gated) aggregate instead
            return candidate, state
        metrics.update(scores)
        return distilled, {}  # server-optimiser moments belonged to the previous head

    def _commit(
        self,
        rnd: Round,
        candidate: fl.ModelRelease,
        state: fl.Tensors,
        metrics: dict[str, float],
        client_metrics: dict[str, dict[str, float]],
        base: int,
    ) -> ClosedRound:
        """Finalise the round in one transaction and publish its release."""
        kept = closing.finite(metrics)
        release = dataclasses.replace(candidate, metrics={**candidate.metrics, **kept})
        round_no = int(rnd.config["round_no"])
        mv = self.store.finalize_round(
            rnd.round_id,
            self.worker,
            model_blob=stored_blob(release, state),
            model_format=RELEASE_FORMAT,
            model_metrics=kept,
            model_card={
                **closing.card_summary(candidate),
                "federated": {"round_no": round_no, "run": rnd.config.get("run")},
            },
            round_metrics=kept,
        )  # each client's metrics are stored with its update (store.client_metrics reads them)
        shown = " ".join(
            f"{k}={v:.4g}"
            for k, v in kept.items()
            if k in ("macro_f1", "dp_epsilon", "aggregate_s")
        )
        closing.log_round(
            rnd,
            len(client_metrics),
            int(kept["failures"]),
            int(kept["rejected"]),
            extra=f"-> model {version_name(mv.version)} {shown}",
        )
        record = {
            "round_id": rnd.round_id,
            "state": "closed",
            "version": mv.version,
            **closing.run_info(rnd),
            **kept,
        }
        self.history.append(record)
        payload, _ = wire_release(release, mv.version)
        self.retained.publish_model(mv.version, payload)
        self._publish_patch(base, candidate, release, mv.version)
        return ClosedRound(mv.version, release, record)

    def _publish_patch(
        self, base: int, candidate: fl.ModelRelease, release: fl.ModelRelease, version: int
    ) -> None:
        """Retain the new release as a patch of the round's base (what a device holds)."""
        entry, self._downlink = self._downlink.get(id(candidate)), {}
        if entry is None or entry[0] is not candidate:
            return  # not built from downlink tensors (a distilled student): full release only
        old = dataclasses.replace(self.release(base)[0], version=version_name(base))
        new = dataclasses.replace(release, version=version_name(version))
        patch = encode_patch(make_patch(old, new, entry[1]))
        if len(patch) <= self.s.chunk_bytes:
            self.retained.publish_patch(version, base, patch)


def _patched_head(base: fl.ModelRelease, weights: fl.Tensors, round_no: int) -> fl.ModelRelease:
    """A head round's release: the new head written into the base's int8 model."""
    return next_release(base, weights, round_no, {})
