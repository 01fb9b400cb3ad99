"""``medchain data download|list``: fetch PhysioNet datasets into the cache, show what is where.

A download goes to a hidden ``.NAME.partial-*`` folder beside its target and is renamed into
place only when it finished, so a failed or interrupted download leaves no folder behind (an
empty ``mitdb/`` would be "found" and break every reader of it).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common.datasets import DATASETS, PhysionetFetch, data_roots, default_cache_dir, how_to_get
from common.errors import MedchainError

_LOGGER = logging.getLogger(__name__)

Fetch = Callable[[PhysionetFetch, Path], None]
DOWNLOADABLE = tuple(sorted(n for n, d in DATASETS.items() if d.physionet is not None))


def fetch_physionet(spec: PhysionetFetch, dest: Path) -> None:
    """Download one PhysioNet database with ``wfdb`` into ``dest`` (laid out as ``spec`` says)."""
    try:
        import wfdb
    except ImportError as exc:
        raise MedchainError("downloading needs wfdb: pip install 'medchain[wfdb]'") from exc
    records = dest / spec.subdir
    wfdb.dl_database(spec.database, dl_dir=str(records), keep_subdirs=spec.keep_subdirs)
    if spec.files:
        wfdb.dl_files(spec.project, str(dest), list(spec.files))


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, outermost first."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    return missing[::-1]


def download_dataset(name: str, env: Mapping[str, str], fetch: Fetch = fetch_physionet) -> Path:
    """Download dataset ``name`` into ``<cache>/data/<name>``; return its folder.

    Parameters
    ----------
    name : str
        One of :data:`DOWNLOADABLE`.
    env : mapping
        Environment (for the cache folder).
    fetch : callable
        ``fetch(spec, dest)`` writes the files into ``dest``; :func:`fetch_physionet` by default.

    Raises
    ------
    MedchainError
        If ``name`` cannot be downloaded, or the download fails (nothing is left behind).
    """
    info = DATASETS.get(name)
    if info is None:
        raise MedchainError(f"unknown dataset {name!r}; downloadable: {', '.join(DOWNLOADABLE)}")
    if info.physionet is None:
        raise MedchainError(f"{name} is {how_to_get(name)}")
    root = default_cache_dir(env) / "data"
    target = root / name
    if target.is_dir():
        return target
    created = _missing_parents(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{name}.partial-*"):  # left by a killed earlier download
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
    try:
        fetch(info.physionet, partial)
        if not any(partial.iterdir()):
            raise MedchainError(f"download of {name} gave no files")
        partial.rename(target)
    except BaseException as exc:  # also Ctrl-C: never leave a partial or empty folder
        shutil.rmtree(partial, ignore_errors=True)
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(exc, Exception) and not isinstance(exc, MedchainError):
            # network errors arrive as requests / OSError / ValueError from wfdb
            raise MedchainError(f"download of {name} failed: {exc}") from exc
        raise
    return target


def cmd_data_download(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Fetch a PhysioNet database with wfdb into ``<cache>/data/<name>``."""
    target = default_cache_dir(env) / "data" / args.db
    if args.db in DOWNLOADABLE and target.is_dir():
        print(f"{args.db} is already in {target}")
        return 0
    if args.db in DOWNLOADABLE:
        print(f"downloading {args.db} from {DATASETS[args.db].source} into {target} ...")
    download_dataset(args.db, env)
    print(f"done: {target}")
    return 0


def cmd_data_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Show which datasets are found in which root, and how to get the missing ones."""
    rows = []
    for name in DATASETS:
        where = next((str(r / name) for r in data_roots(env) if (r / name).is_dir()), None)
        rows.append({"dataset": name, "path": where, "get": None if where else how_to_get(name)})
    if args.json:
        print(json.dumps({"roots": [str(r) for r in data_roots(env)], "datasets": rows}))
        return 0
    print("search roots: " + ", ".join(str(r) for r in data_roots(env)))
    for row in rows:
        print(f"  {row['dataset']:<26} {row['path'] or '- missing: ' + str(row['get'])}")
    return 0


def register_data(subparsers: Any) -> None:
    """Add ``data download`` and ``data list``."""
    data = subparsers.add_parser("data", help="download PhysioNet datasets / list datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dl = dsub.add_parser("download", help="fetch a PhysioNet database with wfdb into the cache")
    dl.add_argument(
        "db",
        metavar="NAME",
        help=f"{', '.join(DOWNLOADABLE)} (`medchain data list` says where to get the others)",
    )
    dl.set_defaults(func=cmd_data_download)
    ls = dsub.add_parser("list", help="show which datasets are found where")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_data_list)
