"""Which records of a folder a record evaluation scores, and which lead (``models.record_eval``).

Only names and headers are read here (headers checked by ``firmware_bridge.wfdb_header`` before
``wfdb`` parses them); a folder, record or lead that is not there is one clear error line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from common.errors import CorruptInputError, DataNotFoundError


def list_records(folder: Path, annotator: str, only: Sequence[str] | None) -> list[str]:
    """Records of ``folder`` (``*.hea``) that have ``<name>.<annotator>``, sorted.

    Raises
    ------
    DataNotFoundError
        If the folder is missing, holds no annotated record, or ``only`` names one it lacks.
    """
    if not folder.is_dir():
        raise DataNotFoundError(f"record folder {folder.name!r}", str(folder.parent))
    names = sorted(p.stem for p in folder.glob("*.hea") if p.with_suffix(f".{annotator}").is_file())
    if only is not None:
        missing = [r for r in only if r not in names]
        if missing:
            raise DataNotFoundError(
                f"record(s) {', '.join(missing)} with .{annotator} annotations", str(folder)
            )
        names = [r for r in names if r in set(only)]
    if not names:
        raise DataNotFoundError(
            f"WFDB records (.hea) with .{annotator} reference annotations", str(folder)
        )
    return names


def signal_names(record: Path) -> list[str]:
    """The record's signal names from its (checked) header.

    Raises
    ------
    CorruptInputError
        If the header is malformed.
    """
    import wfdb

    from firmware_bridge.wfdb_header import check_wfdb_header

    check_wfdb_header(record)
    try:
        return [str(n) for n in (wfdb.rdheader(str(record)).sig_name or [])]
    except Exception as exc:  # wfdb raises untyped errors on malformed headers
        raise CorruptInputError(f"{record.name}: unreadable WFDB header ({exc})") from exc


def choose_lead(names: Sequence[str], leads: tuple[str, ...] | None, card_lead: str) -> str | None:
    """The lead to score: the first of ``leads`` the record has (None if none); without
    ``leads`` the card's lead if present, else the first signal."""
    if leads is not None:
        return next((lead for lead in leads if lead in names), None)
    wanted = card_lead.split()[0] if card_lead.split() else ""
    return wanted if wanted in names else (names[0] if names else None)
