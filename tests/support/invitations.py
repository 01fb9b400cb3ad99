"""Round invitations for tests: a rule inviting exactly the given devices of a known fleet."""

from __future__ import annotations

from collections.abc import Iterable

from common import fl_protocol as fl


def invite(selected: Iterable[str], fleet: Iterable[str] = ()) -> fl.Invitation:
    """A rule that invites every id in ``selected`` and none of the other ids in ``fleet``.

    The tightest rule covering ``selected`` for the first seed ``t0``, ``t1``, ... under which
    no other device of ``fleet`` ranks lower than the last invited one.
    """
    chosen = set(selected)
    others = set(fleet) - chosen
    for i in range(10_000):
        rule = fl.Invitation.covering(f"t{i}", chosen)
        if not any(rule.invites(c) for c in others):
            return rule
    raise AssertionError(f"no seed separates {sorted(chosen)} from {sorted(others)}")
