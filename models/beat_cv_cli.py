"""Command line of the beat task's DS1 patient-wise CV (settings chosen without touching DS2).

The CV itself is ``models.beat_cv``; this module maps flags to a ``CvConfig`` and prints one
JSON line: pooled scores per condition (``clean`` = held-out records as they are;
``--robust`` adds the second lead, test-pool noise at 24/18/12/6/0 dB, 128 Hz and the inverted
lead) and per served form (``net``, ``gate``, ``served`` = gate + template veto).

    python -m models.beat_cv_cli --kd --gate --veto 0.5 --seed 0            # the shipped recipe
    python -m models.beat_cv_cli --kd --gate --veto 0.5 --views 4 --robust  # + augmentation
    python -m models.beat_cv_cli --net student --set balance=0.6 --set epochs=8
    python -m models.beat_cv_cli --kd --gate-variants --veto-grid 0.1,0.2,0.3,0.4,0.5,0.6,0.7
                                   # how the RR gate and the veto's threshold were chosen
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np
import torch

from common.datasets import default_cache_dir
from models.augment import SNRS_DB, RecordView, training_views
from models.beat_cv import GATE_VARIANTS, CvConfig, beat_loader, cross_validate, with_overrides
from models.tasks import LoadOptions, get_task

# held-out conditions of --robust: what another device, lead or noise level records
ROBUST: dict[str, RecordView] = {
    "second_lead": RecordView(lead="second"),
    **{f"noise_{s:g}dB": RecordView(snr_db=s, noise_pool="test", seed=1) for s in SNRS_DB},
    "rate_128": RecordView(rate_hz=128.0),
    "inverted": RecordView(polarity=-1),
}


def _kv(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, raw = item.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv``, run :func:`models.beat_cv.cross_validate`, print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--net", choices=["student", "teacher"], default="student")
    ap.add_argument("--set", action="append", default=[], help="TrainSpec field=value")
    ap.add_argument("--netset", action="append", default=[], help="NetSpec field=value")
    ap.add_argument("--teacherset", action="append", default=[], help="teacher NetSpec k=v")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kd", action="store_true", help="teacher, then KD student (medchain train)")
    ap.add_argument("--teachers", type=int, default=1, help="with --kd: average N teachers")
    ap.add_argument("--gate", action="store_true", help="also score net + RR gate")
    ap.add_argument(
        "--gate-variants",
        action="store_true",
        help="also score the RR-gate variants of models.beat_cv.GATE_VARIANTS (gate_ns, "
        "gate_all_v)",
    )
    ap.add_argument("--veto", type=float, help="also score gate + template veto (RMS below)")
    ap.add_argument(
        "--veto-grid", help="also score gate + veto at these RMS thresholds (comma-separated)"
    )
    ap.add_argument("--views", type=int, default=0, help="augmented views per training record")
    ap.add_argument("--view-noise", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--view-rate", action=argparse.BooleanOptionalAction, default=True, help="views resample"
    )
    ap.add_argument(
        "--view-polarity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="views flip the lead half the time",
    )
    ap.add_argument("--robust", action="store_true", help="score the robustness conditions")
    ap.add_argument("--records", help="restrict DS1 (smoke runs), comma-separated")
    args = ap.parse_args(argv)
    if args.teachers < 1 or (args.teachers > 1 and not args.kd):
        ap.error("--teachers N needs N >= 1, and N > 1 needs --kd")
    torch.set_num_threads(args.threads)
    task = get_task("beat")
    n_views, noise, seed = args.views, args.view_noise, args.seed
    config = CvConfig(
        student=with_overrides(getattr(task, args.net), _kv(args.netset)),
        train=with_overrides(task.train, _kv(args.set)),
        seed=seed,
        teacher=with_overrides(task.teacher, _kv(args.teacherset)) if args.kd else None,
        teachers=args.teachers,
        gate=args.gate or args.veto is not None or bool(args.veto_grid),
        veto=args.veto,
        veto_grid=tuple(float(x) for x in args.veto_grid.split(",")) if args.veto_grid else (),
        gate_variants=GATE_VARIANTS if args.gate_variants else {},
        views=(
            (lambda r: training_views(n_views, seed, r, noise, args.view_rate, args.view_polarity))
            if n_views
            else None
        ),
        conditions=ROBUST if args.robust else {},
    )
    opts = LoadOptions(env=os.environ, cache_dir=default_cache_dir(os.environ) / "preprocessed")
    records = args.records.split(",") if args.records else None
    result = cross_validate(beat_loader(opts), config, task.classes, records)
    head = {k: v for k, v in vars(args).items() if k != "threads"}
    print(
        json.dumps(
            head | result, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)
        )
    )


if __name__ == "__main__":
    main()
