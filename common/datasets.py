"""Where the datasets live: ``MEDCHAIN_DATA`` or the shared folder or the download cache.

Pure: the caller passes the environment in. The project never ships data; real users fetch
PhysioNet records with ``medchain data download`` into the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from common.errors import DataNotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """The download cache: ``$MEDCHAIN_CACHE`` or ``$XDG_CACHE_HOME/medchain`` or ``~/.cache/medchain``."""
    if env.get("MEDCHAIN_CACHE"):
        return Path(env["MEDCHAIN_CACHE"]).expanduser()
    base = (
        Path(env["XDG_CACHE_HOME"]).expanduser()
        if env.get("XDG_CACHE_HOME")
        else Path.home() / ".cache"
    )
    return base / "medchain"


def data_roots(env: Mapping[str, str]) -> list[Path]:
    """Folders searched for datasets, in order: ``$MEDCHAIN_DATA``, ../shared/data, the cache."""
    roots: list[Path] = []
    if env.get("MEDCHAIN_DATA"):
        roots.append(Path(env["MEDCHAIN_DATA"]).expanduser())
    elif SHARED_DATA.is_dir():
        roots.append(SHARED_DATA)
    roots.append(default_cache_dir(env) / "data")
    return roots


def dataset_dir(name: str, env: Mapping[str, str]) -> Path:
    """Folder of one dataset (``mitdb``, ``aftdb``, ``kaggle_heartbeat_samples``...).

    Raises
    ------
    DataNotFoundError
        If no root holds it; the message says how to get it.
    """
    roots = data_roots(env)
    for root in roots:
        if (root / name).is_dir():
            return root / name
    raise DataNotFoundError(
        f"dataset {name!r}",
        ", ".join(str(r) for r in roots),
        f"set MEDCHAIN_DATA or run `medchain data download {name}`",
    )
