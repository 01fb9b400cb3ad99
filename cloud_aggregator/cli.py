"""``medchain aggregator``, ``medchain simulate`` and ``medchain broker config``.

Settings: flags > ``MEDCHAIN_AGG_*`` environment > ``--settings`` TOML ``[aggregator]`` table >
defaults (see :class:`cloud_aggregator.config.AggregatorSettings`).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.config import load_settings
from common.errors import ConfigError

_LOGGER = logging.getLogger(__name__)


def _kv(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from cloud_aggregator.config import AggregatorSettings

    overrides = {
        "broker_url": args.broker,
        "store_url": args.store,
        "initial_model": getattr(args, "initial_model", None),
        "deadline_s": getattr(args, "deadline", None),
        "dp_clip": getattr(args, "dp_clip", None),
        "dp_noise": getattr(args, "dp_noise", None),
        "worker": getattr(args, "worker", None),
        "distill_every": getattr(args, "distill_every", None),
        "round_interval_s": getattr(args, "round_interval", None),
        "validation": getattr(args, "validation", None),
        "gate_margin": getattr(args, "gate_margin", None),
        "gate_class_margin": getattr(args, "gate_class_margin", None),
    }
    return load_settings(
        AggregatorSettings,
        env=env,
        prefix="MEDCHAIN_AGG",
        toml_path=args.settings,
        table="aggregator" if args.settings else None,
        overrides=overrides,
    )


def _evaluator(spec: str, release: Any, env: Mapping[str, str]) -> Any:
    """The server's validation evaluator, or None (logged: rounds then have no release gate)."""
    if not spec:
        _LOGGER.warning(
            "no validation set (--validation): rounds are published without the release gate"
        )
        return None
    from cloud_aggregator.evaluation import validation_evaluator
    from common.datasets import default_cache_dir

    evaluator = validation_evaluator(
        spec, release.files["model.onnx"], env, default_cache_dir(env) / "beat-cache"
    )
    _LOGGER.info("release gate on: %d validation beats (%s)", len(evaluator.labels), spec)
    return evaluator


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker", help="broker URL mqtt[s]://user:pw@host:port (default mqtt://127.0.0.1:1883)"
    )
    p.add_argument(
        "--store",
        help="store URL sqlite:///file.db or postgresql://... (default sqlite:///medchain.db)",
    )
    p.add_argument("--settings", type=Path, help="TOML file with an [aggregator] table")
    p.add_argument(
        "--initial-model",
        type=Path,
        help="int8 beat ONNX (card + head npz beside it) seeded into an empty store",
    )
    p.add_argument("--deadline", type=float, help="round reporting window, s")
    p.add_argument(
        "--round-interval",
        type=float,
        help="least time between the end of a round and the next one, s (default 0)",
    )
    p.add_argument("--dp-clip", type=float, help="client-level DP: L2 clip per update (0 = off)")
    p.add_argument("--dp-noise", type=float, help="client-level DP: noise multiplier z")
    p.add_argument(
        "--distill-every",
        type=int,
        help="distil into a new int8 student every K rounds (needs torch)",
    )
    p.add_argument(
        "--transfer", default="ds1", help="records of the server's transfer set for distillation"
    )
    p.add_argument(
        "--gate-margin",
        type=float,
        help="release gate: largest accepted fall of macro-F1 (default 0.05; 1 = off)",
    )
    p.add_argument(
        "--gate-class-margin",
        type=float,
        help="release gate: largest accepted fall of a class's sensitivity (default 0.15)",
    )
    p.add_argument(
        "--validation",
        help="held-out labelled set for the release gate and per-round metrics: ds1, MIT-BIH"
        " records (101,106,...) or an .npz with beat, rr, labels (default: none, gate off)",
    )


def _aggregator(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import threading

    from cloud_aggregator.nats_intake import grid_class
    from cloud_aggregator.service import AggregatorService, settle_heap, subscriptions
    from store import DesiredTraining, open_store

    s = _settings(args, env)
    store = open_store(s.store_url)
    service: AggregatorService | None = None
    broker = grid_class(s.broker_url)(
        s.broker_url,
        s.worker_name,
        subscriptions(s.shared_group),
        ca_file=s.ca_file or None,
        on_reconnect=lambda: service.republish.set() if service else None,
    )
    try:
        broker.start(15.0)
        distiller = None
        if s.distill_every > 0:
            from cloud_aggregator.distillation import transfer_distiller
            from cloud_aggregator.simulate import resolve_records
            from common.datasets import default_cache_dir

            distiller = transfer_distiller(
                list(resolve_records(args.transfer)), env, default_cache_dir(env) / "beat-cache"
            )
        service = AggregatorService(store, broker, s, distiller=distiller)
        base = service.ensure_initial_model()
        service.evaluator = _evaluator(s.validation, service.release(base)[0], env)
        if args.start:
            store.set_training_control(
                desired=DesiredTraining.RUNNING,
                task=s.task,
                strategy=args.strategy,
                dataset=args.dataset,
                rounds=args.rounds,
                config=_kv(args.set),
                updated_by="cli",
            )
        print(
            f"aggregator {s.process_tag}: broker {s.broker_url.split('@')[-1]}, task {s.task}",
            flush=True,
        )
        settle_heap()
        service.run(threading.Event(), max_seconds=args.max_seconds)
    finally:
        broker.stop()
        store.close()
    return 0


def _broker_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from cloud_aggregator.broker_config import (
        TlsFiles,
        acl_file,
        check_device_names,
        generate_credentials,
        mosquitto_conf,
        write_password_file,
    )

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    clients = [c for c in (args.clients or "").split(",") if c]
    if args.clients_file:
        clients += [
            line.strip() for line in args.clients_file.read_text().splitlines() if line.strip()
        ]
    aggregators = [u for u in args.aggregator_user.split(",") if u]
    webs = [u for u in args.web_user.split(",") if u]
    check_device_names(clients, [*aggregators, *webs])
    creds_path = out / "credentials.json"
    existing = json.loads(creds_path.read_text()) if creds_path.is_file() else {}
    creds = generate_credentials([*aggregators, *webs, *clients], existing)
    tls = None
    if args.certfile or args.keyfile:
        if not (args.certfile and args.keyfile):
            raise ConfigError("--certfile and --keyfile go together")
        tls = TlsFiles(
            args.certfile.resolve(),
            args.keyfile.resolve(),
            args.cafile.resolve() if args.cafile else None,
        )
    (out / "mosquitto.conf").write_text(
        mosquitto_conf(
            out.resolve(), port=args.port, bind=args.bind, tls=tls, local_port=args.local_port
        )
    )
    (out / "acl").write_text(acl_file(aggregators, webs))
    write_password_file(out / "passwd", creds)
    creds_path.touch(mode=0o600, exist_ok=True)
    creds_path.write_text(json.dumps(creds, indent=1))
    print(
        f"wrote {out}/mosquitto.conf, acl, passwd and credentials.json (mode 600) for {len(creds)} users"
    )
    if tls is None:
        print(
            "warning: no --certfile/--keyfile: the listener is plain TCP (use only on a trusted network)"
        )
    return 0


def register(subparsers: Any) -> None:
    """Add ``aggregator``, ``simulate`` and ``broker`` to the ``medchain`` command."""
    p = subparsers.add_parser(
        "aggregator",
        help="run the federated-learning aggregator service",
        description="Run federated rounds over MQTT for one task; state lives in the store (restart-safe).",
    )
    _common(p)
    p.add_argument("--worker", help="replica name (MQTT client id, round claims)")
    p.add_argument(
        "--start",
        action="store_true",
        help="also write 'training running' to the store (what the web's start button does)",
    )
    p.add_argument("--rounds", type=int, default=10, help="with --start: rounds to run")
    p.add_argument(
        "--strategy",
        default="fedavg",
        help="with --start: fedavg|fedprox|fedadam|fedyogi|median|trimmed_mean",
    )
    p.add_argument(
        "--dataset", default="mitdb", help="with --start: dataset label shown in the web"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --start: round config (fraction, min_clients, quorum_fraction, deadline_s, local_epochs, lr, mu, clip_norm, strategy_params={...})",
    )
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_aggregator)

    p = subparsers.add_parser(
        "broker", help="generate a production Mosquitto config (TLS, passwords, ACL)"
    )
    bsub = p.add_subparsers(dest="broker_command", metavar="SUBCOMMAND")
    c = bsub.add_parser(
        "config",
        help="write mosquitto.conf, acl, passwd and credentials.json",
        description="Per-client passwords and an ACL where a device only publishes its own update/status/pred/live topics and reads round/model and its own label topic; the aggregator alone reads all updates.",
    )
    c.add_argument("--out", type=Path, required=True, help="output folder")
    c.add_argument("--clients", help="comma-separated client ids (= MQTT usernames)")
    c.add_argument("--clients-file", type=Path, help="file with one client id per line")
    c.add_argument(
        "--aggregator-user",
        default="aggregator",
        help="aggregator login(s), one per replica, comma-separated (the login is the client id)",
    )
    c.add_argument("--web-user", default="web", help="web login(s), comma-separated")
    c.add_argument("--certfile", type=Path, help="server certificate (PEM)")
    c.add_argument("--keyfile", type=Path, help="server private key (PEM)")
    c.add_argument("--cafile", type=Path, help="CA certificate (PEM)")
    c.add_argument("--port", type=int, default=8883)
    c.add_argument("--bind", default="0.0.0.0", help="listener address")  # noqa: S104
    c.add_argument("--local-port", type=int, help="extra 127.0.0.1 listener (same auth)")
    c.set_defaults(func=_broker_config)
