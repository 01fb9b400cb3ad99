"""What a new round is opened with: its policy, the clients' hyper-parameters and stored config.

Pure functions of the training control (what the operator asked for, ``control.config``) and
the service settings (defaults); :class:`cloud_aggregator.engine.RoundEngine` opens the round in
the store with their results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cloud_aggregator import rounds as rl
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.strategies import Strategy
from common import fl_protocol as fl
from store import TrainingControl

# Keys of the control's config that travel to the clients as their RoundConfig.
CLIENT_KEYS = (
    "local_epochs",
    "lr",
    "batch_size",
    "mu",
    "clip_norm",
    "compression",
    "max_examples",
    "mode",
    "optimizer",
    "norm",
)


def round_policy(control: TrainingControl, settings: AggregatorSettings) -> rl.RoundPolicy:
    """Selection, quorum, deadline (s) and retry policy: the control's values over the defaults."""
    c = control.config
    return rl.RoundPolicy(
        fraction=float(c.get("fraction", settings.fraction)),
        min_clients=int(c.get("min_clients", settings.min_clients)),
        quorum_fraction=float(c.get("quorum_fraction", settings.quorum_fraction)),
        min_quorum=int(c.get("min_quorum", settings.min_quorum)),
        deadline_s=float(c.get("deadline_s", settings.deadline_s)),
        max_attempts=int(c.get("max_attempts", settings.max_attempts)),
        overselect=float(c.get("overselect", settings.overselect)),
        grace_fraction=float(c.get("grace_fraction", settings.grace_fraction)),
    )


def client_round_config(
    control: TrainingControl,
    settings: AggregatorSettings,
    strategy: Strategy,
    label_counts: Sequence[float] = (),
) -> fl.RoundConfig:
    """The clients' local-training config of a new round, as the strategy configures it.

    Without an explicit ``clip_norm`` honest clients clip at half the validation norm bound, so
    their updates pass the aggregator's check. With ``class_balance`` and the label counts the
    run's devices reported so far (``label_counts``, per class in card order), the config
    carries :func:`balanced_weights` for every device.
    """
    cfg = fl.RoundConfig(**{k: control.config[k] for k in CLIENT_KEYS if k in control.config})
    if "clip_norm" not in control.config:
        cfg = dataclasses.replace(cfg, clip_norm=0.5 * settings.norm_bound)
    power = float(control.config.get("class_balance", 0.0))
    if power > 0 and sum(label_counts) > 0:
        cfg = dataclasses.replace(cfg, class_weights=balanced_weights(label_counts, power))
    return strategy.configure(cfg)


def balanced_weights(counts: Sequence[float], power: float) -> tuple[float, ...]:
    """Per-class loss weights ``count^-power``, scaled to a mean of 1 over the counted
    examples; a class no device has reported yet gets the largest weight of the others; then
    clipped to ``MAX_CLASS_WEIGHT`` (what a device accepts; the mean is then below 1).

    With one class per device (one recording, one label) a device's own counts cannot balance
    the classes; the counts of the whole run can (as centrally trained models weight theirs).
    """
    c = np.asarray(counts, dtype=np.float64)
    seen = c > 0
    w = np.zeros_like(c)
    w[seen] = c[seen] ** -power
    w /= float(np.sum(w * c) / np.sum(c))
    w[~seen] = w[seen].max()
    # devices refuse a round whose weights exceed this: a run with one class far rarer than
    # the rest must not lock every device out of the run's later rounds
    w = np.minimum(w, fl.MAX_CLASS_WEIGHT)
    return tuple(round(float(x), 6) for x in w)


def run_label_counts(metrics: Iterable[Mapping[str, float]], classes: Sequence[str]) -> list[float]:
    """Labels per class the devices reported over a run's closed rounds (``device_count_<c>``)."""
    totals = [0.0] * len(classes)
    for m in metrics:
        for i, name in enumerate(classes):
            totals[i] += float(m.get(f"device_count_{name}", 0.0))
    return totals


def stored_round_config(
    settings: AggregatorSettings,
    *,
    run: int,
    round_no: int,
    total_rounds: int,
    attempt: int,
    client: fl.RoundConfig,
    model_sha256: str,
    n_selected: int,
    population: int,
    target: int,
    grace_fraction: float = 0.5,
    strategy_params: dict[str, float] | None = None,
    invitation: fl.Invitation | None = None,
) -> dict[str, Any]:
    """The round's config as stored with it (and announced from it after a restart).

    It keeps the strategy's parameters, so the round is aggregated as it was opened even if the
    operator changes them meanwhile. With central DP it also keeps the sampling rate ``dp_q`` and noise multiplier ``dp_z`` the
    privacy accountant needs for later rounds.
    """
    cfg: dict[str, Any] = {
        "run": run,
        "round_no": round_no,
        "total_rounds": total_rounds,
        "attempt": attempt,
        "client": client.to_dict(),
        "model_sha256": model_sha256,
        "population": population,
        "target": target,
        "grace_fraction": grace_fraction,
        "strategy_params": dict(strategy_params or {}),
    }
    if invitation is not None:  # the rule the announcement carries (who is invited)
        cfg["invitation"] = invitation.to_dict()
    if settings.dp_clip > 0:
        cfg.update(dp_q=min(1.0, n_selected / max(1, population)), dp_z=settings.dp_noise)
    return cfg
