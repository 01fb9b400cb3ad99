"""A simulated fleet split over processes: each runs its share of the clients, once; clients
of one process train one at a time (many at once under one GIL were slower in sum)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent import federated_fleet
from edge_agent.federated_fleet import run_fleet


def _data(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        np.savez(folder / f"dev-{i}.npz", beat=np.zeros((2, 4), np.float32),
                 labels=np.zeros(2, np.int64))  # fmt: skip


def test_shards_split_the_clients_without_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: 5 clients; run_client stubbed (no broker), recording who ran
    _data(tmp_path / "data", 5)
    ran: list[str] = []
    monkeypatch.setattr(
        federated_fleet, "run_client", lambda url, p, stop, **kw: ran.append(p.client_id)
    )
    stop = threading.Event()
    # Execute
    shares = [
        set(run_fleet("mqtt://x", tmp_path / "data", tmp_path / "w", stop, (k, 2))) for k in (0, 1)
    ]
    # Assert
    assert shares[0] == {"dev-0", "dev-2", "dev-4"} and shares[1] == {"dev-1", "dev-3"}
    assert sorted(ran) == [f"dev-{i}" for i in range(5)]
    with pytest.raises(ValueError, match="shard"):
        run_fleet("mqtt://x", tmp_path / "data", tmp_path / "w", stop, (2, 2))


def test_clients_of_one_process_share_one_cpu_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: run_client stubbed to "train" inside the slot it is given
    _data(tmp_path / "data", 4)
    busy, most = [0], [0]
    lock = threading.Lock()

    def fake(url: str, p: Any, stop: threading.Event, **kw: Any) -> None:
        with kw["cpu_slot"]:
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            time.sleep(0.05)
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(federated_fleet, "run_client", fake)
    # Execute
    run_fleet("mqtt://x", tmp_path / "data", tmp_path / "w", threading.Event())
    # Assert
    assert most[0] == 1
