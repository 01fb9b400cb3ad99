"""Renderers of the models' results for docs/results.md (see :mod:`bench.results_render`).

Each takes the ``result`` of one record (``docs/results/NAME.json``) and returns its rows
``(what, result, target / anchor)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Row = tuple[str, str, str]
# MIT-BIH DS2 of de Chazal et al. (2004): models.data.mitdb.DS2, spelled here so rendering
# the results does not import the data readers
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")  # fmt: skip


def pct(x: float) -> str:
    """A ratio as a percentage with one decimal."""
    return f"{100 * x:.1f} %"


def aft_loo(r: dict[str, Any]) -> list[Row]:
    a, b, t = r["event_a_N_vs_T"], r["event_b_S_vs_T"], r["three_class"]
    return [(
        f"AF termination (`aft`, AFTDB), leave-one-record-out on the {t['n']} learning records",
        f"N vs T {a['correct']}/{a['n']}; S vs T {b['correct']}/{b['n']}; three classes: "
        f"accuracy {pct(t['accuracy'])}, macro-F1 {t['macro_f1']:.3f}",
        "chance: 10/20 per event",
    )]  # fmt: skip


def aft_event_b(r: dict[str, Any]) -> list[Row]:
    best = max(r["per_set"].values())
    return [(
        f"AF termination event B (S vs T), end-of-record features ({len(r['per_set'])} sets), "
        f"nested leave-one-out on the {r['n']} learning records",
        f"{r['correct']}/{r['n']} (set chosen inside each fold); plain LOO of each set "
        f"{min(r['per_set'].values())}-{best}/{r['n']}; largest |d'| of one feature "
        f"{max(abs(v) for v in r['separation_d_prime'].values()):.2f}",
        "chance: 10/20; best eligible 18/20 on test set B",
    )]  # fmt: skip


def edge_vt_runs(r: dict[str, Any]) -> list[Row]:
    records = r["records"]
    where = "MIT-BIH DS2" if tuple(records) == DS2 else "MIT-BIH records " + ", ".join(records)
    rows = []
    for name, m in r["models"].items():
        t, per = m["totals"], m["per_record"]
        false = _by_record({k: v["false_alarms"] for k, v in per.items()})
        missed = _by_record({k: v["annotated_runs"] - v["caught"] for k, v in per.items()})
        rows.append((
            f"VT-run alarms (`vt_run` events of the edge agent, model `{name}`) on {where}: "
            f"annotated runs of >= 3 V caught (run widened by {r['tolerance_s']:g} s each side)",
            f"{t['caught']} of {t['annotated_runs']} runs caught (missed: {missed}); "
            f"{t['events']} alarms, {t['false_alarms']} false ({false}), "
            f"{t['false_alarms_on_couplet']} of them on a couplet",
            "every run caught, no false alarm",
        ))  # fmt: skip
    return rows


def _by_record(counts: dict[str, int]) -> str:
    """``"231: 3, 210: 1"`` for the records with a count, most first; ``none`` otherwise."""
    kept = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k}: {v}" for k, v in kept) or "none"


def rhythm_softmax(r: dict[str, Any]) -> list[Row]:
    """``python -m models.tasks.rhythm --evaluate --cv`` (one flag alone: the bare result)."""
    if "overall" in r:  # one flag: which one is not in the output
        r = {"result": r}
    names = {"evaluate": "DS1 (+ AFTDB) -> DS2", "cv": "record-wise 4-fold CV", "result": ""}
    parts = []
    for key, res in r.items():
        af = res["overall"]["per_class"]["AF"]
        parts.append(
            f"{names.get(key, key)}: AF F1 {res['af_f1']:.3f} (Se {100 * af['se']:.1f} / "
            f"+P {100 * af['ppv']:.1f}, {res['overall']['n']:,} windows)".lstrip(": ")
        )
    return [(
        "AF detection, v1 feature softmax (`rhythm_softmax.onnx`, beside rhythm v2), MIT-BIH "
        "30 s windows",
        "; ".join(parts) or "—",
        "rhythm v2 int8 on DS2 windows: AF F1 0.844, Se 98.9 / +P 73.6 (docs/models.md)",
    )]  # fmt: skip


def beat_ds2(r: dict[str, Any]) -> list[Row]:
    c = r["per_class"]
    return [(
        f"`beat`, shipped int8 model (`{r['model']}`), MIT-BIH DS1 → DS2 inter-patient (de Chazal "
        f"2004 protocol), {r['n']:,} annotated beats",
        f"SVEB Se/+P {100 * c['S']['se']:.1f} / {100 * c['S']['ppv']:.1f}, VEB "
        f"{100 * c['V']['se']:.1f} / {100 * c['V']['ppv']:.1f}, macro-F1 {100 * r['macro_f1']:.1f}, "
        f"accuracy {pct(r['accuracy'])}, jk {r['jk']:.3f}",
        "SVEB ≥ 76 / ≥ 39, VEB ≥ 85 / ≥ 90 (de Chazal 2004; its jk 0.612, Mondéjar-Guerra 2019: "
        "0.773)",
    )]  # fmt: skip


def _beat_figures(g: dict[str, Any]) -> str:
    """SVEB / VEB / macro-F1 of a ``medchain evaluate --records`` summary, its record CI and
    the SVEB figures without the record carrying most SVEBs."""
    c, ci = g["gross"]["per_class"], g["bootstrap"]["ci95"]
    s = g["carried_by"]["S"]
    lo_hi = "; ".join(
        f"{k} {100 * ci[f'{x}_S'][0]:.1f}-{100 * ci[f'{x}_S'][1]:.1f}"
        for k, x in (("Se", "se"), ("+P", "ppv"))
    )
    return (
        f"SVEB Se/+P {100 * c['S']['se']:.1f} / {100 * c['S']['ppv']:.1f}, VEB "
        f"{100 * c['V']['se']:.1f} / {100 * c['V']['ppv']:.1f}, macro-F1 "
        f"{100 * g['gross']['macro_f1']:.1f}; without {s['record']} SVEB "
        f"{100 * s['without_it']['se']:.1f} / {100 * s['without_it']['ppv']:.1f}; 95 % CI over "
        f"records, SVEB {lo_hi}"
    )


def beat_records(r: dict[str, Any]) -> list[Row]:
    """``medchain evaluate --task beat --records DIR --json`` (with ``--personalise``: the
    device's protocol)."""
    p = r.get("personalised")
    where = f"{r['records_scored']} records of `{Path(r['records_dir']).name}`"
    if not p:
        return [(
            f"`beat`, shipped model end to end from raw ECG (streaming detection, classification"
            f" and quality gate as on the device; detected beats, 150 ms), {where}, "
            f"{r['gross']['n']:,} matched beats",
            f"{_beat_figures(r)}; {r['gated_beats']['unreadable']} beats in unreadable stretches "
            "reported Q",
            "SVEB ≥ 76 / ≥ 39, VEB ≥ 85 / ≥ 90 (de Chazal 2004)",
        )]  # fmt: skip
    decided = sum(x.get("patient_s_in_af_as_n", False) for x in p["per_record"].values())
    return [(
        f"`beat`, the device's personalisation end to end ({where}: the first "
        f"{p['scored_from_min']:g} min labelled, the rest scored; personal head, VEB gate, RR "
        f"rhythm expert, S in AF as N for {decided} patients whose labels confirmed it)",
        f"personal: {_beat_figures(p['personal'])}. Global model on the same beats: "
        f"{_beat_figures(p['global'])}",
        "VEB ≥ 95 / ≥ 95, SVEB ≥ 80 / ≥ 80 (issue 16); Kiranyaz 2016: VEB 95.0 / 89.5, SVEB "
        "64.6 / 62.1",
    )]  # fmt: skip


def models_cv(r: dict[str, Any]) -> list[Row]:
    """``python -m models.beat_cv_cli ...``: DS1 patient-wise CV, the clean condition."""
    clean = r["clean"]
    forms = [f for f in ("served", "gate", "net") if f in clean]

    def figures(form: str) -> str:
        c = clean[form]
        (s_se, s_ppv), (v_se, v_ppv) = c["se_ppv"]["S"], c["se_ppv"]["V"]
        return (
            f"{form}: macro-F1 {100 * c['macro_f1']:.1f}, jk {c['jk']:.3f}, SVEB Se/+P "
            f"{100 * s_se:.1f} / {100 * s_ppv:.1f}, VEB {100 * v_se:.1f} / {100 * v_ppv:.1f}"
        )

    recipe = ", ".join(
        part
        for part in (
            "KD" if r.get("kd") else "",
            "RR gate" if r.get("gate") else "",
            f"template veto {r['veto']:g}" if r.get("veto") is not None else "",
            f"{r['views']} augmented views" if r.get("views") else "",
        )
        if part
    )
    return [(
        f"beat: the recipe ({recipe or r.get('net', 'student')}) in DS1 patient-wise 3-fold CV, "
        f"seed {r['seed']}, held-out patients as recorded",
        "; ".join(figures(f) for f in forms),
        "chooses settings without DS2 (docs/models.md, Hyper-parameter selection)",
    )]  # fmt: skip


def models_rr_gate(r: dict[str, Any]) -> list[Row]:
    """``beat_cv_cli --gate-variants --veto-grid ...``: every served form's jk and VEB Se / +P
    (the veto trades VEB Se for +P; the gate variants differ in what the gate may call)."""
    forms = [
        f"{form}: jk {c['jk']:.3f} (SVEB {100 * c['se_ppv']['S'][0]:.0f} / "
        f"{100 * c['se_ppv']['S'][1]:.0f}, VEB {100 * c['se_ppv']['V'][0]:.0f} / "
        f"{100 * c['se_ppv']['V'][1]:.0f})"
        for form, c in r["clean"].items()
    ]
    return [(
        f"beat: RR-gate variants and template-veto thresholds in DS1 patient-wise 3-fold CV, "
        f"seed {r['seed']} (Se / +P in %)",
        "; ".join(forms),
        "how the gate and the veto's 0.5 were chosen (docs/models.md, RR gate, Template veto)",
    )]  # fmt: skip
