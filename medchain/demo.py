"""``medchain demo``: the whole system on one machine with embedded defaults.

Starts an MQTT broker (Mosquitto as a subprocess, else the embedded amqtt broker), a SQLite
store, the aggregator, several edge agents replaying MIT-BIH records (or, with no dataset and no
network, a clearly labelled simulated ECG), and the web app; prints the URL and the log-in, shows
progress, and on Ctrl-C stops every process it started. ``--broker`` and ``--store`` point it at
a real Mosquitto and PostgreSQL instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.datasets import REPO_ROOT, dataset_dir, default_cache_dir
from common.errors import DataNotFoundError, MedchainError

_LOGGER = logging.getLogger(__name__)

# Patients whose records show the classes and rhythms the system is about: 208 many VEBs and
# fusion beats, 232 SVEBs and long pauses, 201 atrial fibrillation, 119 ventricular bigeminy,
# 100 mostly normal, 203 multiform VEBs with AF.
DEFAULT_RECORDS = ("208", "232", "201", "119", "100", "203")
# The aggregator's held-out set for its release gate: DS1 records no demo patient replays.
VALIDATION_RECORDS = "106,209,223"


@dataclass(frozen=True)
class DemoSettings:
    """Settings of one demo run (from CLI flags; no environment reads below ``run_demo``)."""

    workdir: Path
    patients: int = 4
    records: tuple[str, ...] = DEFAULT_RECORDS
    broker_url: str | None = None
    mqtt_port: int = 0
    store_url: str | None = None
    web_port: int = 8080
    rounds: int = 50
    strategy: str = "fedavg"
    deadline_s: float = 40.0
    round_interval_s: float = 20.0
    warmup_s: float = 20.0
    speed: str = "realtime"
    duration_s: float = 0.0
    simulated: bool = False
    username: str = "clinician"
    password: str = ""


class DemoError(MedchainError):
    """The demo could not start (a component failed on start-up)."""


def _py(*args: str) -> list[str]:
    return [sys.executable, "-m", "medchain", *args]


def patient_sources(settings: DemoSettings, env: Mapping[str, str]) -> list[tuple[str, Path, bool]]:
    """(client id, WFDB record path, simulated?) for each demo patient.

    Uses MIT-BIH records from ``MEDCHAIN_DATA`` / the shared folder / the download cache; when
    none is there (or ``simulated`` is asked for), writes simulated records into the workdir.
    """
    n = settings.patients
    if not settings.simulated:
        try:
            mitdb = dataset_dir("mitdb", env)
        except DataNotFoundError:
            _LOGGER.warning("no MIT-BIH data found: using a SIMULATED ECG")
        else:
            recs = [r for r in settings.records if (mitdb / f"{r}.hea").exists()][:n]
            if recs:
                return [(f"patient-{r}", mitdb / r, False) for r in recs]
    from medchain.synthetic_ecg import simulate_ecg, write_wfdb

    out = []
    for i in range(n):
        rec = simulate_ecg(duration_s=1800, hr_bpm=62 + 7 * i, pvc_rate=0.03 + 0.02 * i, seed=i)
        name = f"sim{100 + i}"
        out.append(
            (f"sim-patient-{i + 1}", write_wfdb(rec, settings.workdir / "simulated", name), True)
        )
    return out


def build_components(
    settings: DemoSettings, broker_url: str, store_url: str, patients: list[tuple[str, Path, bool]]
) -> list[Any]:
    """The long-running components, in start order (aggregator, web, edge agents)."""
    from medchain.supervisor import Component

    model = REPO_ROOT / "models" / "pretrained" / "beat.onnx"
    comps = [
        Component(
            "aggregator",
            _py(
                "aggregator", "--broker", broker_url, "--store", store_url,
                "--initial-model", str(model), "--start", "--rounds", str(settings.rounds),
                "--strategy", settings.strategy, "--deadline", str(settings.deadline_s),
                "--round-interval", str(settings.round_interval_s),
                "--dataset", "mitdb" if not patients[0][2] else "simulated",
                "--set", "min_clients=2", "--set", "fraction=1.0",
                *([] if patients[0][2] else ["--validation", VALIDATION_RECORDS]),
            ),
        ),
        Component(
            "web",
            _py("web", "--store", store_url, "--broker", broker_url, "--host", "127.0.0.1",
                "--port", str(settings.web_port)),
        ),
    ]  # fmt: skip
    for client_id, path, _sim in patients:
        comps.append(
            Component(
                f"edge-{client_id}",
                _py("edge", "--source", f"replay:{path}", "--speed", settings.speed,
                    "--broker", broker_url, "--client-id", client_id,
                    "--buffer", str(settings.workdir / f"{client_id}.buffer.db"),
                    "--federated", "--workdir", str(settings.workdir / f"{client_id}.state")),
                critical=False,
                stop_first=True,  # hand their last beats to the aggregator before it stops
            )
        )  # fmt: skip
    return comps


def _status_table(store: Any, sup: Any, started: float) -> Any:
    from rich.table import Table

    table = Table(title=f"MedChain demo — {time.monotonic() - started:.0f} s", expand=False)
    table.add_column("what")
    table.add_column("state")
    for run in sup.running:
        code = run.process.poll()
        table.add_row(run.component.name, "running" if code is None else f"exited ({code})")
    try:
        clients = store.list_clients()
        online = sum(1 for c in clients if c.online)
        table.add_row("devices online", f"{online}/{len(clients)}")
        rounds = store.list_rounds(limit=3)
        for r in rounds:
            table.add_row(
                f"round {r.round_id}", f"{r.state} ({store.count_updates(r.round_id)} updates)"
            )
    except Exception as exc:  # noqa: BLE001 - the store may be mid-migration; show, don't die
        table.add_row("store", f"not ready: {exc}")
    return table


def run_demo(settings: DemoSettings, env: Mapping[str, str]) -> int:
    """Run the demo until Ctrl-C, SIGTERM or SIGHUP (or ``duration_s``); returns the exit code.

    Every process it started is stopped in each case (see :mod:`medchain.supervisor`).
    """
    from rich.console import Console
    from rich.live import Live

    from medchain.broker import free_port, port_open, start_broker
    from medchain.supervisor import Component, Supervisor
    from store.factory import open_store

    console = Console()
    settings.workdir.mkdir(parents=True, exist_ok=True)
    store_url = settings.store_url or f"sqlite:///{settings.workdir / 'medchain.db'}"
    if port_open(settings.web_port):
        raise DemoError(f"port {settings.web_port} is in use; choose another with --web-port")
    broker = None
    # One secret per run: the web's sessions survive its restarts within the run, not beyond.
    child_env = {**env, "PYTHONUNBUFFERED": "1", "MEDCHAIN_WEB_SECRET_KEY": secrets.token_hex(32)}
    sup = Supervisor(settings.workdir / "logs", child_env)
    with sup.signals:  # Ctrl-C, SIGTERM (kill, systemd) and SIGHUP stop alike
        try:
            if settings.broker_url:
                broker_url = settings.broker_url
            else:
                port = settings.mqtt_port or free_port()
                with sup.signals.held():  # a stop signal waits until ``broker`` is set
                    broker = start_broker(port, log_file=settings.workdir / "logs" / "broker.log")
                broker_url = broker.url
                console.print(f"[green]✓[/] MQTT broker: {broker.kind} on {broker_url}")
            sup.run_once(Component("db-upgrade", _py("db", "upgrade", "--store", store_url)))
            console.print(f"[green]✓[/] store: {store_url}")
            password = settings.password or secrets.token_urlsafe(9)
            sup.run_once(
                Component("add-user", _py("web", "--store", store_url, "add-user", settings.username,
                                          "--role", "admin", "--password-stdin", "--update")),
                stdin_text=password + "\n",
            )  # fmt: skip
            patients = patient_sources(settings, env)
            if patients[0][2]:
                console.print("[yellow]![/] no dataset found: patients replay a SIMULATED ECG")
            comps = build_components(settings, broker_url, store_url, patients)
            # Web and edge agents first; the aggregator after a warm-up, so that the first round
            # finds devices that already hold labelled beats.
            for comp in comps[1:]:
                sup.start(comp)
            web_url = f"http://127.0.0.1:{settings.web_port}/"
            if not sup.wait_until(lambda: port_open(settings.web_port), timeout=60):
                dead = "\n".join(
                    f"--- {r.component.name}:\n{sup.tail(r.log_path)}" for r in sup.failed()
                )
                raise DemoError(f"the system did not come up:\n{dead}")
            console.print(f"[green]✓[/] {len(patients)} edge agents replaying: "
                          + ", ".join(c for c, _, _ in patients))  # fmt: skip
            console.print(f"\n[bold]Open {web_url}[/]  log in as [bold]{settings.username}[/] / "
                          f"[bold]{password}[/]")  # fmt: skip
            _print_patient_links(console, store_url, web_url, patients)
            console.print(f"logs: {settings.workdir / 'logs'}   stop: Ctrl-C\n")
            with console.status(
                f"edge agents labelling their first beats ({settings.warmup_s:.0f} s)…"
            ):
                sup.wait_until(lambda: False, timeout=settings.warmup_s)  # ends early if one dies
            sup.start(comps[0])
            console.print("[green]✓[/] aggregator started: federated rounds begin")
            store = open_store(store_url)
            started = time.monotonic()
            try:
                with Live(
                    _status_table(store, sup, started), console=console, refresh_per_second=1
                ) as live:
                    while (
                        not settings.duration_s or time.monotonic() - started < settings.duration_s
                    ):
                        stopped = sup.failed()
                        if stopped:
                            names = ", ".join(r.component.name for r in stopped)
                            log = stopped[0].log_path
                            raise DemoError(f"{names} stopped; see {log}:\n{sup.tail(log)}")
                        live.update(_status_table(store, sup, started))
                        time.sleep(1.0)
            finally:
                store.close()
        except KeyboardInterrupt:  # also supervisor.StopSignal (SIGTERM, SIGHUP)
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                console.print("\nstopping…")
        except RuntimeError as exc:
            raise DemoError(str(exc)) from exc
        finally:
            sup.stop_all()
            if broker is not None:
                broker.stop()
    with contextlib.suppress(OSError):
        console.print("stopped; nothing left running.")
    return 0


def _print_patient_links(
    console: Any, store_url: str, web_url: str, patients: list[tuple[str, Path, bool]]
) -> None:
    """A one-day link per patient (the patient's own page), with a QR code of the first."""
    from store.factory import open_store
    from web.patient_link import mint_patient_link

    store = open_store(store_url)
    try:
        links = [mint_patient_link(store, cid, web_url, days=1, simulated=sim)
                 for cid, _path, sim in patients]  # fmt: skip
    finally:
        store.close()
    console.print("patients' own pages (valid one day):")
    for link in links:
        console.print(f"  {link.client_id}: {link.url}", soft_wrap=True)
    console.print(
        f"{links[0].client_id}'s link as a QR code (scan it with a phone on this network):"
    )
    console.print(links[0].qr_terminal(), highlight=False, markup=False)


def _handler(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    workdir = args.workdir or (
        default_cache_dir(env) / "demo" / datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    )
    settings = DemoSettings(
        workdir=Path(workdir),
        patients=args.patients,
        broker_url=args.broker,
        mqtt_port=args.mqtt_port,
        store_url=args.store,
        web_port=args.web_port,
        rounds=args.rounds,
        strategy=args.strategy,
        speed=args.speed,
        duration_s=args.duration,
        warmup_s=args.warmup,
        round_interval_s=args.round_interval,
        deadline_s=args.deadline,
        simulated=args.simulated,
        password=env.get("MEDCHAIN_DEMO_PASSWORD", ""),
    )
    return run_demo(settings, env)


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole system on this machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--patients", type=int, default=4, help="edge agents to run (default 4)")
    p.add_argument("--broker", help="use this broker (mqtt://host:port) instead of starting one")
    p.add_argument(
        "--mqtt-port", type=int, default=0, help="port of the started broker (default: free)"
    )
    p.add_argument("--store", help="store URL (default: SQLite in the work folder)")
    p.add_argument("--web-port", type=int, default=8080, help="web app port (default 8080)")
    p.add_argument("--rounds", type=int, default=50, help="federated rounds to run")
    p.add_argument(
        "--strategy", default="fedavg", help="fedavg|fedprox|fedadam|fedyogi|median|trimmed_mean"
    )
    p.add_argument("--deadline", type=float, default=40.0, help="round reporting window, s")
    p.add_argument(
        "--round-interval", type=float, default=20.0, help="pause between rounds, s (default 20)"
    )
    p.add_argument(
        "--warmup", type=float, default=20.0, help="s of replay before the first round (default 20)"
    )
    p.add_argument("--speed", default="realtime", help="replay speed: realtime, max or a factor")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many s (0: until Ctrl-C)"
    )
    p.add_argument(
        "--simulated", action="store_true", help="replay simulated ECG even if data exist"
    )
    p.add_argument("--workdir", type=Path, help="folder for the store, buffers and logs")
    p.set_defaults(func=_handler)
