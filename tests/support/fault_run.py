"""The whole system under faults: devices replaying MIT-BIH, and everything else killed.

:class:`FaultRun` starts a private PostgreSQL (:mod:`tests.support.private_pg`), Mosquitto,
``medchain aggregator`` (ingestion + rounds), ``medchain web`` (label delivery) and one
``medchain edge`` per record, all as real processes; a clinician labels one recent beat of
each device every few seconds (through the store, as the web's label page does) and a hostile
device sprays the payloads of :mod:`tests.support.hostile` on its own topics and poisons every
round it is selected for. On a schedule it kills the aggregator, the broker or the web with
SIGKILL (restarted after a moment) and stops PostgreSQL for 20 s. At the end the devices are
stopped, the system settles, and :class:`FaultReport` compares what the devices produced with
what the store holds. Used by ``tests/integration/test_fault_run.py`` (short) and
``bench/fault_run.py`` (4 devices, 10 minutes).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from store import DesiredTraining, Store, open_store
from tests.support.hostile_device import HostileDevice
from tests.support.private_pg import PrivatePostgres
from tests.support.services import Mosquitto, free_port, run_mosquitto

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "pretrained" / "beat.onnx"
FAULTS = ("kill_aggregator", "kill_broker", "kill_web", "stop_postgres")
VALIDATION = "106,209,223"  # the aggregator's held-out DS1 records (release gate)


@dataclass
class FaultReport:
    """What the run produced and what the store holds (see the module docstring)."""

    beats_produced: dict[str, int]
    beats_stored: dict[str, int]
    beats_missing: dict[str, int]
    labels_sent: int
    labels_acknowledged: int
    updates_double_counted: int
    rounds_closed: int
    rounds_failed: dict[str, int]
    rounds_lost: int
    aggregator_restarts_forced_by_input: int
    hostile_messages: int
    faults: list[str]
    wall_s: float

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing counted twice, no crash forced by input."""
        return (
            self.beats_produced == self.beats_stored
            and not any(self.beats_missing.values())
            and self.labels_sent == self.labels_acknowledged
            and self.updates_double_counted == 0
            and self.rounds_lost == 0
            and self.aggregator_restarts_forced_by_input == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class _Proc:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    killed: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603
                self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
            self.killed += 1

    def terminate(self, timeout: float = 30.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class FaultRun:
    """One run (see the module docstring).

    Parameters
    ----------
    workdir : Path
        Logs, device state and outputs.
    data_root : Path
        Folder holding ``mitdb``.
    records : sequence of str
        MIT-BIH records, one device each (replayed in real time).
    duration_s : float
        How long the devices run, s.
    faults : list of (float, str)
        When (s after the start) to do what (:data:`FAULTS`).
    label_every_s : float
        Clinician label period, s.
    """

    workdir: Path
    data_root: Path
    records: tuple[str, ...]
    duration_s: float
    faults: list[tuple[float, str]]
    label_every_s: float = 5.0
    down_s: float = 2.0
    pg_down_s: float = 20.0
    procs: dict[str, _Proc] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)  # ids of the labels the clinician made
    _labelled: set[int] = field(default_factory=set)  # beats labelled (each once)

    def run(self) -> FaultReport:
        """Run the schedule; always stops every process it started."""
        from tests.support.private_pg import private_postgres

        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with private_postgres() as pg:
            port = free_port()
            broker = [run_mosquitto(port=port)]
            mosq = broker[0].__enter__()
            try:
                return self._run(pg, mosq, broker, t0)
            finally:
                for p in self.procs.values():
                    p.kill()
                broker[-1].__exit__(None, None, None)

    # ------------------------------------------------------------------ the run
    def _run(
        self, pg: PrivatePostgres, mosq: Mosquitto, broker: list[Any], t0: float
    ) -> FaultReport:
        store = open_store(pg.url)
        self._seed(store)
        self._start_services(pg.url, mosq.url)
        evil = HostileDevice(mosq.url)
        stop = threading.Event()
        labeller = threading.Thread(target=self._label_loop, args=(pg.url, stop), daemon=True)
        labeller.start()
        schedule = sorted(self.faults)
        forced = 0
        try:
            while time.monotonic() - t0 < self.duration_s:
                while schedule and time.monotonic() - t0 >= schedule[0][0]:
                    self._fault(schedule.pop(0)[1], pg, mosq, broker)
                forced += self._restart_exited("aggregator")
                self._restart_exited("web")
                evil.spray()
                time.sleep(0.5)
        finally:
            evil.stop()
            stop.set()
            labeller.join(30)
        store.close()
        store = open_store(pg.url)
        try:
            # labels first, while the devices still run (only they can acknowledge them)
            self._settle(lambda: self._acknowledged(store) >= len(self.labels), 120.0)
            for rec in self.records:
                self.procs[f"edge-{rec}"].terminate(60)
            produced = self._produced()
            self._settle(
                lambda: all(produced[c] <= self._stored(store, c) for c in produced), 120.0
            )
            return self._report(store, produced, forced, evil.sent, time.monotonic() - t0)
        finally:
            store.close()

    def _seed(self, store: Store) -> None:
        store.set_training_control(desired=DesiredTraining.RUNNING, task="beat", strategy="fedavg",
                                   rounds=10_000, updated_by="fault-run",
                                   config={"min_clients": 2, "quorum_fraction": 0.5,
                                           "deadline_s": 30.0,
                                           # a round the release gate refuses is tried again
                                           # rather than ending the run (reported apart)
                                           "max_attempts": 100})  # fmt: skip

    def _start_services(self, pg_url: str, mqtt_url: str) -> None:
        py = [sys.executable, "-m", "medchain"]
        base = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                "MEDCHAIN_DATA": str(self.data_root)}  # fmt: skip
        agg_env = {**base, "MEDCHAIN_AGG_WORKER": "agg-fault", "MEDCHAIN_AGG_POLL_S": "0.1"}
        self._add("aggregator", [*py, "aggregator", "--broker", mqtt_url, "--store", pg_url,
                                 "--initial-model", str(MODEL), "--round-interval", "5",
                                 "--validation", VALIDATION], agg_env)  # fmt: skip
        web_env = {**base, "MEDCHAIN_WEB_SECRET_KEY": secrets.token_hex(32)}
        self._add("web", [*py, "web", "--store", pg_url, "--broker", mqtt_url,
                          "--port", str(free_port())], web_env)  # fmt: skip
        edge_env = {
            **base,
            "MEDCHAIN_EDGE_RESEND_AFTER_S": "5",
            "MEDCHAIN_DATA": str(self.data_root),
        }
        for rec in self.records:
            state = self.workdir / f"dev-{rec}"
            self._add(f"edge-{rec}", [*py, "edge", "--source",
                                      f"replay:{self.data_root / 'mitdb' / rec}",
                                      "--speed", "realtime", "--broker", mqtt_url,
                                      "--client-id", f"dev-{rec}", "--federated",
                                      "--state-dir", str(state),
                                      "--out", str(self.workdir / f"dev-{rec}.jsonl")], edge_env)  # fmt: skip
        for p in self.procs.values():
            p.start()

    def _add(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.procs[name] = _Proc(name, cmd, env, self.workdir / f"{name}.log")

    def _restart_exited(self, name: str) -> int:
        """Restart a service that exited on its own; 1 if it did (a crash nobody asked for)."""
        p = self.procs[name]
        if p.popen is not None and p.popen.poll() is not None:
            self.done.append(f"{name} exited by itself with {p.popen.returncode}: restarted")
            p.start()
            return 1
        return 0

    def _fault(self, what: str, pg: PrivatePostgres, mosq: Mosquitto, broker: list[Any]) -> None:
        self.done.append(what)
        if what in ("kill_aggregator", "kill_web"):
            p = self.procs[what.split("_", 1)[1]]
            p.kill()
            time.sleep(self.down_s)
            p.start()
        elif what == "kill_broker":
            mosq.process.send_signal(signal.SIGKILL)
            mosq.process.wait(10)
            time.sleep(self.down_s)
            broker.append(run_mosquitto(port=mosq.port))
            fresh = broker[-1].__enter__()
            mosq.process = fresh.process
        elif what == "stop_postgres":
            pg.stop()
            time.sleep(self.pg_down_s)
            pg.start()
        else:
            raise ValueError(f"unknown fault {what!r}; use one of {FAULTS}")

    # ------------------------------------------------------------------ the clinician
    def _label_loop(self, pg_url: str, stop: threading.Event) -> None:
        store: Store | None = None
        while not stop.wait(self.label_every_s):
            try:
                store = store or open_store(pg_url)
                for rec in self.records:
                    recent = store.latest_predictions(f"dev-{rec}", 1)
                    if recent and recent[0].t_ns not in self._labelled:
                        b = recent[0]
                        rec_ = store.add_label(client_id=b.client_id, target="beat",
                                               t_ns=b.t_ns, label=b.label, author="fault-run")  # fmt: skip
                        self._labelled.add(b.t_ns)
                        self.labels.add(rec_.label_id)
            except Exception:  # noqa: BLE001 - the database is down on purpose: label later
                if store is not None:
                    store.close()
                store = None
        if store is not None:
            store.close()

    # ------------------------------------------------------------------ the verdict
    def _produced(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for rec in self.records:
            path = self.workdir / f"dev-{rec}.jsonl"
            rows = [json.loads(s) for s in path.read_text().splitlines()] if path.exists() else []
            out[f"dev-{rec}"] = {int(r["t_ns"]) for r in rows if r.get("type") == "beat"}
        return out

    @staticmethod
    def _stored(store: Store, cid: str) -> set[int]:
        return {b.t_ns for b in store.list_predictions(cid, limit=1_000_000)}

    @staticmethod
    def _settle(done: Callable[[], bool], timeout_s: float) -> None:
        """Wait (s) until ``done()`` (the system catching up after the last fault)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done():
            time.sleep(1.0)

    def _acknowledged(self, store: Store) -> int:
        return sum(1 for rec in self.records
                   for lb in store.list_labels(f"dev-{rec}", limit=100_000)
                   if lb.label_id in self.labels and str(lb.state) == "acknowledged")  # fmt: skip

    def _report(self, store: Store, produced: dict[str, set[int]], forced: int, hostile: int,
                wall_s: float) -> FaultReport:  # fmt: skip
        stored = {c: self._stored(store, c) for c in produced}
        rounds = store.list_rounds(task="beat", limit=100_000)
        failed = Counter(
            (r.failure_reason or "").split(":")[0] for r in rounds if str(r.state) == "failed"
        )
        lost = sum(1 for r in rounds if str(r.state) in ("open", "aggregating")
                   and r.deadline < time.time() - 120)  # fmt: skip
        double = sum(max(0, store.count_updates(r.round_id) - len(set(r.selected_clients)))
                     for r in rounds)  # fmt: skip
        return FaultReport(
            beats_produced={c: len(v) for c, v in produced.items()},
            beats_stored={c: len(stored[c] & produced[c]) for c in produced},
            beats_missing={c: len(produced[c] - stored[c]) for c in produced},
            labels_sent=len(self.labels),
            labels_acknowledged=self._acknowledged(store),
            updates_double_counted=double,
            rounds_closed=sum(1 for r in rounds if str(r.state) == "closed"),
            rounds_failed=dict(failed),
            rounds_lost=lost,
            aggregator_restarts_forced_by_input=forced,
            hostile_messages=hostile,
            faults=self.done,
            wall_s=wall_s,
        )
