"""Pure round logic: client selection, quorum, when a round closes or fails, log lines.

No clock, network or store here: the engine passes ``now`` (Unix seconds) and the facts it
knows (who reported, who went offline), and gets back a decision. Failed clients are data: they
are counted, never raised.

**The closing rule** (rounds never idle on a drop-out): a round asks for ``target`` updates and
invites ``overselect`` more clients than that (devices drop out). It closes

1. as soon as ``target`` valid updates are in;
2. when nobody else can report (all answered, dropped out or were refused) and the quorum
   ``k`` is met;
3. when the quorum is met and a grace of ``grace_fraction`` times the time the quorum took has
   passed since (stragglers are waited for a little, not until the deadline);
4. at the deadline with the quorum.

It fails at the deadline without the quorum, or as soon as the quorum is out of reach.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from common.fl_invitation import Invitation


@dataclass(frozen=True)
class RoundPolicy:
    """How rounds select clients and when they close.

    Attributes
    ----------
    fraction : float
        Share of the eligible online clients whose updates a round asks for, in (0, 1].
    min_clients : int
        Fewest clients a round may be opened with (otherwise wait).
    quorum_fraction : float
        k of n: share of the target whose valid updates let the round close.
    min_quorum : int
        Lower bound on k.
    deadline_s : float
        Reporting window, s.
    max_attempts : int
        Tries per round number before the run is stopped.
    overselect : float
        Extra share of clients invited beyond the target (0.3: 30 % more), so drop-outs do not
        keep the round waiting.
    grace_fraction : float
        Once the quorum is in, stragglers are waited for this share of the time the quorum
        took, then the round closes.
    """

    fraction: float = 1.0
    min_clients: int = 2
    quorum_fraction: float = 0.5
    min_quorum: int = 1
    deadline_s: float = 60.0
    max_attempts: int = 3
    overselect: float = 0.3
    grace_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1 or not 0 < self.quorum_fraction <= 1:
            raise ValueError("fraction and quorum_fraction must be in (0, 1]")
        if self.min_clients < 1 or self.min_quorum < 1 or self.deadline_s <= 0:
            raise ValueError("min_clients, min_quorum and deadline_s must be positive")
        if self.overselect < 0 or self.grace_fraction < 0:
            raise ValueError("overselect and grace_fraction must be >= 0")

    def target(self, n_eligible: int) -> int:
        """Updates a round asks for: ``max(min_clients, ceil(fraction * n))``, at most n."""
        return min(n_eligible, max(self.min_clients, math.ceil(self.fraction * n_eligible)))

    def quorum(self, target: int) -> int:
        """k for a round asking for ``target`` updates (never more than the target)."""
        return min(target, max(self.min_quorum, math.ceil(self.quorum_fraction * target)))


@dataclass(frozen=True)
class Selection:
    """Who is invited to a round and how many updates it asks for (``target`` <= invited).

    ``invitation`` is the rule the announcement carries: exactly ``clients`` among the eligible
    satisfy it (:class:`common.fl_invitation.Invitation`).
    """

    clients: tuple[str, ...]
    target: int
    invitation: Invitation


def select_clients(eligible: Collection[str], policy: RoundPolicy, seed: str) -> Selection | None:
    """Invite ``ceil(target * (1 + overselect))`` of the eligible clients (all, if fewer).

    The invited are those of lowest rank under ``seed`` (uniform, deterministic for a seed).
    Returns None when fewer than ``min_clients`` are eligible.
    """
    pool = set(eligible)
    if len(pool) < policy.min_clients:
        return None
    target = policy.target(len(pool))
    k = min(len(pool), math.ceil(target * (1 + policy.overselect)))
    invitation, clients = Invitation.draw(seed, pool, k)
    return Selection(clients, target, invitation)


class Decision(StrEnum):
    """What to do with an open round now."""

    WAIT = "wait"
    CLOSE = "close"  # aggregate what was received
    FAIL = "fail"  # no quorum by the deadline, or out of reach


@dataclass(frozen=True)
class RoundProgress:
    """Facts about an open round at one instant, as counts (a round may invite 100,000
    devices; :meth:`of` builds them from sets).

    Attributes
    ----------
    selected : int
        Invited clients.
    reported : int
        Clients with an accepted update.
    offline : int
        Selected clients known to be offline now (Last Will / status), without an update.
    quorum : int
        k.
    deadline : float
        Unix seconds.
    refused : int
        Selected clients whose update was rejected, without an accepted one (they will not
        send another).
    target : int, optional
        Updates the round asks for (default: every selected client).
    opened_at : float, optional
        Unix seconds the round opened.
    quorum_at : float, optional
        Unix seconds the k-th accepted update arrived (None: not yet).
    grace_fraction : float
        See :class:`RoundPolicy`.
    """

    selected: int
    reported: int
    offline: int
    quorum: int
    deadline: float
    refused: int = 0
    target: int | None = None
    opened_at: float | None = None
    quorum_at: float | None = None
    grace_fraction: float = 0.5

    @classmethod
    def of(
        cls,
        selected: Collection[str],
        reported: Collection[str],
        offline: Collection[str],
        quorum: int,
        deadline: float,
        refused: Collection[str] = (),
        **kw: Any,
    ) -> RoundProgress:
        """Progress from the sets of invited, reporting, offline and refused clients."""
        sel, rep = set(selected), set(reported)
        off = (set(offline) & sel) - rep
        ref = (set(refused) & sel) - rep - off
        return cls(len(sel), len(rep), len(off), quorum, deadline, len(ref), **kw)

    @property
    def failures(self) -> int:
        """Selected clients that dropped out (offline without an update)."""
        return self.offline

    @property
    def outstanding(self) -> int:
        """Selected clients that may still report."""
        return max(0, self.selected - self.reported - self.offline - self.refused)


def decide(progress: RoundProgress, now: float) -> Decision:
    """The closing rule of the module docstring; ``now`` in Unix s like ``deadline``."""
    got = progress.reported
    target = progress.target if progress.target is not None else progress.selected
    if got >= max(1, target):
        return Decision.CLOSE
    if progress.outstanding == 0 or now >= progress.deadline:
        return Decision.CLOSE if got >= progress.quorum else Decision.FAIL
    if got + progress.outstanding < progress.quorum:
        return Decision.FAIL  # the quorum is out of reach: no pointless wait
    if got >= progress.quorum and progress.quorum_at is not None and progress.opened_at is not None:
        grace = progress.grace_fraction * max(0.0, progress.quorum_at - progress.opened_at)
        if now >= progress.quorum_at + grace:
            return Decision.CLOSE
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
