"""Who a round invites, as a rule every device evaluates for itself.

The announcement carries a seed and a threshold instead of the invited ids, so its size does
not grow with the cohort (100,000 ids would be about 1 MB, retained and sent to every device).
A device's *rank* in a round is a hash of the round's seed and its id; the aggregator invites
the ``k`` eligible clients of lowest rank and announces ``below`` = the largest of their ranks
plus one. A device is invited when its rank is below that.

A device the aggregator did not count as eligible (it looked offline) may find itself below
the threshold too; the aggregator refuses its update as not selected, exactly as before (the
stored selection, not the rule, decides what counts). The seed is fresh per round, so nobody
can choose an id that is invited in advance.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.protocol import ProtocolError
from common.wire_fields import int_field, text_field

RANK_BITS = 53  # exact as a JSON number in every decoder
RANK_LIMIT = 1 << RANK_BITS
_SEED = re.compile(r"^[A-Za-z0-9/_.:-]{1,64}$")

__all__ = ["RANK_LIMIT", "Invitation", "rank"]


def rank(seed: str, client_id: str) -> int:
    """A client's place in a round's draw: 53 bits of SHA-256(seed, id), in ``[0, 2**53)``."""
    digest = hashlib.sha256(f"{seed}\n{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - RANK_BITS)


@dataclass(frozen=True, slots=True)
class Invitation:
    """The rule of one round: invited iff ``rank(seed, id) < below``.

    Attributes
    ----------
    seed : str
        The round's draw, 1-64 characters of ``[A-Za-z0-9/_.:-]``.
    below : int
        Rank threshold in ``[0, 2**53]`` (0 invites nobody, ``2**53`` everybody).
    """

    seed: str
    below: int

    def __post_init__(self) -> None:
        if not _SEED.match(self.seed) or not 0 <= self.below <= RANK_LIMIT:
            raise ValueError(f"bad invitation: seed {self.seed!r}, below {self.below}")

    def invites(self, client_id: str) -> bool:
        """Whether ``client_id`` is asked to train this round."""
        return rank(self.seed, client_id) < self.below

    @classmethod
    def draw(cls, seed: str, eligible: Iterable[str], k: int) -> tuple[Invitation, tuple[str, ...]]:
        """Invite the ``k`` eligible clients of lowest rank; the rule and the invited ids (sorted).

        Clients outside ``eligible`` whose rank is below the threshold are invited by the rule
        too (see the module note); inside ``eligible`` exactly ``min(k, n)`` are.
        """
        ranked = sorted((rank(seed, c), c) for c in set(eligible))[: max(0, k)]
        return cls.covering(seed, [c for _, c in ranked]), tuple(sorted(c for _, c in ranked))

    @classmethod
    def covering(cls, seed: str, clients: Iterable[str]) -> Invitation:
        """The tightest rule of ``seed`` that invites every one of ``clients``."""
        return cls(seed, max((rank(seed, c) + 1 for c in clients), default=0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (the announcement's ``invitation`` field)."""
        return {"seed": self.seed, "below": self.below}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Invitation:
        """Parse untrusted JSON (raises ProtocolError only)."""
        if not isinstance(d, Mapping):
            raise ProtocolError("field 'invitation' is not an object")
        seed = text_field(d, "seed", 64, _SEED)
        return cls(seed, int_field(d, "below", 0, RANK_LIMIT))
