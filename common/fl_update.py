"""Client updates: one device's delta for one round, on ``update/{client_id}``.

Part of the federated wire API re-exported by :mod:`common.fl_protocol`. The delta travels in
the envelope blob, compressed as the update says; the decoder takes untrusted bytes and raises
:class:`~common.protocol.ProtocolError` (only). ``update_id`` is deterministic, so a
redelivered update dedupes.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.fl_tensors import COMPRESSIONS, MAX_MESSAGE, Tensors, pack_tensors, unpack_tensors
from common.protocol import ProtocolError, check_client_id, decode, encode
from common.wire_fields import int_field, metrics_field, number_field, text_field

MAX_EXAMPLES = 10_000_000  # local examples a device may claim (the server caps weights lower)
_ROUND_ID = re.compile(r"^[0-9]{1,18}$")  # the store's round id: a positive 64-bit integer
_EVAL_COUNT = re.compile(r"eval_(tp|fp|fn)_([0-9]{1,4})")  # per class index

__all__ = [
    "ClientUpdate",
    "check_eval_counts",
    "decode_update",
    "encode_update",
    "update_id_for",
]


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """One client's contribution to one round.

    Attributes
    ----------
    round_id, client_id : str
        Which attempt and which device.
    base_version : str
        Model version the delta is relative to.
    n_examples : int
        Local labelled examples used (the FedAvg weight).
    delta : dict of str to ndarray float32
        ``local - global`` per tensor (dequantized on decode).
    compression : str
        How the delta travelled (``int8`` or ``none``).
    compression_error : float
        Relative L2 error the client measured for its compression (reported, bounded).
    metrics : dict of str to float
        Local training metrics (``loss``, ``accuracy``, ``train_s``...).
    """

    round_id: str
    client_id: str
    base_version: str
    n_examples: int
    delta: Tensors
    compression: str = "int8"
    compression_error: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def update_id(self) -> str:
        """Deterministic id: a redelivered or re-sent update for the same round dedupes."""
        return update_id_for(self.round_id, self.client_id)


def update_id_for(round_id: str, client_id: str) -> str:
    """``sha256(round_id|client_id)`` truncated to 32 hex digits."""
    return hashlib.sha256(f"{round_id}|{client_id}".encode()).hexdigest()[:32]


def encode_update(u: ClientUpdate) -> bytes:
    """Encode an update, compressing the delta as ``u.compression`` says."""
    specs, blob = pack_tensors(u.delta, u.compression)
    body = {
        "round_id": u.round_id,
        "client_id": u.client_id,
        "update_id": u.update_id,
        "base_version": u.base_version,
        "n_examples": u.n_examples,
        "compression": u.compression,
        "compression_error": u.compression_error,
        "metrics": {k: float(v) for k, v in u.metrics.items() if math.isfinite(v)},
        "tensors": specs,
    }
    return encode("update", body, blob)


def decode_update(payload: bytes, max_size: int = MAX_MESSAGE) -> ClientUpdate:
    """Decode an update (raises ProtocolError only).

    Every body field is bounded: ``round_id`` a decimal of at most 18 digits, ``n_examples`` in
    [0, :data:`MAX_EXAMPLES`], metrics finite. Tensor values are not checked for finiteness
    here: that is the aggregator's validation policy (so poisoned updates are counted).
    """
    env = decode(payload, max_size)
    if env.kind != "update":
        raise ProtocolError(f"expected an 'update' payload, got {env.kind!r}")
    b = env.body
    u = ClientUpdate(
        round_id=text_field(b, "round_id", 18, _ROUND_ID),
        client_id=check_client_id(text_field(b, "client_id", 64)),
        base_version=check_client_id(text_field(b, "base_version", 64)),
        n_examples=int_field(b, "n_examples", 0, MAX_EXAMPLES),
        delta=unpack_tensors(b.get("tensors"), env.blob),
        compression=text_field(b, "compression", 16),
        compression_error=number_field(b, "compression_error", 0.0, 1e6),
        metrics=metrics_field(b, "metrics"),
    )
    if b.get("update_id") != u.update_id:
        raise ProtocolError("update_id does not match round_id and client_id")
    if u.compression not in COMPRESSIONS:
        raise ProtocolError(f"unknown compression {u.compression!r}")
    check_eval_counts(u.metrics)
    return u


def check_eval_counts(metrics: Mapping[str, float]) -> None:
    """Check that a device's evaluation before training is a confusion matrix.

    The aggregator pools the counts into the device figures and the run's class weights, so
    one device's negative or inflated counts would push pooled scores out of [0, 1] and
    weights past what every device accepts.

    Parameters
    ----------
    metrics : mapping of str to float
        An update's metrics; the evaluation is ``eval_n`` and ``eval_tp_<i>``,
        ``eval_fp_<i>``, ``eval_fn_<i>`` per class index ``i`` (``edge_agent.federated_eval``,
        counts of labelled beats); other keys are ignored.

    Raises
    ------
    ProtocolError
        A count that is not whole or not in [0, :data:`MAX_EXAMPLES`], or counts whose
        ``tp + fn`` or ``tp + fp`` (summed over classes) is not ``eval_n``.
    """
    sums = {"tp": 0.0, "fp": 0.0, "fn": 0.0}
    for key, v in metrics.items():
        m = _EVAL_COUNT.fullmatch(key)
        if m is None and key != "eval_n":
            continue
        if not (0 <= v <= MAX_EXAMPLES and v == int(v)):
            raise ProtocolError(f"metric {key!r} = {v!r} is not a count")
        if m is not None:
            sums[m[1]] += v
    n = metrics.get("eval_n")
    if n is None and not any(_EVAL_COUNT.fullmatch(k) for k in metrics):
        return  # no evaluation reported
    labelled, predicted = sums["tp"] + sums["fn"], sums["tp"] + sums["fp"]
    if n is None or labelled != n or predicted != n:
        raise ProtocolError(
            f"evaluation counts do not add up: eval_n {n}, tp + fn {labelled}, tp + fp {predicted}"
        )
