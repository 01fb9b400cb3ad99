"""``medchain evaluate --task beat --records DIR``: the beat model on any WFDB folder.

The JSON printed by ``--json`` (schema ``medchain.evaluate.beat.records/1``) is documented in
docs/models.md ("Scoring any WFDB folder"); outside evaluators parse it, so keys are only ever
added. Everything is computed by ``models.record_eval`` (serving path) and
``models.record_report`` (figures).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import ConfigError
from models.record_report import SCHEMA, figures, scored_summary, short_line

if TYPE_CHECKING:  # the serving path (onnxruntime, edge agent) loads only when evaluating
    from models.record_eval import RecordOutcome, RecordRequest

DEFAULT_BOOTSTRAP = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The record-folder options of ``medchain evaluate`` (used with ``--records DIR``)."""
    parser.add_argument(
        "--lead",
        help="with --records DIR: lead name(s) to score, comma-separated in order of "
        "preference (default: the card's lead, MLII, else the record's first signal)",
    )
    parser.add_argument(
        "--personalise",
        type=float,
        metavar="MIN",
        help="with --records DIR: the device's protocol: the first MIN minutes of each record "
        "labelled -> personal head with its VEB gate and the RR gate's rhythm evidence -> "
        "score the rest",
    )
    parser.add_argument(
        "--only", help="with --records DIR: score only these records (comma-separated)"
    )
    parser.add_argument(
        "--annotator", default="atr", help="reference annotation file extension (default atr)"
    )
    parser.add_argument(
        "--rhythm-model",
        metavar="PATH|none",
        help="with --records DIR: the rhythm model of the edge's quality gate (default: the "
        "one the edge loads); 'none' scores the beat model's classes without the gate",
    )
    parser.add_argument(
        "--s-in-af-as-n",
        action="store_true",
        help="with --records DIR: the gate reports S calls inside stretches the rhythm model "
        "calls AF as N (the edge's s_in_af_as_n setting, for patients in permanent AF)",
    )
    parser.add_argument(
        "--no-patient-s-in-af",
        dest="patient_s_in_af",
        action="store_false",
        help="with --personalise: do not let the labelled minutes decide s_in_af_as_n for "
        "the patient (docs/models.md, 'The S-in-AF rule decided per patient')",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_BOOTSTRAP,
        help=f"record-bootstrap resamples for the 95 %% CI (default {DEFAULT_BOOTSTRAP})",
    )


def request_from_args(args: argparse.Namespace) -> RecordRequest:
    """The :class:`RecordRequest` of the CLI flags.

    Raises
    ------
    ConfigError
        On a bad value (one line).
    """
    leads = tuple(x.strip() for x in args.lead.split(",") if x.strip()) if args.lead else None
    if args.lead is not None and not leads:
        raise ConfigError("--lead: give at least one lead name")
    minutes = args.personalise
    if minutes is not None and not (0 < minutes <= 24 * 60):
        raise ConfigError(f"--personalise {minutes:g}: minutes must be in (0, 1440]")
    from models.record_eval import RecordRequest

    rhythm_arg = getattr(args, "rhythm_model", None)
    rhythm = rhythm_arg is None or rhythm_arg.strip().lower() != "none"
    return RecordRequest(
        leads=leads,
        annotator=args.annotator,
        personalise_min=minutes,
        rhythm=rhythm,
        rhythm_model=Path(rhythm_arg) if rhythm and rhythm_arg else None,
        s_in_af_as_n=bool(getattr(args, "s_in_af_as_n", False)),
        patient_s_in_af=bool(getattr(args, "patient_s_in_af", True)),
    )


def _record_entry(o: RecordOutcome, classes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "lead": o.lead,
        "fs": o.fs,
        "duration_s": round(o.duration_s, 3),
        "reference_beats": o.reference_beats,
        "detection": {
            "tp": o.tp,
            "fp": o.fp,
            "fn": o.fn,
            "se": round(o.tp / max(1, o.tp + o.fn), 5),
            "ppv": round(o.tp / max(1, o.tp + o.fp), 5),
        },
        "figures": figures(o.confusion, classes),
        "confusion": o.confusion.tolist(),
        "flags": o.flags,
        "gated_beats": o.gated_beats,
    }


def _personalised(
    scored: list[RecordOutcome], classes: tuple[str, ...], minutes: float, resamples: int
) -> dict[str, Any]:
    done = [o for o in scored if "personal" in o.personal]
    if not done:
        return {"scored_from_min": minutes, "records": 0, "skipped": _skips(scored)}
    out: dict[str, Any] = {"scored_from_min": minutes, "records": len(done)}
    for which in ("global", "personal"):
        out[which] = scored_summary(
            {o.name: o.personal[which] for o in done}, classes, resamples, 0
        )
    out["per_record"] = {
        o.name: {
            "labelled_beats": o.personal["labelled_beats"],
            "labelled_by_class": dict(zip(classes, o.personal["labelled_by_class"], strict=True)),
            "v_gate": o.personal["v_gate"],
            "labelled_in_af": o.personal["labelled_in_af"],
            "patient_s_in_af_as_n": o.personal["s_in_af_as_n"],
            "global": figures(o.personal["global"], classes),
            "personal": figures(o.personal["personal"], classes),
            "confusion_personal": o.personal["personal"].tolist(),
        }
        for o in done
    }
    out["skipped"] = _skips(scored)
    return out


def _skips(scored: list[RecordOutcome]) -> dict[str, str]:
    return {o.name: o.personal["skipped"] for o in scored if "skipped" in o.personal}


def build_result(
    outcomes: list[RecordOutcome],
    classes: tuple[str, ...],
    header: Mapping[str, Any],
    request: RecordRequest,
    resamples: int,
) -> dict[str, Any]:
    """The documented JSON of a folder evaluation (``header``: model and folder fields)."""
    scored = [o for o in outcomes if not o.excluded]
    summary = scored_summary({o.name: o.confusion for o in scored}, classes, resamples, 0)
    tp, fp, fn = (sum(getattr(o, f) for o in scored) for f in ("tp", "fp", "fn"))
    missed = sum((o.missed for o in scored), np.zeros(len(classes), np.int64))
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "task": "beat",
        **header,
        "lead": list(request.leads) if request.leads else None,
        "annotator": request.annotator,
        "tolerance_ms": round(1000 * request.tolerance_s),
        "classes": list(classes),
        "records_scored": len(scored),
        "detection": {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "se": tp / max(1, tp + fn),
            "ppv": tp / max(1, tp + fp),
        },
        "missed_by_class": dict(zip(classes, missed.tolist(), strict=True)),
        "gated_beats": {
            k: sum(o.gated_beats.get(k, 0) for o in scored) for k in ("unreadable", "s_in_af")
        },
        **summary,
        "notes": [v["note"] for v in summary["carried_by"].values() if "note" in v],
        "per_record": {o.name: _record_entry(o, classes) for o in scored},
        "not_scored": {o.name: o.excluded for o in outcomes if o.excluded},
        "flagged": {o.name: o.flags for o in outcomes if o.flags},
    }
    if request.personalise_min is not None:
        result["personalised"] = _personalised(scored, classes, request.personalise_min, resamples)
    return result


def run_records(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Evaluate ``args.model`` (default: the shipped beat model) on ``args.records`` (a folder)."""
    from edge_agent.app import DEFAULT_MODEL
    from models.record_eval import evaluate_folder

    request = request_from_args(args)
    model = Path(args.model) if args.model else DEFAULT_MODEL
    folder = Path(args.records)
    only = [r.strip() for r in args.only.split(",") if r.strip()] if args.only else None
    clf, outcomes, scorer = evaluate_folder(folder, model, request, only)
    header = {
        "model": str(model),
        "model_version": clf.version,
        "model_sha256": clf.card.artifact.sha256,
        "rhythm_model_version": None if scorer is None else scorer.version,
        "s_in_af_as_n": request.s_in_af_as_n,
        "patient_s_in_af": request.patient_s_in_af,
        "records_dir": str(folder),
        "only": only,
    }
    result = build_result(outcomes, clf.classes, header, request, args.bootstrap)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"beat model {clf.version} on {folder} ({result['records_scored']} records)")
    print(f"  global model, every beat: {short_line(result)}")
    for note in result["notes"]:
        print(f"  {note}")
    if "personalised" in result and result["personalised"].get("records"):
        p = result["personalised"]
        print(
            f"  after the first {p['scored_from_min']:g} min, global:   {short_line(p['global'])}"
        )
        print(
            f"  after the first {p['scored_from_min']:g} min, personal: {short_line(p['personal'])}"
        )
    for name, reason in result["not_scored"].items():
        print(f"  not scored: {name}: {reason}")
    return 0
