"""Contract: session generations of clinician users and patient access codes.

The web keeps a generation in each session cookie and refuses a cookie whose generation is older
than the store's, so that log-out and a password change end every copy of a session.
"""

from __future__ import annotations

from store import Store


def test_user_session_generation_is_bumped_by_logout_and_password_change(store: Store) -> None:
    # Prepare
    store.create_user("adam", "scrypt:1$abc")
    fresh = store.get_user("adam")

    # Execute
    after_logout = store.bump_user_session_generation("adam")
    store.set_user_password("adam", "scrypt:1$new")
    after_password = store.get_user("adam")

    # Assert
    assert fresh is not None and fresh.session_generation == 0
    assert after_logout == 1
    assert after_password is not None and after_password.session_generation == 2
    assert store.bump_user_session_generation("nobody") is None
    assert [u.session_generation for u in store.list_users()] == [2]


def test_patient_token_session_generation(store: Store) -> None:
    # Prepare
    store.create_patient_token("sha256:aa", "p1", expires_at=None)
    store.create_patient_token("sha256:bb", "p1", expires_at=None)

    # Execute
    bumped = store.bump_token_session_generation("sha256:aa")

    # Assert
    aa, bb = store.get_patient_token("sha256:aa"), store.get_patient_token("sha256:bb")
    assert bumped == 1 and aa is not None and aa.session_generation == 1
    assert bb is not None and bb.session_generation == 0  # other codes keep their sessions
    assert store.bump_token_session_generation("sha256:zz") is None
    assert {t.token_hash: t.session_generation for t in store.list_patient_tokens("p1")} == {
        "sha256:aa": 1,
        "sha256:bb": 0,
    }
