"""Web-side data in SQL: clinician users, patient tokens, training control, audit log."""

# SQL here interpolates only module constants (column lists, lock clauses, ORDER direction);
# every value is a bound ? parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from store.errors import ConflictError
from store.records import (
    AuditEntry,
    DesiredTraining,
    PatientToken,
    TrainingControl,
    User,
)
from store.sql_base import Row, SqlStoreBase, dumps, loads

_USER_COLS = "username, password_hash, role, active, created_at, session_generation"
_PT_COLS = "token_hash, client_id, label, created_at, expires_at, revoked, session_generation"
_CONTROL_COLS = (
    "desired, task, strategy, dataset, rounds, config, updated_by, updated_at, generation"
)
_AUDIT_COLS = "entry_id, created_at, actor, action, target, details"


def _user(r: Row) -> User:
    return User(str(r[0]), str(r[1]), str(r[2]), bool(r[3]), float(r[4]), int(r[5]))


def _token(r: Row) -> PatientToken:
    expires = None if r[4] is None else float(r[4])
    return PatientToken(
        str(r[0]), str(r[1]), str(r[2]), float(r[3]), expires, bool(r[5]), int(r[6])
    )


def _control(r: Row) -> TrainingControl:
    return TrainingControl(
        DesiredTraining(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), loads(r[5]),
        str(r[6]), float(r[7]), int(r[8]),
    )  # fmt: skip


def _audit(r: Row) -> AuditEntry:
    return AuditEntry(int(r[0]), float(r[1]), str(r[2]), str(r[3]), str(r[4]), loads(r[5]))


class AdminMixin(SqlStoreBase):
    """Users, tokens, training control and audit."""

    # -- users ---------------------------------------------------------------------------------
    def create_user(self, username: str, password_hash: str, *, role: str = "clinician") -> User:
        """New active user; ConflictError if the username exists."""
        if not username or not password_hash:
            raise ValueError("username and password hash must not be empty")
        with self._tx(write=True) as tx:
            tx.execute(
                f"INSERT INTO app_user ({_USER_COLS}) VALUES (?, ?, ?, 1, ?, 0)"
                f" ON CONFLICT DO NOTHING RETURNING {_USER_COLS}",
                (username, password_hash, role, self._clock()),
            )
            row = tx.one()
        if row is None:
            raise ConflictError(f"user {username!r} already exists")
        return _user(row)

    def get_user(self, username: str) -> User | None:
        """One user or None."""
        with self._tx(write=False) as tx:
            tx.execute(f"SELECT {_USER_COLS} FROM app_user WHERE username = ?", (username,))
            row = tx.one()
        return None if row is None else _user(row)

    def list_users(self) -> list[User]:
        """All users by username."""
        with self._tx(write=False) as tx:
            tx.execute(f"SELECT {_USER_COLS} FROM app_user ORDER BY username")
            return [_user(r) for r in tx.all()]

    def set_user_password(self, username: str, password_hash: str) -> bool:
        """Replace the hash and end the user's sessions (generation + 1); False if no such user."""
        if not password_hash:
            raise ValueError("password hash must not be empty")
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE app_user SET password_hash = ?, session_generation = session_generation + 1"
                " WHERE username = ?",
                (password_hash, username),
            )
            return tx.rowcount == 1

    def bump_user_session_generation(self, username: str) -> int | None:
        """End every session of the user (log-out): the new generation, None if no such user."""
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE app_user SET session_generation = session_generation + 1"
                " WHERE username = ? RETURNING session_generation",
                (username,),
            )
            row = tx.one()
        return None if row is None else int(row[0])

    def set_user_active(self, username: str, active: bool) -> bool:
        """Enable/disable; False if no such user."""
        with self._tx(write=True) as tx:
            tx.execute("UPDATE app_user SET active = ? WHERE username = ?", (int(active), username))
            return tx.rowcount == 1

    # -- patient tokens ------------------------------------------------------------------------
    def create_patient_token(
        self, token_hash: str, client_id: str, *, expires_at: float | None, label: str = ""
    ) -> PatientToken:
        """Store a token hash for one client's data; ConflictError if present."""
        if not token_hash or not client_id:
            raise ValueError("token hash and client_id must not be empty")
        with self._tx(write=True) as tx:
            tx.execute(
                f"INSERT INTO patient_token ({_PT_COLS}) VALUES (?, ?, ?, ?, ?, 0, 0)"
                f" ON CONFLICT DO NOTHING RETURNING {_PT_COLS}",
                (token_hash, client_id, label, self._clock(), expires_at),
            )
            row = tx.one()
        if row is None:
            raise ConflictError("patient token already exists")
        return _token(row)

    def get_patient_token(self, token_hash: str) -> PatientToken | None:
        """Look up a token hash."""
        with self._tx(write=False) as tx:
            tx.execute(f"SELECT {_PT_COLS} FROM patient_token WHERE token_hash = ?", (token_hash,))
            row = tx.one()
        return None if row is None else _token(row)

    def list_patient_tokens(self, client_id: str) -> list[PatientToken]:
        """Tokens of a client, newest first."""
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_PT_COLS} FROM patient_token WHERE client_id = ?"
                " ORDER BY created_at DESC, token_hash",
                (client_id,),
            )
            return [_token(r) for r in tx.all()]

    def bump_token_session_generation(self, token_hash: str) -> int | None:
        """End every session opened with this code: the new generation, None if unknown."""
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE patient_token SET session_generation = session_generation + 1"
                " WHERE token_hash = ? RETURNING session_generation",
                (token_hash,),
            )
            row = tx.one()
        return None if row is None else int(row[0])

    def revoke_patient_token(self, token_hash: str) -> bool:
        """Revoke; False if unknown."""
        with self._tx(write=True) as tx:
            tx.execute("UPDATE patient_token SET revoked = 1 WHERE token_hash = ?", (token_hash,))
            return tx.rowcount == 1

    # -- training control ----------------------------------------------------------------------
    def get_training_control(self) -> TrainingControl:
        """Desired training state (stopped, generation 0 when never set)."""
        with self._tx(write=False) as tx:
            tx.execute(f"SELECT {_CONTROL_COLS} FROM training_control WHERE id = 1")
            row = tx.one()
        if row is None:
            return TrainingControl(DesiredTraining.STOPPED, "", "", "", 0, {}, "", 0.0, 0)
        return _control(row)

    def set_training_control(
        self,
        *,
        desired: DesiredTraining,
        task: str,
        strategy: str,
        dataset: str = "",
        rounds: int = 0,
        config: Mapping[str, Any] | None = None,
        updated_by: str = "",
    ) -> TrainingControl:
        """Replace the desired state; generation + 1."""
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        values = (
            str(DesiredTraining(desired)), task, strategy, dataset, int(rounds), dumps(config),
            updated_by, self._clock(),
        )  # fmt: skip
        with self._tx(write=True) as tx:
            tx.execute(
                f"INSERT INTO training_control (id, {_CONTROL_COLS})"
                " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO UPDATE SET"
                " desired = excluded.desired, task = excluded.task,"
                " strategy = excluded.strategy, dataset = excluded.dataset,"
                " rounds = excluded.rounds, config = excluded.config,"
                " updated_by = excluded.updated_by, updated_at = excluded.updated_at,"
                " generation = training_control.generation + 1"
                f" RETURNING {_CONTROL_COLS}",
                values,
            )
            row = tx.one()
        assert row is not None
        return _control(row)

    # -- audit ---------------------------------------------------------------------------------
    def audit(
        self, actor: str, action: str, *, target: str = "", details: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Append to the audit log."""
        if not actor or not action:
            raise ValueError("actor and action must not be empty")
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO audit_log (created_at, actor, action, target, details)"
                f" VALUES (?, ?, ?, ?, ?) RETURNING {_AUDIT_COLS}",
                (self._clock(), actor, action, target, dumps(details)),
            )
            row = tx.one()
        assert row is not None
        return _audit(row)

    def list_audit(
        self, *, limit: int = 100, actor: str | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Newest first."""
        sql = f"SELECT {_AUDIT_COLS} FROM audit_log WHERE 1 = 1"
        params: list[Any] = []
        if actor is not None:
            sql += " AND actor = ?"
            params.append(actor)
        if action is not None:
            sql += " AND action = ?"
            params.append(action)
        with self._tx(write=False) as tx:
            tx.execute(sql + " ORDER BY entry_id DESC LIMIT ?", [*params, int(limit)])
            return [_audit(r) for r in tx.all()]
