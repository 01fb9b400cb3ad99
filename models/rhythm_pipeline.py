"""Rhythm v2 from data to the shipped model: teacher -> distilled student -> ONNX -> int8 -> card.

:func:`train_models` is the recipe the cross-validation (``models.rhythm_cv``) runs per fold
and :func:`train_rhythm` (``medchain train --task rhythm``) runs once on everything: the CinC
2017 recordings + MIT-BIH DS1 windows + AFTDB windows. The card carries the MIT-BIH DS2 window
metrics (teacher, fp32, int8) and, with ``--cv-report``, the cross-validation tables.

``--out`` receives ``teacher.pt``, ``student.pt`` (never committed), ``rhythm_fp32.onnx``,
``rhythm.onnx`` (int8, shipped), ``rhythm.card.json`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.data.mitdb import DS1, DS2
from models.rhythm_data import WindowBank
from models.rhythm_export import export_rhythm_onnx, quantize_rhythm
from models.rhythm_metrics import rhythm_metrics
from models.rhythm_net import RhythmNet, count_parameters
from models.rhythm_scoring import onnx_window_probs
from models.rhythm_train import feature_standardiser, fit_rhythm, predict_windows
from models.tasks.base import LoadOptions, NetSpec, TrainSpec
from models.train import seed_everything

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a trained rhythm model besides the data and the seed."""

    teacher: NetSpec
    student: NetSpec
    train: TrainSpec  # the teacher's; the student uses ``student_epochs``
    student_epochs: int
    short_share: float = 0.2
    mitdb_windows: int | None = None  # windows of each MIT-BIH record per epoch (None: all 60)
    # sinus windows of MIT-BIH whose beats are at least this share S/V/F: O (None: N)
    mitdb_ectopy_as_o: float | None = None
    teachers: int = (
        1  # teachers trained with seeds seed, seed + 100, ...; the student learns their mean
    )

    def changed(self, changes: dict[str, Any]) -> Recipe:
        """The recipe with fields replaced (``teacher``/``student``/``train``: dicts of
        ``NetSpec``/``TrainSpec`` fields)."""
        out = self
        for key, value in changes.items():
            old = getattr(out, key)
            if isinstance(value, dict):
                fields = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
                value = replace(old, **fields)
            out = replace(out, **{key: value})
        return out

    def smaller(self, epochs: int | None, steps: int | None) -> Recipe:
        """The recipe with fewer epochs/steps (smoke runs)."""
        spec = self.train
        if epochs is not None:
            spec = replace(spec, epochs=epochs)
        if steps is not None:
            spec = replace(spec, steps_per_epoch=steps)
        return replace(
            self, train=spec, student_epochs=epochs if epochs is not None else self.student_epochs
        )


class TeacherEnsemble(nn.Module):
    """Several teachers as one: ``logits = log(mean of their softmax)`` (so a softmax of them is
    the mean probability, and distillation softens that mean with its temperature)."""

    def __init__(self, members: list[RhythmNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(
        self, signal: Tensor, features: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        outs = [m(signal, features, lengths) for m in self.members]
        probs = torch.stack([torch.softmax(logits, dim=1) for logits, _ in outs]).mean(dim=0)
        return torch.log(torch.clamp(probs, min=1e-8)), outs[0][1]


@dataclass
class Trained:
    """Result of :func:`train_models`."""

    teacher: nn.Module
    student: RhythmNet
    fp32: Path
    int8: Path
    seconds: dict[str, float]
    losses: dict[str, list[float]]


def default_recipe() -> Recipe:
    """The recipe of the shipped model (``models.tasks.rhythm.TASK`` nets and TrainSpec)."""
    from models.tasks.rhythm import TASK

    return Recipe(TASK.teacher, TASK.student, TASK.train, student_epochs=TASK.train.epochs)


def train_models(bank: WindowBank, recipe: Recipe, seed: int, out: Path) -> Trained:
    """Teacher, distilled student, fp32 ONNX and int8 ONNX trained on ``bank``."""
    out.mkdir(parents=True, exist_ok=True)
    mean, scale = feature_standardiser(bank)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    members, t_losses = [], []
    for k in range(recipe.teachers):
        seed_everything(seed + 100 * k)
        net = RhythmNet(recipe.teacher, mean, scale, 4, bank.channels)
        hist = fit_rhythm(
            net,
            bank,
            recipe.train,
            seed=seed + 100 * k,
            short_share=recipe.short_share,
            every_max=recipe.mitdb_windows,
        )
        name = "teacher.pt" if k == 0 else f"teacher{k}.pt"
        torch.save({"state_dict": net.state_dict(), "meta": net.meta()}, out / name)
        members.append(net)
        t_losses += hist.losses
    teacher: nn.Module = members[0] if len(members) == 1 else TeacherEnsemble(members)
    seconds["teacher"] = time.monotonic() - t0
    t0 = time.monotonic()
    seed_everything(seed + 1)
    student = RhythmNet(recipe.student, mean, scale, 4, bank.channels)
    s_spec = replace(recipe.train, epochs=recipe.student_epochs)
    s_hist = fit_rhythm(
        student,
        bank,
        s_spec,
        seed=seed + 1,
        teacher=teacher,
        short_share=recipe.short_share,
        every_max=recipe.mitdb_windows,
    )
    torch.save({"state_dict": student.state_dict(), "meta": student.meta()}, out / "student.pt")
    seconds["student"] = time.monotonic() - t0
    t0 = time.monotonic()
    fp32 = export_rhythm_onnx(student, out / "rhythm_fp32.onnx")
    int8 = quantize_rhythm(fp32, out / "rhythm.onnx", bank, seed)
    seconds["export_quantize"] = time.monotonic() - t0
    _LOGGER.info(
        "trained rhythm teacher %d / student %d params in %s",
        count_parameters(teacher),
        count_parameters(student),
        seconds,
    )
    return Trained(
        teacher, student, fp32, int8, seconds, {"teacher": t_losses, "student": s_hist.losses}
    )


def window_metrics(trained: Trained, bank: WindowBank) -> dict[str, Any]:
    """Teacher / fp32 / int8 metrics of every (full) window of ``bank`` (e.g. MIT-BIH DS2)."""
    idx = np.flatnonzero(~bank.short)
    probs = {
        "teacher_fp32": predict_windows(trained.teacher, bank, idx),
        "fp32": onnx_window_probs(trained.fp32, bank, idx),
        "int8": onnx_window_probs(trained.int8, bank, idx),
    }
    return {
        k: rhythm_metrics(bank.labels[idx], p.argmax(axis=1), groups=bank.records[idx])
        for k, p in probs.items()
    }


def training_bank(options: LoadOptions, recipe: Recipe) -> WindowBank:
    """CinC 2017 (``options.records`` restricts it) + MIT-BIH DS1 + AFTDB."""
    from models.tasks.rhythm import aftdb_bank, cinc_bank, mitdb_bank

    extra = replace(options, records=None)
    mitdb = mitdb_bank(list(DS1), extra, ectopy_as_o=recipe.mitdb_ectopy_as_o)
    return WindowBank.concat([cinc_bank(options), mitdb, aftdb_bank(extra)])


def train_rhythm(
    request: Any, env: dict[str, str], cache_dir: Path | None, cv_report: Path | None = None
) -> dict[str, Any]:
    """``medchain train --task rhythm``: the shipped model, its card and ``metrics.json``.

    ``request`` is ``models.pipeline.TrainRequest`` (``records``: CinC records of a smoke run;
    ``test_records``: MIT-BIH records scored instead of DS2; ``epochs``/``steps``);
    ``cv_report``: a ``models.rhythm_cv`` ``cv.json`` whose tables go into the card.
    """
    from models.rhythm_card import write_card
    from models.tasks.rhythm import mitdb_bank

    torch.set_num_threads(request.threads)
    started = time.monotonic()
    options = LoadOptions(env=env, records=request.records, cache_dir=cache_dir)
    recipe = default_recipe().smaller(request.epochs, request.steps_per_epoch)
    bank = training_bank(options, recipe)
    trained = train_models(bank, recipe, request.seed, request.out_dir)
    ds2 = mitdb_bank(list(request.test_records or DS2), replace(options, records=None))
    evaluations = window_metrics(trained, ds2)
    cv = json.loads(cv_report.read_text()) if cv_report is not None else None
    elapsed = time.monotonic() - started
    card = write_card(
        trained,
        bank,
        recipe,
        evaluations,
        cv,
        seed=request.seed,
        command=request.command,
        elapsed_s=elapsed,
    )
    summary = {
        "task": "rhythm",
        "seed": request.seed,
        "elapsed_s": elapsed,
        "seconds": trained.seconds,
        "params": {
            "teacher": count_parameters(trained.teacher),
            "student": count_parameters(trained.student),
        },
        "recipe": asdict(recipe),
        "losses": trained.losses,
        "evaluations": evaluations,
        "card": str(card),
    }
    (request.out_dir / "metrics.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
