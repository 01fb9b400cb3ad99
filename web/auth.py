"""Who is asking: clinician sessions, patient tokens, and the access rules every view applies.

- Clinicians log in with a username and password (werkzeug scrypt hash in the store) and get
  a signed Flask session. Role ``admin`` may also change the training controls.
- A patient opens only their own view, with an access token minted by
  ``medchain web patient-token CLIENT_ID``: typed once into ``/patient/login`` (then a session),
  or sent as ``Authorization: Bearer <token>`` to the JSON API. Tokens are re-checked on every
  request, so revoking one takes effect at once.
- A session cookie also carries the store's *session generation* of its user or code; log-out
  and a password change bump it, which ends every copy of the session (signed cookies cannot be
  revoked otherwise). Open live streams re-check the same with :func:`credential_valid`.
- Log-in attempts are limited by Flask-Limiter (``web.limits``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import abort, current_app, g, request, session

from store.base import Store
from web.access_codes import hash_patient_token

CLINICIAN_ROLES = frozenset({"clinician", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller.

    Attributes
    ----------
    kind : str
        ``"clinician"`` or ``"patient"``.
    name : str
        Username, or ``patient:{client_id}`` (used as the audit actor).
    role : str
        ``clinician``/``admin`` for clinicians, ``patient`` for patients.
    client_id : str
        The patient's own client id (empty for clinicians).
    """

    kind: str
    name: str
    role: str
    client_id: str = ""

    @property
    def is_clinician(self) -> bool:
        """True for clinician accounts (any role)."""
        return self.kind == "clinician"

    @property
    def is_admin(self) -> bool:
        """True for clinicians with the ``admin`` role."""
        return self.kind == "clinician" and self.role == "admin"

    def can_see(self, client_id: str) -> bool:
        """Clinicians see every patient; a patient only themself."""
        return self.is_clinician or self.client_id == client_id


def store() -> Store:
    """The app's store."""
    st: Store = current_app.extensions["medchain.store"]
    return st


@dataclass(frozen=True, slots=True)
class Credential:
    """What authenticated a request, to re-check later (an open live stream).

    Attributes
    ----------
    kind : str
        ``"user"`` (clinician session), ``"token"`` (patient session) or ``"bearer"``.
    key : str
        The username, or the SHA-256 hex of the access code.
    generation : int or None
        The session generation the cookie carried (None for bearer requests).
    """

    kind: str
    key: str
    generation: int | None = None


def load_principal() -> None:
    """``before_request`` hook: set ``g.principal`` from a bearer token or the session."""
    g.principal = None
    g.credential = None
    if request.endpoint == "static":
        return  # public files: no store lookups
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        token = auth[len("Bearer ") :].strip()
        if token and len(token) <= 256:
            g.credential = Credential("bearer", hash_patient_token(token))
            g.principal = principal_of(store(), g.credential)
        if g.principal is None:
            abort(401, description="The access token is invalid, expired or revoked.")
        return
    cred = session_credential()
    if cred is not None:
        g.principal = principal_of(store(), cred)
        if g.principal is None:
            session.clear()
        else:
            g.credential = cred


def session_credential() -> Credential | None:
    """The credential the session cookie holds (None if anonymous or malformed)."""
    gen = session.get("gen")
    if not isinstance(gen, int):
        return None
    username, token_hash = session.get("user"), session.get("patient_token")
    if isinstance(username, str):
        return Credential("user", username, gen)
    if isinstance(token_hash, str):
        return Credential("token", token_hash, gen)
    return None


def principal_of(st: Store, cred: Credential, now: float | None = None) -> Principal | None:
    """Who ``cred`` authenticates now (``now`` in Unix s), or None if it no longer does: a
    disabled or deleted user, a revoked or expired code, or a session generation the store
    has moved past (log-out, password change)."""
    if cred.kind == "user":
        user = st.get_user(cred.key)
        if user is None or not user.active or user.role not in CLINICIAN_ROLES:
            return None
        if cred.generation != user.session_generation:
            return None
        return Principal("clinician", user.username, user.role)
    tok = st.get_patient_token(cred.key)
    if tok is None or not tok.is_valid(time.time() if now is None else now):
        return None
    if cred.kind == "token" and cred.generation != tok.session_generation:
        return None
    return Principal("patient", f"patient:{tok.client_id}", "patient", tok.client_id)


def credential_valid(st: Store, cred: Credential | None) -> bool:
    """True while ``cred`` still authenticates someone (see :func:`principal_of`)."""
    return cred is not None and principal_of(st, cred) is not None


def current_credential() -> Credential | None:
    """The credential of this request (None if anonymous)."""
    cred: Credential | None = g.get("credential")
    return cred


def current() -> Principal | None:
    """The caller, or None if anonymous."""
    p: Principal | None = g.get("principal")
    return p


def require_login() -> Principal:
    """The caller; 401 if anonymous."""
    p = current()
    if p is None:
        abort(401)
    return p


def require_clinician() -> Principal:
    """A clinician; 401 if anonymous, 403 for a patient."""
    p = require_login()
    if not p.is_clinician:
        abort(403, description="This page is for clinicians.")
    return p


def require_admin() -> Principal:
    """An admin clinician; 401/403 otherwise."""
    p = require_clinician()
    if not p.is_admin:
        abort(403, description="Changing the training controls needs the admin role.")
    return p


def require_patient_access(client_id: str) -> Principal:
    """A clinician, or the patient ``client_id`` themself; 401/403 otherwise."""
    p = require_login()
    if not p.can_see(client_id):
        abort(403, description="You may only see your own data.")
    return p
