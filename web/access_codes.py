"""Patient access codes: short, typeable, 80 random bits, stored as SHA-256 (pure).

A code is 16 characters of Crockford's base32 (digits and capitals without I, L, O, U) in four
groups, e.g. ``7K3M-Q9XD-2PWA-H4TN``. Typed input is normalised first: case, spaces and dashes
do not matter, and I/L read as 1, O as 0. 80 bits leave an online guesser (log-in throttled per
address; even unthrottled at 10^4 requests/s) about 10^12 years per code, and an attacker with
a copy of the store 2^80 SHA-256 evaluations per code, so an unsalted hash is safe and lets the
app look a presented code up by its hash. Codes minted before (43 url-safe characters) still
work: only input shaped like a short code is normalised.
"""

from __future__ import annotations

import hashlib
import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
GROUPS = 4
GROUP_LEN = 4
CODE_BITS = GROUPS * GROUP_LEN * 5
_SHORT = re.compile(r"^[0-9A-Za-z]{4}(?:-?[0-9A-Za-z]{4}){3}$")  # 16 characters, dashes optional
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})


def new_patient_token() -> tuple[str, str]:
    """A fresh access code and its hash: (code shown once, sha256 hex to store)."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LEN))
    code = "-".join(chars[i : i + GROUP_LEN] for i in range(0, len(chars), GROUP_LEN))
    return code, hash_patient_token(code)


def normalise_code(text: str) -> str:
    """The canonical form of a typed short code (``XXXX-XXXX-XXXX-XXXX``); any other text as is."""
    spaced = re.sub(r"\s", "", text)
    if not _SHORT.match(spaced):
        return text
    canon = spaced.replace("-", "").upper().translate(_READ_AS)
    return "-".join(canon[i : i + GROUP_LEN] for i in range(0, len(canon), GROUP_LEN))


def hash_patient_token(token: str) -> str:
    """SHA-256 hex of a presented code (after :func:`normalise_code`)."""
    return hashlib.sha256(normalise_code(token).encode()).hexdigest()
