"""A patient's link: an access code, the address that opens it, and the same as a QR code.

The code travels in the URL's fragment (``/patient/login#code=…``): browsers never send a
fragment to the server, so the code stays out of access logs and ``Referer`` headers; the
log-in page fills it in and the patient presses one button. QR codes are drawn by segno
(server-side: an SVG data URI for pages, block characters for a terminal).

``medchain demo`` prints a link per patient with :func:`mint_patient_link`.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import segno

from store.base import Store
from web.access_codes import new_patient_token
from web.patient_view import SIMULATED_DATASET

LOGIN_PATH = "patient/login"


@dataclass(frozen=True, slots=True)
class PatientLink:
    """An access code of one patient and the link that opens it (show both once)."""

    client_id: str
    code: str
    url: str

    def qr_svg_data_uri(self) -> str:
        """The link as a QR code: an SVG ``data:`` URI for an ``<img>`` (CSP allows ``data:``)."""
        return str(_qr(self.url).svg_data_uri(scale=4, border=2))

    def qr_terminal(self) -> str:
        """The link as a QR code of block characters, for a terminal (dark on light)."""
        out = io.StringIO()
        _qr(self.url).terminal(out=out, compact=True)
        return out.getvalue()


def _qr(text: str) -> segno.QRCode:
    return segno.make(text, error="m", micro=False)


def login_url(base_url: str, code: str) -> str:
    """The address that opens ``code`` on the web app at ``base_url`` (``http://host:port/``)."""
    return f"{base_url.rstrip('/')}/{LOGIN_PATH}#code={code}"


def mint_patient_link(
    store: Store,
    client_id: str,
    base_url: str,
    *,
    days: float = 30.0,
    label: str = "patient link",
    simulated: bool = False,
) -> PatientLink:
    """Mint an access code for ``client_id`` and return its link (the code is shown once).

    Parameters
    ----------
    store : Store
        Where the code's hash is kept.
    client_id : str
        The patient's device id (registered if unknown).
    base_url : str
        Where the web app is served, e.g. ``http://127.0.0.1:8080/``.
    days : float
        Validity in days (0: never expires).
    label : str
        A note kept with the code.
    simulated : bool
        Mark the patient's data as simulated (``Client.dataset = "simulated"``, task and
        credentials kept): every page of the patient then says so.
    """
    client = store.get_client(client_id)
    if client is None or (simulated and client.dataset != SIMULATED_DATASET):
        store.register_client(
            client_id,
            credentials_hash=client.credentials_hash if client else "",
            task=client.task if client else "",
            dataset=SIMULATED_DATASET if simulated else (client.dataset if client else ""),
        )
    code, code_hash = new_patient_token()
    expires = time.time() + days * 86400 if days else None
    store.create_patient_token(code_hash, client_id, expires_at=expires, label=label)
    store.audit(
        "cli", "patient_token", target=client_id, details={"id": code_hash[:12], "label": label}
    )
    return PatientLink(client_id, code, login_url(base_url, code))
