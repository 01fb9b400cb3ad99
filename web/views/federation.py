"""Federation view: rounds, metrics per round, model versions with cards, clients, and the
training controls (written to the store's training-control state; the aggregator follows it).

The controls never talk to the aggregator directly: ``Store.set_training_control`` replaces the
desired state and bumps ``generation``; every change is audit-logged.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from flask import Blueprint, Response, abort, flash, jsonify, redirect, render_template, url_for
from werkzeug.wrappers.response import Response as WerkzeugResponse

from common.errors import ConfigError
from common.training_config import CHOICE_FIELDS, NUMERIC_FIELDS, check_training_config
from store.records import DesiredTraining, ModelVersion, Round, TrainingControl
from web import auth
from web.metric_names import MEASURE_HELP
from web.round_charts import latest_values
from web.views.context import settings, store
from web.views.forms import choice, integer, payload, text
from web.views.forms import client_id as valid_client_id
from web.views.patients import client_json
from web.views.round_metrics import metric_series, metric_text, metrics

bp = Blueprint("federation", __name__)

_DATASET = re.compile(r"^[A-Za-z0-9_.:/-]{0,64}$")
MAX_CONFIG_BYTES = 4096
# The numeric and choice fields of the form are the keys of common.training_config, which
# also checks the whole config (advanced JSON included) as the aggregator will read it.
CONFIG_FIELDS = NUMERIC_FIELDS


def round_json(r: Round, now: float) -> dict[str, Any]:
    """A round with participants, quorum, duration (s) and its round-level metrics."""
    end = r.closed_at if r.closed_at is not None else now
    return {
        "round_id": r.round_id, "task": r.task, "strategy": r.strategy, "state": str(r.state),
        "participants": store().count_updates(r.round_id),
        "rejected": len(store().list_rejected_updates(r.round_id)),
        "selected": len(r.selected_clients), "quorum": r.quorum,
        "opened_at": r.opened_at, "closed_at": r.closed_at, "deadline": r.deadline,
        "duration_s": round(max(0.0, end - r.opened_at), 1),
        "base_version": r.base_version, "result_version": r.result_version,
        "failure_reason": r.failure_reason, "config": r.config,
        "metrics": store().round_metrics(r.round_id),
    }  # fmt: skip


def model_json(m: ModelVersion) -> dict[str, Any]:
    """A model version with its card."""
    return {"version": m.version, "parent": m.parent, "round_id": m.round_id, "sha256": m.sha256,
            "size_bytes": m.size_bytes, "format": m.format, "metrics": m.metrics, "card": m.card,
            "created_at": m.created_at}  # fmt: skip


def control_json(c: TrainingControl) -> dict[str, Any]:
    """The desired training state."""
    return {"desired": str(c.desired), "task": c.task, "strategy": c.strategy,
            "dataset": c.dataset, "rounds": c.rounds, "config": c.config,
            "updated_by": c.updated_by, "updated_at": c.updated_at,
            "generation": c.generation}  # fmt: skip


def overview() -> dict[str, Any]:
    """Everything the federation page shows."""
    now = time.time()
    return {
        "control": control_json(store().get_training_control()),
        "rounds": [round_json(r, now) for r in store().list_rounds(limit=20)],
        "models": [model_json(m) for m in store().list_models(limit=10)],
        "clients": [client_json(c) for c in store().list_clients()],
    }


def apply_control(data: dict[str, Any], actor: str) -> TrainingControl:
    """Validate a control change and write it (see the module docstring)."""
    s = settings()
    action = choice(data, "action", ("start", "stop", "save"))
    current = store().get_training_control()
    task = choice(data, "task", frozenset(s.tasks))
    strategy = choice(data, "strategy", frozenset(s.strategies))
    rounds = integer(data, "rounds", lo=1, hi=10_000)
    dataset = text(data, "dataset", max_len=64, required=False)
    if not _DATASET.match(dataset):
        abort(400, description="A dataset name uses letters, digits and _.:/- only.")
    config = _config(data)
    desired = {"start": DesiredTraining.RUNNING, "stop": DesiredTraining.STOPPED}.get(
        action, current.desired
    )
    ctl = store().set_training_control(desired=desired, task=task, strategy=strategy,
                                       dataset=dataset, rounds=rounds, config=config,
                                       updated_by=actor)  # fmt: skip
    store().audit(actor, f"training_{action}", target=task, details=control_json(ctl))
    return ctl


def _config(data: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    raw = data.get("config_json", "")
    if isinstance(raw, dict):
        config.update(raw)
    elif isinstance(raw, str) and raw.strip():
        if len(raw) > MAX_CONFIG_BYTES:
            abort(400, description=f"Advanced config is longer than {MAX_CONFIG_BYTES} bytes.")
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            abort(400, description=f"Advanced config is not valid JSON: {exc.msg}.")
        if not isinstance(parsed, dict):
            abort(400, description="Advanced config must be a JSON object.")
        config.update(parsed)
    for name, (typ, lo, hi) in CONFIG_FIELDS.items():
        val = data.get(name, "")
        if val in ("", None):
            continue
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            config[name] = val  # a JSON number: check_training_config judges it (2.5 epochs)
            continue
        try:
            num = typ(val) if not isinstance(val, bool) else None
        except (TypeError, ValueError, OverflowError):
            num = None
        if num is None or not lo <= num <= hi:
            abort(400, description=f"Field '{name}' must be a number between {lo:g} and {hi:g}.")
        config[name] = num
    for name, options in CHOICE_FIELDS.items():
        if data.get(name):
            config[name] = choice(data, name, options)
    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        abort(400, description="The training config is too large.")
    try:
        return check_training_config(config)
    except ConfigError as exc:
        abort(400, description=f"Training config: {exc}.")


def apply_assignment(cid: str, data: dict[str, Any], actor: str) -> dict[str, Any]:
    """Set the task and dataset of one client (keeps its credentials)."""
    valid_client_id(cid)
    client = store().get_client(cid)
    if client is None:
        abort(404, description=f"Unknown client {cid!r}.")
    task = choice(data, "task", frozenset(settings().tasks))
    dataset = text(data, "dataset", max_len=64, required=False)
    if not _DATASET.match(dataset):
        abort(400, description="A dataset name uses letters, digits and _.:/- only.")
    updated = store().register_client(
        cid, credentials_hash=client.credentials_hash, task=task, dataset=dataset
    )
    store().audit(
        actor, "client_assignment", target=cid, details={"task": task, "dataset": dataset}
    )
    return client_json(updated)


@bp.get("/federation")
def view() -> str:
    """The federation page."""
    p = auth.require_clinician()
    series, charts = metrics()
    return render_template("federation.html", data=overview(), can_control=p.is_admin,
                           audit=store().list_audit(limit=15), measure_help=MEASURE_HELP,
                           latest=latest_values(charts, series["rounds"], series["series"]),
                           metric_text=metric_text)  # fmt: skip


@bp.post("/federation/control")
def control_form() -> WerkzeugResponse:
    """Form post of the training controls (admin)."""
    p = auth.require_admin()
    ctl = apply_control(payload(), p.name)
    flash(f"Training {ctl.desired} for task {ctl.task} ({ctl.strategy}, {ctl.rounds} rounds); "
          f"the aggregator picks it up (generation {ctl.generation}).", "ok")  # fmt: skip
    return redirect(url_for("federation.view"))


@bp.post("/federation/clients/<client_id>")
def assignment_form(client_id: str) -> WerkzeugResponse:
    """Form post of one client's task/dataset (admin)."""
    p = auth.require_admin()
    row = apply_assignment(client_id, payload(), p.name)
    flash(f"Client {client_id}: task {row['task']}, dataset {row['dataset'] or '-'}.", "ok")
    return redirect(url_for("federation.view"))


@bp.get("/api/federation")
def api_overview() -> Response:
    """Control, last 20 rounds, last 10 models (with cards), clients."""
    auth.require_clinician()
    return jsonify(overview())


@bp.get("/api/federation/rounds")
def api_rounds() -> Response:
    """Last 50 rounds."""
    auth.require_clinician()
    now = time.time()
    return jsonify(rounds=[round_json(r, now) for r in store().list_rounds(limit=50)])


@bp.get("/api/federation/metrics")
def api_metrics() -> Response:
    """Round-level metrics of the last 50 rounds, one series per metric name."""
    auth.require_clinician()
    return jsonify(metric_series())


@bp.get("/api/federation/models")
def api_models() -> Response:
    """Last 50 model versions with cards."""
    auth.require_clinician()
    return jsonify(models=[model_json(m) for m in store().list_models(limit=50)])


@bp.get("/api/federation/models/<int:version>")
def api_model(version: int) -> Response:
    """One model version with its card (404 if absent)."""
    auth.require_clinician()
    return jsonify(model_json(store().get_model(version)))


@bp.get("/api/federation/control")
def api_get_control() -> Response:
    """The desired training state."""
    auth.require_clinician()
    return jsonify(control_json(store().get_training_control()))


@bp.post("/api/federation/control")
def api_set_control() -> Response:
    """``{action: start|stop|save, task, strategy, rounds, dataset?, mode?, quorum?, ...}`` (admin)."""
    p = auth.require_admin()
    return jsonify(control_json(apply_control(payload(), p.name)))


@bp.post("/api/federation/clients/<client_id>")
def api_assignment(client_id: str) -> Response:
    """``{task, dataset?}`` for one client (admin)."""
    p = auth.require_admin()
    return jsonify(apply_assignment(client_id, payload(), p.name))


@bp.get("/api/federation/audit")
def api_audit() -> Response:
    """The latest 100 audit entries (admin)."""
    auth.require_admin()
    entries = store().list_audit(limit=100)
    return jsonify(audit=[{"at": e.at, "actor": e.actor, "action": e.action, "target": e.target,
                           "details": e.details} for e in entries])  # fmt: skip
