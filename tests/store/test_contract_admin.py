"""Contract: clinician users, patient tokens, training control and audit log."""

from __future__ import annotations

import pytest

from store import ConflictError, DesiredTraining, Store
from tests.store.conftest import T0, FakeClock


def test_users(store: Store) -> None:
    # Prepare
    store.create_user("zoe", "scrypt:1$abc", role="admin")
    store.create_user("adam", "scrypt:1$def")

    # Execute
    changed = store.set_user_password("adam", "scrypt:1$new")
    disabled = store.set_user_active("zoe", False)

    # Assert
    assert changed and disabled
    adam = store.get_user("adam")
    assert adam is not None and adam.password_hash == "scrypt:1$new" and adam.role == "clinician"
    assert adam.active and adam.created_at == T0
    assert [(u.username, u.active) for u in store.list_users()] == [("adam", True), ("zoe", False)]
    assert store.get_user("eve") is None
    assert not store.set_user_password("eve", "x") and not store.set_user_active("eve", True)
    with pytest.raises(ConflictError):
        store.create_user("adam", "other")


def test_patient_tokens(store: Store, clock: FakeClock) -> None:
    # Prepare
    tok = store.create_patient_token("sha256:aa", "p1", expires_at=T0 + 3600, label="phone")
    clock.advance(1)
    store.create_patient_token("sha256:bb", "p1", expires_at=None)

    # Execute
    revoked = store.revoke_patient_token("sha256:aa")

    # Assert
    assert revoked and not store.revoke_patient_token("sha256:zz")
    got = store.get_patient_token("sha256:aa")
    assert got is not None and got.revoked and not got.is_valid(T0)
    assert tok.is_valid(T0) and not tok.is_valid(T0 + 3600)
    forever = store.get_patient_token("sha256:bb")
    assert forever is not None and forever.is_valid(T0 + 1e9)
    assert [t.token_hash for t in store.list_patient_tokens("p1")] == ["sha256:bb", "sha256:aa"]
    assert store.get_patient_token("sha256:zz") is None
    with pytest.raises(ConflictError):
        store.create_patient_token("sha256:bb", "p2", expires_at=None)


def test_training_control_generations(store: Store, clock: FakeClock) -> None:
    # Prepare
    initial = store.get_training_control()

    # Execute
    run = store.set_training_control(
        desired=DesiredTraining.RUNNING, task="beat", strategy="fedprox", dataset="mitdb",
        rounds=20, config={"mu": 0.01}, updated_by="dr_a",
    )  # fmt: skip
    clock.advance(5)
    stop = store.set_training_control(
        desired=DesiredTraining.STOPPED, task="beat", strategy="fedprox"
    )

    # Assert
    assert (initial.desired, initial.generation) == (DesiredTraining.STOPPED, 0)
    assert (run.generation, run.rounds, run.config, run.updated_by) == (1, 20, {"mu": 0.01}, "dr_a")
    assert (stop.generation, stop.desired, stop.updated_at) == (2, DesiredTraining.STOPPED, T0 + 5)
    assert store.get_training_control() == stop
    with pytest.raises(ValueError):
        store.set_training_control(
            desired=DesiredTraining.RUNNING, task="b", strategy="s", rounds=-1
        )


def test_audit_log(store: Store, clock: FakeClock) -> None:
    # Prepare
    store.audit("dr_a", "training.start", target="beat", details={"rounds": 20})
    clock.advance(1)
    store.audit("admin", "user.create", target="dr_b")
    store.audit("dr_a", "label.add", target="p1")

    # Execute
    entries = store.list_audit()

    # Assert
    assert [e.action for e in entries] == ["label.add", "user.create", "training.start"]
    assert entries[-1].details == {"rounds": 20} and entries[-1].at == T0
    assert [e.action for e in store.list_audit(actor="dr_a")] == ["label.add", "training.start"]
    assert [e.actor for e in store.list_audit(action="user.create")] == ["admin"]
    assert len(store.list_audit(limit=1)) == 1
