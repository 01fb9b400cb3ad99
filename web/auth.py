"""Who is asking: clinician sessions, patient tokens, and the access rules every view applies.

- Clinicians log in with a username and password (werkzeug scrypt hash in the store) and get
  a signed Flask session. Role ``admin`` may also change the training controls.
- A patient opens only their own view, with an access token minted by
  ``medchain web patient-token CLIENT_ID``: typed once into ``/patient/login`` (then a session),
  or sent as ``Authorization: Bearer <token>`` to the JSON API. Tokens are re-checked on every
  request, so revoking one takes effect at once.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from flask import abort, current_app, g, request, session

from store.base import Store
from web.security import hash_patient_token

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


class LoginThrottle:
    """Refuse log-ins after ``max_failures`` failures within ``window_s`` s for a key.

    Keys are (username, remote address); state is per process (enough for a single server;
    a shared limiter belongs in the reverse proxy for several workers).
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, key: str, now: float) -> bool:
        """Whether ``key`` has ``max_failures`` failures within the window ending at ``now`` (s)."""
        q = self._failures.get(key)
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q is not None and len(q) >= self.max_failures

    def failed(self, key: str, now: float) -> None:
        """Count a failed log-in of ``key`` at ``now`` (Unix s)."""
        if len(self._failures) >= 10_000:  # bound memory: forget keys whose window lapsed
            stale = [k for k, q in self._failures.items() if not q or now - q[-1] > self.window_s]
            for k in stale:
                del self._failures[k]
        self._failures.setdefault(key, deque(maxlen=self.max_failures)).append(now)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures after a successful log-in."""
        self._failures.pop(key, None)


def store() -> Store:
    """The app's store."""
    st: Store = current_app.extensions["medchain.store"]
    return st


def load_principal() -> None:
    """``before_request`` hook: set ``g.principal`` from a bearer token or the session."""
    g.principal = None
    if request.endpoint == "static":
        return  # public files: no store lookups
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        g.principal = _patient_from_token(auth[len("Bearer ") :].strip())
        if g.principal is None:
            abort(401, description="The access token is invalid, expired or revoked.")
        return
    username = session.get("user")
    if isinstance(username, str):
        user = store().get_user(username)
        if user is not None and user.active and user.role in CLINICIAN_ROLES:
            g.principal = Principal("clinician", user.username, user.role)
        else:
            session.clear()
        return
    token_hash = session.get("patient_token")
    if isinstance(token_hash, str):
        tok = store().get_patient_token(token_hash)
        if tok is not None and tok.is_valid(time.time()):
            g.principal = Principal("patient", f"patient:{tok.client_id}", "patient", tok.client_id)
        else:
            session.clear()


def _patient_from_token(token: str) -> Principal | None:
    if not token or len(token) > 256:
        return None
    tok = store().get_patient_token(hash_patient_token(token))
    if tok is None or not tok.is_valid(time.time()):
        return None
    return Principal("patient", f"patient:{tok.client_id}", "patient", tok.client_id)


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
