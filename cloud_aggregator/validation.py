"""Pure validation of client updates before they may touch the global model.

A rejected update is data: :func:`validate_update` returns a reason string (``None`` if the
update is acceptable) and the service logs and counts it. Nothing here raises on bad input.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from cloud_aggregator.aggregation import l2_norm
from common.fl_protocol import ClientUpdate

HEAD_KEYS = frozenset({"head.weight", "head.bias"})  # the head of every beat/rhythm model


class Reject(StrEnum):
    """Why an update was refused."""

    SCHEMA = "schema"  # undecodable payload (envelope, hash, specs)
    WRONG_ROUND = "wrong_round"  # no open round with that id
    NOT_SELECTED = "not_selected"
    LATE = "late"  # arrived after the round closed or its deadline
    BASE_VERSION = "base_version"  # trained from another model version
    TENSORS = "tensors"  # missing or extra tensor names
    SHAPE = "shape"
    NON_FINITE = "non_finite"  # NaN or inf
    NORM = "norm"  # L2 norm above the bound
    EXAMPLES = "examples"  # n_examples out of range
    COMPRESSION = "compression"  # reported compression error above the bound
    INTERNAL = "internal"  # handling failed on a bug (logged with a traceback)


@dataclass(frozen=True)
class ValidationPolicy:
    """Bounds an update must respect.

    Attributes
    ----------
    norm_bound : float
        Largest accepted L2 norm of the delta (a poisoned or diverged update is larger).
    max_examples : int
        Largest credible local example count (bounds a client's FedAvg weight).
    max_compression_error : float
        Largest accepted relative L2 compression error the client reports.
    """

    norm_bound: float = 100.0
    max_examples: int = 1_000_000
    max_compression_error: float = 0.05


def validate_update(
    update: ClientUpdate,
    shapes: Mapping[str, tuple[int, ...]],
    base_version: str,
    policy: ValidationPolicy,
) -> Reject | None:
    """Check one decoded update against the global model's tensor shapes and the policy.

    Parameters
    ----------
    update : ClientUpdate
        The decoded update (round membership is checked by the round tracker).
    shapes : mapping of str to tuple of int
        Expected tensor names and shapes (those of the global model being trained).
    base_version : str
        Version the round announced.
    policy : ValidationPolicy
        Bounds.

    Returns
    -------
    Reject or None
        The first failed check, or None if the update may be aggregated.
    """
    if update.base_version != base_version:
        return Reject.BASE_VERSION
    keys = set(update.delta)
    # every tensor, or (a device without torch in a whole-model round) the head alone
    if keys != set(shapes) and not (keys == HEAD_KEYS and HEAD_KEYS < set(shapes)):
        return Reject.TENSORS
    for name, arr in update.delta.items():
        if tuple(arr.shape) != tuple(shapes[name]):
            return Reject.SHAPE
    norm = l2_norm(update.delta)  # one pass: non-finite when a value is (or it overflowed)
    if not math.isfinite(norm) and not all(
        bool(np.all(np.isfinite(a))) for a in update.delta.values()
    ):
        return Reject.NON_FINITE
    if not 0 < update.n_examples <= policy.max_examples:
        return Reject.EXAMPLES
    if not math.isfinite(norm) or norm > policy.norm_bound:
        return Reject.NORM
    if update.compression_error > policy.max_compression_error:
        return Reject.COMPRESSION
    return None


@dataclass
class RejectCounter:
    """Running counts of rejected updates by reason (for logs, metrics and the web)."""

    counts: Counter[str] = field(default_factory=Counter)
    # the service's thread and its update writer both count (a += is not atomic across threads)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, reason: Reject | str) -> None:
        """Count one reject."""
        with self._lock:
            self.counts[str(reason)] += 1

    @property
    def total(self) -> int:
        """All rejects."""
        with self._lock:  # a key added meanwhile would break the iteration
            return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        """JSON-compatible counts."""
        with self._lock:
            return dict(self.counts)
