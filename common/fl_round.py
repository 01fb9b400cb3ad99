"""Round announcements: the retained ``round/current`` message and its hyper-parameters.

Part of the federated wire API re-exported by :mod:`common.fl_protocol`. Who is invited travels
as a rule (:class:`~common.fl_invitation.Invitation`), so the announcement's size does not grow
with the cohort; the decoder takes untrusted bytes and raises
:class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.fl_invitation import Invitation
from common.fl_tensors import COMPRESSIONS
from common.protocol import ProtocolError, check_client_id, decode, encode
from common.wire_fields import (
    MAX_NS,
    int_field,
    list_field,
    number_field,
    require_field,
    text_field,
)

MAX_ANNOUNCEMENT = 16_384  # bytes; an announcement is a few hundred, whatever the cohort
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ROUND_ID = re.compile(r"^[0-9]{1,18}$")

__all__ = [
    "MODES",
    "RoundAnnouncement",
    "RoundConfig",
    "decode_round",
    "encode_round",
]

MODES = ("head", "full")
OPTIMIZERS = ("adam", "sgd")
NORMS = ("batch", "frozen")
MAX_CLASSES = 64  # class weights a round may carry
MAX_CLASS_WEIGHT = 1e4


@dataclass(frozen=True, slots=True)
class RoundConfig:
    """Hyper-parameters of one round; they travel with the announcement.

    Attributes
    ----------
    mode : str
        ``head`` (numpy softmax head on frozen int8 embeddings) or ``full`` (torch).
    local_epochs : int
        Passes over the local labelled examples.
    lr : float
        Local learning rate.
    batch_size : int
        Local mini-batch size.
    mu : float
        FedProx proximal coefficient (0 = plain FedAvg local objective).
    clip_norm : float
        Client-side L2 bound on the update (0 = none); the aggregator also enforces its own.
    compression : str
        ``int8`` (per-tensor scale) or ``none``.
    max_examples : int
        Cap on local examples per round (bounds device time).
    optimizer : str
        Local optimiser of whole-model training: ``adam`` or ``sgd``. Adam's steps do not
        depend on the loss's scale, so class weights change nothing on a device whose
        examples are all of one class; plain SGD keeps them (cross-device FL, Reddi et al.
        2021: client SGD, adaptivity on the server).
    norm : str
        Batch normalisation in whole-model training: ``batch`` (statistics of each local
        batch, running statistics updated) or ``frozen`` (the release's running statistics,
        left unchanged: a device holding one recording would otherwise normalise by that
        recording alone and average statistics that describe no population; "FixBN",
        Zhong et al. 2023).
    class_weights : tuple of float
        Loss weight per class (model card order) for whole-model training, from the label
        counts the devices reported (``class_balance``); empty = each device weights by its
        own counts (which does nothing on a device whose examples are all of one class).
    """

    mode: str = "head"
    local_epochs: int = 2
    lr: float = 0.1
    batch_size: int = 64
    mu: float = 0.0
    clip_norm: float = 0.0
    compression: str = "int8"
    max_examples: int = 20000
    optimizer: str = "adam"
    norm: str = "batch"
    class_weights: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        out = {f: getattr(self, f) for f in self.__slots__}
        out["class_weights"] = list(self.class_weights)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundConfig:
        """Parse and range-check (raises ProtocolError)."""
        mode = text_field(d, "mode", 16)
        comp = text_field(d, "compression", 16)
        if mode not in MODES or comp not in COMPRESSIONS:
            raise ProtocolError(f"bad mode/compression {mode!r}/{comp!r}")
        return cls(
            mode=mode,
            local_epochs=int(number_field(d, "local_epochs", 1, 1000)),
            lr=number_field(d, "lr", 0.0, 100.0),
            batch_size=int(number_field(d, "batch_size", 1, 1_000_000)),
            mu=number_field(d, "mu", 0.0, 1e6),
            clip_norm=number_field(d, "clip_norm", 0.0, 1e12),
            compression=comp,
            max_examples=int(number_field(d, "max_examples", 1, 1e9)),
            optimizer=_choice(d, "optimizer", OPTIMIZERS, "adam"),
            norm=_choice(d, "norm", NORMS, "batch"),
            class_weights=tuple(
                number_field({"w": w}, "w", 0.0, MAX_CLASS_WEIGHT)
                for w in list_field(d, "class_weights", MAX_CLASSES, default=[])
            ),
        )


def _choice(d: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    """An optional text field that must be one of ``choices`` (absent: ``default``)."""
    value = text_field(d, key, 16) if key in d else default
    if value not in choices:
        raise ProtocolError(f"bad {key} {value!r}: one of {', '.join(choices)}")
    return value


@dataclass(frozen=True, slots=True)
class RoundAnnouncement:
    """The retained ``round/current`` message.

    Attributes
    ----------
    round_id : str
        The store's id of this attempt of the round (a decimal, unique per attempt).
    run_id : str
        The training run (one press of "start training").
    round_no, total_rounds, attempt : int
        1-based round number, planned rounds, retry counter (0 = first try).
    model_version, model_sha256 : str
        Global model the clients start from (``model/{version}`` topic) and its blob hash.
    deadline_ns, issued_ns : int
        Reporting deadline and issue time, ns since the Unix epoch.
    invitation : Invitation
        Which clients are asked to train this round (:meth:`invites`).
    config : RoundConfig
        Local training hyper-parameters.
    """

    round_id: str
    run_id: str
    round_no: int
    total_rounds: int
    attempt: int
    model_version: str
    model_sha256: str
    deadline_ns: int
    issued_ns: int
    invitation: Invitation
    config: RoundConfig = field(default_factory=RoundConfig)

    def invites(self, client_id: str) -> bool:
        """Whether ``client_id`` is asked to train this round."""
        return self.invitation.invites(client_id)


def encode_round(a: RoundAnnouncement) -> bytes:
    """Encode a round announcement (a few hundred bytes, whatever the cohort)."""
    body = {
        "round_id": a.round_id,
        "run_id": a.run_id,
        "round_no": a.round_no,
        "total_rounds": a.total_rounds,
        "attempt": a.attempt,
        "model_version": a.model_version,
        "model_sha256": a.model_sha256,
        "deadline_ns": a.deadline_ns,
        "issued_ns": a.issued_ns,
        "invitation": a.invitation.to_dict(),
        "config": a.config.to_dict(),
    }
    return encode("round", body)


def decode_round(payload: bytes) -> RoundAnnouncement:
    """Decode a round announcement (raises ProtocolError)."""
    env = decode(payload, MAX_ANNOUNCEMENT)
    if env.kind != "round":
        raise ProtocolError(f"expected a 'round' payload, got {env.kind!r}")
    b = env.body
    invitation = Invitation.from_dict(require_field(b, "invitation", dict))
    cfg = require_field(b, "config", dict)
    total = int_field(b, "total_rounds", 1, 1_000_000)
    round_no = int_field(b, "round_no", 1, total)
    return RoundAnnouncement(
        round_id=text_field(b, "round_id", 18, _ROUND_ID),
        run_id=check_client_id(text_field(b, "run_id", 64)),
        round_no=round_no,
        total_rounds=total,
        attempt=int_field(b, "attempt", 0, 1_000_000),
        model_version=check_client_id(text_field(b, "model_version", 64)),
        model_sha256=text_field(b, "model_sha256", 64, _SHA256),
        deadline_ns=int_field(b, "deadline_ns", 0, MAX_NS),
        issued_ns=int_field(b, "issued_ns", 0, MAX_NS),
        invitation=invitation,
        config=RoundConfig.from_dict(cfg),
    )
