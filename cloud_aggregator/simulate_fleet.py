"""The simulated devices of ``medchain simulate --grid mqtt``: child processes over the broker.

Each process is ``python -m edge_agent.federated`` with a share of the clients (one MQTT
connection per client); there is one process per core, as a simulation engine (Flower's Ray
backend) runs one client per CPU. Spawned, never imported: the aggregator does not import the
edge agent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


class Fleet:
    """Start the fleet processes; ``alive``, ``stop`` and the clients' ``stats``.

    Parameters
    ----------
    broker_url : str
        ``mqtt[s]://user:pw@host:port``.
    data_dir, work_dir : Path
        One ``.npz`` of labelled beats per client; working folder (stats, per-client state).
    n_clients : int
        Clients in ``data_dir`` (caps the process count).
    max_seconds : float
        The processes stop by themselves after this, s.
    faults : (float, float, float)
        Drop-out probability per round, slow-client probability, slow delay (s).
    processes : int, optional
        Default: one per core.
    """

    def __init__(
        self,
        broker_url: str,
        data_dir: Path,
        work_dir: Path,
        n_clients: int,
        max_seconds: float,
        faults: tuple[float, float, float] = (0.0, 0.0, 0.0),
        processes: int | None = None,
    ) -> None:
        self.n = max(1, min(processes or os.cpu_count() or 1, n_clients))
        self.work_dir = work_dir
        drop, slow, slow_s = faults
        common = [sys.executable, "-m", "edge_agent.federated", "--broker", broker_url,
                  "--data", str(data_dir), "--work", str(work_dir / "work"),
                  "--seconds", str(max_seconds), "--drop", str(drop), "--slow", str(slow),
                  "--slow-s", str(slow_s)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.procs = [
            subprocess.Popen(  # noqa: S603 - our own module, no shell
                [*common, "--stats", str(self._stats_path(k)), "--shard", f"{k}/{self.n}"], env=env
            )
            for k in range(self.n)
        ]

    def _stats_path(self, k: int) -> Path:
        return self.work_dir / f"fleet-{k}.json"

    def alive(self) -> bool:
        """True while every process runs."""
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        """SIGTERM to all at once (each logs its clients off), then wait; kill after 30 s."""
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stats(self) -> dict[str, Any]:
        """Per client: ``rounds_trained``, ``uplink_bytes``, ``bad_messages`` (after stop)."""
        out: dict[str, Any] = {}
        for k in range(self.n):
            path = self._stats_path(k)
            out |= json.loads(path.read_text()) if path.is_file() else {}
        return out
