"""Round announcements: the retained ``round/current`` message and its hyper-parameters.

Part of the federated wire API re-exported by :mod:`common.fl_protocol`. The selected client
ids travel in the envelope blob (there can be thousands of them); the decoder takes untrusted
bytes and raises :class:`~common.protocol.ProtocolError` (only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.fl_tensors import COMPRESSIONS, MAX_MESSAGE, require_field, require_number
from common.protocol import ProtocolError, check_client_id, decode, encode

__all__ = [
    "MODES",
    "RoundAnnouncement",
    "RoundConfig",
    "decode_round",
    "encode_round",
    "make_round_id",
]

MODES = ("head", "full")


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
    """

    mode: str = "head"
    local_epochs: int = 2
    lr: float = 0.1
    batch_size: int = 64
    mu: float = 0.0
    clip_norm: float = 0.0
    compression: str = "int8"
    max_examples: int = 20000

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {f: getattr(self, f) for f in self.__slots__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundConfig:
        """Parse and range-check (raises ProtocolError)."""
        mode = require_field(d, "mode", str)
        comp = require_field(d, "compression", str)
        if mode not in MODES or comp not in COMPRESSIONS:
            raise ProtocolError(f"bad mode/compression {mode!r}/{comp!r}")
        return cls(
            mode=mode,
            local_epochs=int(require_number(d, "local_epochs", 1, 1000)),
            lr=require_number(d, "lr", 0.0, 100.0),
            batch_size=int(require_number(d, "batch_size", 1, 1_000_000)),
            mu=require_number(d, "mu", 0.0, 1e6),
            clip_norm=require_number(d, "clip_norm", 0.0, 1e12),
            compression=comp,
            max_examples=int(require_number(d, "max_examples", 1, 1e9)),
        )


@dataclass(frozen=True, slots=True)
class RoundAnnouncement:
    """The retained ``round/current`` message.

    Attributes
    ----------
    round_id : str
        Unique per attempt: ``{run_id}-r{round_no:04d}-a{attempt}``.
    run_id : str
        The training run (one press of "start training").
    round_no, total_rounds, attempt : int
        1-based round number, planned rounds, retry counter (0 = first try).
    model_version, model_sha256 : str
        Global model the clients start from (``model/{version}`` topic) and its blob hash.
    deadline_ns, issued_ns : int
        Reporting deadline and issue time, ns since the Unix epoch.
    selected : tuple of str
        Client ids asked to train this round.
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
    selected: tuple[str, ...]
    config: RoundConfig = field(default_factory=RoundConfig)


def make_round_id(run_id: str, round_no: int, attempt: int) -> str:
    """The id of one attempt of one round (safe as a topic level)."""
    return check_client_id(f"{run_id}-r{round_no:04d}-a{attempt}")


def encode_round(a: RoundAnnouncement) -> bytes:
    """Encode a round announcement; the selected ids go in the blob (they can be thousands)."""
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
        "config": a.config.to_dict(),
    }
    return encode("round", body, "\n".join(a.selected).encode())


def decode_round(payload: bytes) -> RoundAnnouncement:
    """Decode a round announcement (raises ProtocolError)."""
    env = decode(payload, MAX_MESSAGE)
    if env.kind != "round":
        raise ProtocolError(f"expected a 'round' payload, got {env.kind!r}")
    b = env.body
    try:
        selected = tuple(env.blob.decode().split("\n")) if env.blob else ()
    except UnicodeDecodeError as exc:
        raise ProtocolError("selected client list is not UTF-8") from exc
    for cid in selected:
        check_client_id(cid)
    cfg = require_field(b, "config", dict)
    round_no = require_field(b, "round_no", int)
    total = require_field(b, "total_rounds", int)
    if not (1 <= round_no <= total):
        raise ProtocolError(f"round {round_no} of {total} out of range")
    return RoundAnnouncement(
        round_id=check_client_id(require_field(b, "round_id", str)),
        run_id=require_field(b, "run_id", str),
        round_no=round_no,
        total_rounds=total,
        attempt=require_field(b, "attempt", int),
        model_version=check_client_id(require_field(b, "model_version", str)),
        model_sha256=require_field(b, "model_sha256", str),
        deadline_ns=require_field(b, "deadline_ns", int),
        issued_ns=require_field(b, "issued_ns", int),
        selected=selected,
        config=RoundConfig.from_dict(cfg),
    )
