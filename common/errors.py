"""One base error for MedChain; the CLI turns it into a one-line message.

Subclasses carry data (which record, which file) rather than only a string, in the style of
bleak's typed errors, so callers can react without parsing messages.
"""

from __future__ import annotations


class MedchainError(Exception):
    """Base of every error MedChain raises on purpose (bad input, missing data, bad config)."""


class DataNotFoundError(MedchainError):
    """A dataset folder, record or file is missing.

    Parameters
    ----------
    what : str
        What was looked for (a record name, a folder).
    where : str
        Where it was looked for.
    hint : str
        What the user can do about it.
    """

    def __init__(self, what: str, where: str, hint: str = "") -> None:
        self.what = what
        self.where = where
        self.hint = hint
        msg = f"{what} not found in {where}"
        super().__init__(f"{msg}; {hint}" if hint else msg)


class CorruptInputError(MedchainError):
    """A file or payload is malformed (truncated, wrong format, failed checksum)."""


class ConfigError(MedchainError):
    """A settings file or environment variable has an invalid value."""
