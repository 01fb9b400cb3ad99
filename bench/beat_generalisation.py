"""The beat model on MIT-BIH DS2 as other devices would record it, through the serving path.

Every condition is a folder of WFDB records scored by ``medchain evaluate --task beat --records
DIR`` (``models.record_eval``, the edge agent's streaming detection and classification):

- ``MLII``: the records as they are (the documented end-to-end DS2 figures);
- ``second lead``: MIT-BIH's other lead (V1; V2 for 103/117, V5 for 100/123), never trained on;
- ``noise N dB``: MLII plus real noise (QRS-stripped noisy CinC 2017 recordings of the *test*
  pool, never used in training) at the MIT-BIH noise stress test SNRs, on its schedule (clean
  for 5 min, then 2 min noisy / 2 min clean), signal power from the annotated QRS amplitude;
- ``N Hz``: MLII resampled to 128 / 250 / 500 Hz.

For each: gross SVEB/VEB Se and +P, macro-F1, the same without record 232 and the
record-bootstrap 95 % CI. Prints JSON (``--markdown`` a table).

    python bench/beat_generalisation.py [--model M] [--conditions mlii,lead2,noise,rates]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results as registry  # noqa: E402
from common.datasets import dataset_dir  # noqa: E402
from edge_agent.app import DEFAULT_MODEL  # noqa: E402
from models.augment import SNRS_DB, RecordView, apply_view  # noqa: E402
from models.data.mitdb import DS2, read_record  # noqa: E402
from models.record_eval import RecordRequest, evaluate_folder  # noqa: E402
from models.record_eval_cli import build_result  # noqa: E402
from models.record_report import figures  # noqa: E402

SECOND_LEADS = ("V1", "V2", "V4", "V5")
RATES = (128.0, 250.0, 500.0)


def write_view(src: Path, name: str, view: RecordView, out: Path, env: dict[str, str]) -> None:
    """Record ``name``'s MLII as ``view`` records it, as a one-lead WFDB record in ``out``
    with the reference annotations at the new rate."""
    import wfdb

    rec = apply_view(read_record(src, name), view, env)
    wfdb.wrsamp(
        name,
        fs=rec.fs,
        units=["uV"],
        sig_name=["MLII"],
        p_signal=rec.signal_uv[:, None],
        fmt=["32"],
        adc_gain=[1000.0],
        baseline=[0],
        write_dir=str(out),
    )
    ann = wfdb.rdann(str(src / name), "atr")
    scale = rec.fs / 360.0
    samples = np.round(np.asarray(ann.sample) * scale).astype(np.int64)
    keep = samples < rec.signal_uv.size
    wfdb.wrann(
        name,
        "atr",
        samples[keep],
        symbol=[s for s, k in zip(ann.symbol, keep, strict=True) if k],
        fs=rec.fs,
        write_dir=str(out),
    )


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Gross figures, without 232, CI and detection of one ``build_result``."""
    classes = result["classes"]
    rest = [np.array(v["confusion"]) for k, v in result["per_record"].items() if k != "232"]
    pc = result["gross"]["per_class"]
    return {
        "se_S": pc["S"]["se"],
        "ppv_S": pc["S"]["ppv"],
        "se_V": pc["V"]["se"],
        "ppv_V": pc["V"]["ppv"],
        "macro_f1": result["gross"]["macro_f1"],
        "jk": result["gross"].get("jk"),
        "without_232": figures(sum(rest), classes),
        "ci95": result["bootstrap"]["ci95"],
        "detection": result["detection"],
        "not_scored": result["not_scored"],
    }


def score(folder: Path, model: Path, request: RecordRequest, only: list[str]) -> dict[str, Any]:
    clf, outcomes, _ = evaluate_folder(folder, model, request, only)
    header = {"model": str(model), "records_dir": str(folder)}
    return summarise(build_result(outcomes, clf.classes, header, request, 1000))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--conditions", default="mlii,lead2,noise,rates")
    ap.add_argument("--records", default=",".join(DS2))
    ap.add_argument("--markdown", action="store_true", help="print a table instead of JSON")
    registry.add_record_argument(ap, "beat_generalisation")
    args = ap.parse_args()
    env = dict(os.environ)
    src = dataset_dir("mitdb", env)
    only = args.records.split(",")
    wanted = set(args.conditions.split(","))
    out: dict[str, Any] = {"model": str(args.model), "records": only, "conditions": {}}
    started = time.monotonic()
    if "mlii" in wanted:
        out["conditions"]["MLII"] = score(
            src, args.model, RecordRequest(leads=("MLII",), rhythm=False), only
        )
    if "lead2" in wanted:
        lead2 = RecordRequest(leads=SECOND_LEADS, rhythm=False)
        out["conditions"]["second lead"] = score(src, args.model, lead2, only)
    views: dict[str, RecordView] = {}
    if "noise" in wanted:
        for snr in SNRS_DB:
            views[f"noise {snr:g} dB"] = RecordView(
                snr_db=snr, noise_pool="test", nstdb=True, seed=16
            )
    if "rates" in wanted:
        views |= {f"{rate:g} Hz": RecordView(rate_hz=rate) for rate in RATES}
    for cname, view in views.items():
        tmp = Path(tempfile.mkdtemp(prefix="beat-gen-"))
        try:
            for name in only:
                write_view(src, name, view, tmp, env)
            out["conditions"][cname] = score(tmp, args.model, RecordRequest(rhythm=False), only)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{cname}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    out["seconds"] = round(time.monotonic() - started)
    if args.markdown:
        print(markdown(out))
    else:
        print(json.dumps(out, indent=1))
    if args.record:
        registry.record(args.record, out, sys.argv)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown(out: dict[str, Any]) -> str:
    """One table row per condition."""
    rows = [
        "| condition | SVEB Se / +P | VEB Se / +P | macro-F1 | without 232: SVEB Se / +P "
        "| 95 % CI SVEB Se; VEB +P |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in out["conditions"].items():
        w, ci = c["without_232"], c["ci95"]
        rows.append(
            f"| {name} | {_pct(c['se_S'])} / {_pct(c['ppv_S'])} | {_pct(c['se_V'])} / "
            f"{_pct(c['ppv_V'])} | {_pct(c['macro_f1'])} | {_pct(w['se_S'])} / "
            f"{_pct(w['ppv_S'])} | {_pct(ci['se_S'][0])}-{_pct(ci['se_S'][1])}; "
            f"{_pct(ci['ppv_V'][0])}-{_pct(ci['ppv_V'][1])} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
