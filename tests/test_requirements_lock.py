"""The locks (requirements.txt, requirements-edge.txt; written by scripts/lock.sh) cover what
pyproject.toml asks for, every pin has a hash, and the edge lock holds no scipy, pandas or
matplotlib. A dependency added to pyproject.toml without re-locking fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)")


def locked(path: Path) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of a pip-compile lock."""
    pins: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            pins[name] = (Version(match[2]), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def wanted(*extras: str) -> list[Requirement]:
    """pyproject.toml's requirements of these extras (self-references ``medchain[x]`` followed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == "medchain":
                todo.extend(req.extras)
            else:
                out.append(req)
    return [r for r in out if r.marker is None or r.marker.evaluate()]


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.txt", ("all", "dev")), ("requirements-edge.txt", ("edge",))]
)
def test_lock_covers_pyproject_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    pins = locked(ROOT / lock)
    missing = [
        str(r)
        for r in wanted(*extras)
        if canonicalize_name(r.name) not in pins
        or not r.specifier.contains(pins[canonicalize_name(r.name)][0], prereleases=True)
    ]
    assert not missing, f"{lock} lacks {missing}: run bash scripts/lock.sh"
    assert all(hashes for _, hashes in pins.values()), f"{lock}: a pin without a hash"


def test_edge_lock_has_no_scipy_pandas_matplotlib_or_torch() -> None:
    pins = locked(ROOT / "requirements-edge.txt")
    assert not {"scipy", "pandas", "matplotlib", "torch", "wfdb"} & set(pins)


def test_full_lock_has_the_cpu_torch_build() -> None:
    version, _ = locked(ROOT / "requirements.txt")["torch"]
    assert version.local == "cpu"
