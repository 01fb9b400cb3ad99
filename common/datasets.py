"""Where the datasets live and how a user gets each one.

Pure: the caller passes the environment in. The project never ships data. Datasets are found in
``MEDCHAIN_DATA``, the shared folder beside the clone, or the download cache; PhysioNet ones
are fetched with ``medchain data download NAME``, the others by hand from their source
(:data:`DATASETS` says where, and under which terms).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.errors import DataNotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class PhysionetFetch:
    """How ``medchain data download`` lays out one PhysioNet database with ``wfdb``.

    Attributes
    ----------
    database : str
        ``wfdb.dl_database`` directory (``"mitdb"``, ``"challenge-2017/training"``).
    subdir : str
        Folder inside the dataset folder that receives the records ("" = the folder itself).
    keep_subdirs : bool
        Keep PhysioNet's sub-folders (``aftdb``'s sets) or put every record in ``subdir``.
    files : tuple of str
        Extra files of the database's top folder (labels), fetched with ``wfdb.dl_files``.
    """

    database: str
    subdir: str = ""
    keep_subdirs: bool = True
    files: tuple[str, ...] = ()

    @property
    def project(self) -> str:
        """The PhysioNet project slug (``challenge-2017``)."""
        return self.database.split("/")[0]


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset the project reads: its folder name, source and terms.

    Attributes
    ----------
    name : str
        Folder name under a data root.
    source : str
        Where to get it (URL).
    terms : str
        License or terms of use, short.
    physionet : PhysionetFetch or None
        How to download it; None when it cannot be downloaded by ``medchain data download``.
    """

    name: str
    source: str
    terms: str
    physionet: PhysionetFetch | None = None


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "mitdb",
            "https://physionet.org/content/mitdb/1.0.0/",
            "ODC-By 1.0",
            PhysionetFetch("mitdb"),
        ),
        DatasetInfo(
            "aftdb",
            "https://physionet.org/content/aftdb/1.0.0/",
            "ODC-By 1.0",
            PhysionetFetch("aftdb"),
        ),
        DatasetInfo(
            "cinc2017_training",
            "https://physionet.org/content/challenge-2017/1.0.0/",
            "ODC-By 1.0",
            PhysionetFetch("challenge-2017/training", "training2017", False, ("REFERENCE-v3.csv",)),
        ),
        DatasetInfo(
            "kaggle_heartbeat_samples",
            "https://www.kaggle.com/datasets/shayanfazeli/heartbeat, rows sampled from its CSVs",
            "PTB/MIT-BIH ODC-By 1.0, the Kaggle derivation unlicensed: cite Kachuee et al. 2018",
        ),
        DatasetInfo(
            "spc2015_wrist_ppg_acc",
            "https://sites.google.com/site/researchbyzhang/ieeespcup2015, IEEE SP Cup 2015",
            "academic research use only, with citation",
        ),
        DatasetInfo(
            "hmp_wrist_adl",
            "https://archive.ics.uci.edu/dataset/283",
            "research use; redistribution by arrangement with the authors",
        ),
        DatasetInfo(
            "polar_h10_ble_captures",
            "https://github.com/phdiethelm/h10_ecg, python/doc/ecg2_demo.txt and the "
            "hr_data_2023-01-13_11-40-07.bin capture",
            "no license stated: the project's internal parser tests only",
        ),
    )
}


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


def how_to_get(name: str) -> str:
    """One line telling a user how to get dataset ``name``.

    >>> how_to_get("mitdb")
    'run `medchain data download mitdb` (or set MEDCHAIN_DATA to a folder holding mitdb/)'
    """
    info = DATASETS.get(name)
    if info is None:
        return f"set MEDCHAIN_DATA to a folder holding {name}/"
    if info.physionet is not None:
        return f"run `medchain data download {name}` (or set MEDCHAIN_DATA to a folder holding {name}/)"
    return (
        f"not downloadable by medchain: get it from {info.source} ({info.terms}) "
        f"and put it in $MEDCHAIN_DATA/{name}/"
    )


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
    raise DataNotFoundError(f"dataset {name!r}", ", ".join(str(r) for r in roots), how_to_get(name))
