"""Round selection, quorum and close/fail decisions (pure)."""

from __future__ import annotations

import pytest

from cloud_aggregator.rounds import (
    Decision,
    RoundPolicy,
    RoundProgress,
    decide,
    next_round_number,
    round_log_line,
    select_clients,
)

CLIENTS = [f"c{i:02d}" for i in range(20)]


def test_selection_is_deterministic_and_sized_by_fraction() -> None:
    policy = RoundPolicy(fraction=0.3, min_clients=2)
    a = select_clients(CLIENTS, policy, "run1/r1/a0")
    assert a == select_clients(list(reversed(CLIENTS)), policy, "run1/r1/a0")
    assert a is not None and a.target == 6 and len(a.clients) == 8  # 30 % over-selected
    assert set(a.clients) <= set(CLIENTS)
    assert select_clients(CLIENTS, policy, "run1/r1/a1") != a
    # the announced rule invites exactly the selected clients among the eligible
    assert [c for c in CLIENTS if a.invitation.invites(c)] == list(a.clients)


def test_selection_waits_for_the_minimum() -> None:
    assert select_clients(["a"], RoundPolicy(min_clients=2), "s") is None
    chosen = select_clients(["a", "b"], RoundPolicy(fraction=0.1, min_clients=2), "s")
    assert chosen is not None and (chosen.clients, chosen.target) == (("a", "b"), 2)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (10, 5), (22, 11), (3, 2)])
def test_quorum(n: int, k: int) -> None:
    assert RoundPolicy(quorum_fraction=0.5).quorum(n) == k


def _progress(reported: set[str], offline: set[str] = set()) -> RoundProgress:  # noqa: B006
    return RoundProgress.of(("a", "b", "c", "d"), reported, offline, 2, deadline=100.0)


@pytest.mark.parametrize(
    ("progress", "now", "decision"),
    [
        (_progress({"a"}), 50.0, Decision.WAIT),
        (_progress({"a", "b", "c", "d"}), 50.0, Decision.CLOSE),
        (_progress({"a", "b"}, {"c", "d"}), 50.0, Decision.CLOSE),  # the rest dropped out
        (_progress({"a"}, {"b", "c", "d"}), 50.0, Decision.FAIL),  # quorum out of reach
        (_progress({"a", "b"}), 100.0, Decision.CLOSE),  # deadline with quorum
        (_progress({"a"}), 100.0, Decision.FAIL),  # deadline without quorum
    ],
)
def test_decide(progress: RoundProgress, now: float, decision: Decision) -> None:
    assert decide(progress, now) == decision


def test_failures_count_offline_clients_without_update() -> None:
    assert _progress({"a", "b"}, {"b", "c"}).failures == 1


def test_log_line_and_next_round() -> None:
    assert round_log_line(3, 10, 18, 2) == "[ROUND 3/10] received 18 updates, 2 failures"
    assert (
        round_log_line(3, 10, 18, 2, 1, "eps=1.2")
        == "[ROUND 3/10] received 18 updates, 2 failures, 1 rejected eps=1.2"
    )
    assert next_round_number([]) == 1 and next_round_number([1, 2, 4]) == 5


def test_clients_with_refused_updates_are_not_waited_for() -> None:
    # Prepare: a and b reported; c's update was rejected; d dropped out
    progress = RoundProgress.of(("a", "b", "c", "d"), "ab", "d", 2, 100.0, "c")
    # Execute / Assert: nobody else can report, quorum met -> close before the deadline
    assert progress.outstanding == 0
    assert decide(progress, 10.0) == Decision.CLOSE


def _overselected(
    reported: str, offline: str = "", quorum_at: float | None = None
) -> RoundProgress:
    # 5 invited for a target of 4, quorum 2, opened at t=0, deadline at t=100
    return RoundProgress.of(("a", "b", "c", "d", "e"), reported, offline, 2,
                         100.0, target=4, opened_at=0.0, quorum_at=quorum_at,
                         grace_fraction=0.5)  # fmt: skip


@pytest.mark.parametrize(
    ("progress", "now", "decision"),
    [
        # the target is in: close without waiting for the over-selected fifth client
        (_overselected("abcd", quorum_at=10.0), 12.0, Decision.CLOSE),
        # quorum at t=10 after opening at t=0: stragglers get 5 s more, then close
        (_overselected("ab", quorum_at=10.0), 14.9, Decision.WAIT),
        (_overselected("ab", quorum_at=10.0), 15.0, Decision.CLOSE),
        # a drop-out no longer keeps the round waiting for its deadline
        (_overselected("abc", "d", quorum_at=8.0), 12.0, Decision.CLOSE),
        # the quorum is out of reach: fail at once
        (_overselected("a", "bcde"), 5.0, Decision.FAIL),
        (_overselected("a"), 50.0, Decision.WAIT),
        (_overselected("a"), 100.0, Decision.FAIL),
    ],
)
def test_closing_rule_with_target_and_grace(
    progress: RoundProgress, now: float, decision: Decision
) -> None:
    assert decide(progress, now) == decision
