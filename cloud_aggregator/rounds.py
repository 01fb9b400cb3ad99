"""Pure round logic: client selection, quorum, when a round closes or fails, log lines.

No clock, network or store here: the service passes ``now`` (Unix seconds) and the facts it
knows (who reported, who went offline), and gets back a decision. Failed clients are data: they
are counted, never raised.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class RoundPolicy:
    """How rounds select clients and when they close.

    Attributes
    ----------
    fraction : float
        Share of the eligible online clients invited per round, in (0, 1].
    min_clients : int
        Fewest clients a round may be opened with (otherwise wait).
    quorum_fraction : float
        k of n: share of the selected clients whose valid updates close the round.
    min_quorum : int
        Lower bound on k.
    deadline_s : float
        Reporting window, s.
    max_attempts : int
        Tries per round number before the run is stopped.
    """

    fraction: float = 1.0
    min_clients: int = 2
    quorum_fraction: float = 0.5
    min_quorum: int = 1
    deadline_s: float = 60.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1 or not 0 < self.quorum_fraction <= 1:
            raise ValueError("fraction and quorum_fraction must be in (0, 1]")
        if self.min_clients < 1 or self.min_quorum < 1 or self.deadline_s <= 0:
            raise ValueError("min_clients, min_quorum and deadline_s must be positive")

    def quorum(self, n_selected: int) -> int:
        """k for ``n_selected`` invited clients (never more than n)."""
        return min(n_selected, max(self.min_quorum, math.ceil(self.quorum_fraction * n_selected)))


def select_clients(
    eligible: Collection[str], policy: RoundPolicy, seed: str
) -> tuple[str, ...] | None:
    """Sample ``max(min_clients, ceil(fraction * n))`` of the eligible clients.

    Deterministic for a given seed (run, round, attempt) so a restarted aggregator would pick
    the same clients. Returns None when fewer than ``min_clients`` are eligible.
    """
    pool = sorted(set(eligible))
    if len(pool) < policy.min_clients:
        return None
    k = min(len(pool), max(policy.min_clients, math.ceil(policy.fraction * len(pool))))
    rng = random.Random(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))  # noqa: S311 - not crypto
    return tuple(sorted(rng.sample(pool, k)))


class Decision(StrEnum):
    """What to do with an open round now."""

    WAIT = "wait"
    CLOSE = "close"  # aggregate what was received
    FAIL = "fail"  # deadline passed without quorum


@dataclass(frozen=True)
class RoundProgress:
    """Facts about an open round at one instant.

    Attributes
    ----------
    selected : tuple of str
        Invited clients.
    reported : frozenset of str
        Clients with an accepted update.
    offline : frozenset of str
        Selected clients known to be offline now (Last Will / status), without an update.
    refused : frozenset of str
        Selected clients whose update was rejected (they will not send another one).
    quorum : int
        k.
    deadline : float
        Unix seconds.
    """

    selected: tuple[str, ...]
    reported: frozenset[str]
    offline: frozenset[str]
    quorum: int
    deadline: float
    refused: frozenset[str] = frozenset()

    @property
    def failures(self) -> int:
        """Selected clients that dropped out (offline without an update)."""
        return len(self.offline - self.reported)

    @property
    def outstanding(self) -> int:
        """Selected clients that may still report."""
        return len(set(self.selected) - self.reported - self.offline - self.refused)


def decide(progress: RoundProgress, now: float) -> Decision:
    """Close when everyone answered (or dropped out) with quorum, or at the deadline.

    ``now`` is in the clock of ``progress.deadline`` (Unix s).

    - all selected reported, or nobody else can report and quorum is met -> CLOSE;
    - deadline passed: CLOSE with quorum, FAIL without;
    - nobody else can report and quorum is out of reach -> FAIL early (no pointless wait).
    """
    got = len(progress.reported)
    if progress.outstanding == 0:
        return Decision.CLOSE if got >= progress.quorum else Decision.FAIL
    if now >= progress.deadline:
        return Decision.CLOSE if got >= progress.quorum else Decision.FAIL
    return Decision.WAIT


def round_log_line(
    round_no: int, total: int, received: int, failures: int, rejected: int = 0, extra: str = ""
) -> str:
    """``[ROUND 3/10] received 18 updates, 2 failures, 1 rejected`` (+ extra)."""
    line = f"[ROUND {round_no}/{total}] received {received} updates, {failures} failures"
    if rejected:
        line += f", {rejected} rejected"
    return f"{line} {extra}".rstrip()


def next_round_number(closed_round_nos: Sequence[int]) -> int:
    """The round number to run next in a run: one past the highest closed one."""
    return max(closed_round_nos, default=0) + 1
