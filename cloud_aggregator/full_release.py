"""The aggregator's builder of whole-model releases (adapter over ``models.federated``).

A whole-model round ends with new weights for every layer; devices run int8 ONNX, so the server
exports and quantizes the network after each round, calibrated on beats it holds itself (the
validation or transfer records: no patient's raw signal is needed; rhythm releases on its
MIT-BIH and AFTDB windows). Torch and ``models`` are
imported inside the functions: an aggregator without the ``train`` extra runs head rounds only
(and fails a whole-model round with that reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cloud_aggregator.closing import Builder
from common import fl_protocol as fl


def full_builder(records: Sequence[str], env: Mapping[str, str], cache: Path | None) -> Builder:
    """``(base, tensors, round_no) -> release`` calibrated on the beats of MIT-BIH ``records``."""
    calibration, task = _beats(records, env, cache)

    def build(base: fl.ModelRelease, tensors: fl.Tensors, round_no: int) -> fl.ModelRelease:
        from models.federated import next_full_release

        return next_full_release(base, tensors, round_no, task, calibration)

    return build


def initial_release(
    records: Sequence[str], env: Mapping[str, str], cache: Path | None, seed: int = 0
) -> fl.ModelRelease:
    """Version 0 of a whole-model run: the beat student from a seeded random start."""
    from models.federated import initial_full_release

    calibration, task = _beats(records, env, cache)
    return initial_full_release(task, calibration, seed)


def _beats(records: Sequence[str], env: Mapping[str, str], cache: Path | None) -> tuple[Any, Any]:
    from models.tasks import get_task
    from models.tasks.base import LoadOptions
    from models.tasks.beat import load_records

    return load_records(list(records), LoadOptions(env=env, cache_dir=cache)), get_task("beat")


def rhythm_builder(calibration: Any) -> Builder:
    """``(base, tensors, round_no) -> release`` for whole-model rhythm rounds, calibrated on
    the server's own windows (``models.rhythm_devices.server_windows``)."""

    def build(base: fl.ModelRelease, tensors: fl.Tensors, round_no: int) -> fl.ModelRelease:
        from models.federated_rhythm import next_rhythm_release

        return next_rhythm_release(base, tensors, round_no, calibration)

    return build
