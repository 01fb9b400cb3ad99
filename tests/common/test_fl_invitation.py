"""Invitations as a rule (seed + rank threshold): exact cohorts, constant size, hostile input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from common import fl_protocol as fl
from common.fl_invitation import RANK_LIMIT, Invitation, rank
from common.protocol import ProtocolError, decode, encode


def _announcement(invitation: Invitation) -> fl.RoundAnnouncement:
    return fl.RoundAnnouncement(
        "7", "g3", 2, 10, 0, "v4", "ab" * 32, 2 * 10**18, 10**18, invitation
    )


@pytest.mark.parametrize(("n", "k"), [(1, 1), (20, 8), (1000, 130), (1000, 1000), (50, 0)])
def test_the_rule_invites_exactly_the_drawn_clients(n: int, k: int) -> None:
    # Prepare
    eligible = [f"dev-{i:05d}" for i in range(n)]
    # Act
    rule, chosen = Invitation.draw("g1/3/0/9f1c", eligible, k)
    # Assert
    assert len(chosen) == k == sum(rule.invites(c) for c in eligible)
    assert {c for c in eligible if rule.invites(c)} == set(chosen)


def test_the_announcement_does_not_grow_with_the_cohort() -> None:
    # Prepare: the old announcement listed every invited id (100k ids ~ 1 MB to every device)
    small = Invitation.draw("s", [f"d{i}" for i in range(10)], 10)[0]
    large = Invitation.draw("s", [f"d{i}" for i in range(100_000)], 100_000)[0]
    # Act
    sizes = [len(fl.encode_round(_announcement(r))) for r in (small, large)]
    # Assert
    assert max(sizes) < 1024 and abs(sizes[0] - sizes[1]) <= 16


def test_every_client_is_equally_likely_to_be_invited() -> None:
    # Prepare: 200 rounds drawing 10 of 40 clients
    clients = [f"c{i}" for i in range(40)]
    # Act
    counts = np.zeros(len(clients))
    for r in range(200):
        rule, _ = Invitation.draw(f"g1/{r}/0/00", clients, 10)
        counts += [rule.invites(c) for c in clients]
    # Assert: expected 50 each; binomial sd ~6.1, so all within 50 +- 5 sd
    assert counts.sum() == 2000 and counts.min() > 19 and counts.max() < 81


def test_the_draw_depends_on_the_seed_not_the_order() -> None:
    clients = [f"c{i}" for i in range(30)]
    a = Invitation.draw("g1/1/0/aa", clients, 5)
    assert a == Invitation.draw("g1/1/0/aa", list(reversed(clients)), 5)
    assert a[1] != Invitation.draw("g1/1/0/ab", clients, 5)[1]


def test_covering_is_the_tightest_rule() -> None:
    rule = Invitation.covering("s", ["a", "b"])
    assert rule.below == max(rank("s", "a"), rank("s", "b")) + 1
    assert Invitation.covering("s", []).below == 0


@pytest.mark.parametrize(
    "field",
    [
        {"seed": "s", "below": RANK_LIMIT + 1},
        {"seed": "s", "below": -1},
        {"seed": "s", "below": 1.5},
        {"seed": "s", "below": True},
        {"seed": "", "below": 3},
        {"seed": "a b", "below": 3},
        {"seed": "x" * 65, "below": 3},
        {"seed": 7, "below": 3},
        {"below": 3},
        [],
        "s",
    ],
)
def test_a_hostile_invitation_is_a_protocol_error(field: object) -> None:
    # Prepare: a valid announcement whose invitation field is replaced
    body = dict(decode(fl.encode_round(_announcement(Invitation("s", 5)))).body)
    body["invitation"] = field
    # Act / Assert
    with pytest.raises(ProtocolError):
        fl.decode_round(encode("round", body))


def test_an_announcement_listing_ids_is_refused() -> None:
    # the old wire form: ids in the blob, no rule
    body = dataclasses.asdict(fl.RoundConfig())
    old = encode("round", {"round_id": "7", "config": body}, b"dev-1\ndev-2")
    with pytest.raises(ProtocolError):
        fl.decode_round(old)


def test_an_oversized_announcement_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        fl.decode_round(b"\0" * 20_000)
