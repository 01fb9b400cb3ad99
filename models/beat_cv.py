"""Patient-wise cross-validation on DS1: how the beat task's settings are chosen (never DS2).

DS1's 22 records are split into the three fixed :data:`FOLDS` of patients; a student is
trained on two (directly, or distilled from a teacher as ``medchain train`` does) and predicts
the third; the pooled confusion matrix over the folds gives Se/+P, macro-F1 and the jk index.
With ``gate``/``veto`` the net is followed by the RR gate fitted on the training folds and the
template veto, as ``medchain train`` ships it. ``views`` adds augmented copies of the training
records (``models.augment``); ``conditions`` scores the held-out patients again as another
device would record them (another lead, noise at an SNR, another rate), each condition a
``RecordView`` applied to the held-out records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from models.augment import RecordView
from models.distill import distill
from models.metrics import classification_metrics, jk_index
from models.nets import build_net
from models.rr_gate import fit_rr_gate
from models.tasks.base import LoadOptions, NetSpec, TaskData, TrainSpec
from models.template_veto import TemplateVeto
from models.train import fit, predict_logits

_LOGGER = logging.getLogger(__name__)

FOLDS = (  # fixed, spreading the S/V/F-rich records (209, 207, 208, 201, 118, 220, 223)
    ("101", "106", "112", "118", "201", "215", "223", "230"),
    ("108", "114", "115", "122", "203", "207", "209"),
    ("109", "116", "119", "124", "205", "208", "220"),
)
N_CLASSES = 5
# the RR-gate variants the shipped gate (S vs rest, no V expert) was chosen against
GATE_VARIANTS: dict[str, dict[str, Any]] = {"ns": {"ns_only": True}, "all_v": {"v_index": 2}}
Loader = Callable[[list[str], RecordView | Callable[[str], list[RecordView]] | None], TaskData]


@dataclass(frozen=True)
class CvConfig:
    """One configuration to cross-validate.

    Attributes
    ----------
    student : NetSpec
    train : TrainSpec
    seed : int
    teacher : NetSpec, optional
        Distil the student from this teacher (``medchain train``); None: train it directly.
    teachers : int
        Distil from the probability average of this many teachers.
    gate : bool
        Score the net followed by the RR gate (fitted on the training folds).
    veto : float, optional
        Also score gate + template veto at this RMS threshold (form ``served``).
    veto_grid : tuple of float
        Also score gate + veto at each of these thresholds (forms ``veto_<t>``), to choose it.
    gate_variants : mapping
        Name -> ``fit_rr_gate`` options (e.g. ``{"ns_only": True}``): other gates fitted on the
        same folds, scored as forms ``gate_<name>`` (:data:`GATE_VARIANTS`: the ones compared
        when the shipped gate was chosen, docs/models.md).
    views : callable, optional
        ``record -> [RecordView]``: augmented copies of each training record.
    conditions : mapping
        Name -> ``RecordView`` of the held-out records to score besides the records as they are.
    """

    student: NetSpec
    train: TrainSpec
    seed: int = 0
    teacher: NetSpec | None = None
    teachers: int = 1
    gate: bool = True
    veto: float | None = None
    veto_grid: tuple[float, ...] = ()
    gate_variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    views: Callable[[str], list[RecordView]] | None = None
    conditions: Mapping[str, RecordView] = field(default_factory=dict)


def by_record(
    y: npt.NDArray[Any], p: npt.NDArray[Any], groups: npt.NDArray[Any], cls: int
) -> dict[str, list[int]]:
    """``record: [found, present, false calls]`` of class ``cls`` for records with any such
    beat or call."""
    out = {}
    for rec in np.unique(groups):
        g = groups == rec
        hit, true = (g & (y == cls) & (p == cls)), (g & (y == cls))
        false = g & (y != cls) & (p == cls)
        if true.any() or false.any():
            out[str(rec)] = [int(hit.sum()), int(true.sum()), int(false.sum())]
    return out


def scores(
    y: npt.NDArray[Any], p: npt.NDArray[Any], groups: npt.NDArray[Any], classes: Sequence[str]
) -> dict[str, Any]:
    """jk, macro-F1, per-class Se/+P, confusion and per-record SVEB and VEB counts."""
    m = classification_metrics(y, p, classes)
    m.update(jk_index(np.asarray(m["confusion"]), classes))
    return {
        "jk": round(m["jk"], 4),
        "macro_f1": round(m["macro_f1"], 4),
        "se_ppv": {
            c: [round(v["se"] or 0, 4), round(v["ppv"] or 0, 4)] for c, v in m["per_class"].items()
        },
        "confusion": m["confusion"],
        "sveb_by_record": by_record(y, p, groups, 1),
        "veb_by_record": by_record(y, p, groups, 2),
    }


class Ensemble(torch.nn.Module):
    """Teachers averaged in probability; ``forward`` returns log(mean softmax) as the logits
    (what ``models.distill`` softens by its temperature) and no embedding."""

    def __init__(self, nets: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, signal: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, None]:
        probs = torch.stack([torch.softmax(n(signal, feats)[0], dim=1) for n in self.nets])
        return torch.log(probs.mean(dim=0).clamp_min(1e-12)), None


def train_fold(train: TaskData, config: CvConfig) -> torch.nn.Module:
    """The student of one fold: trained directly, or distilled from ``config.teachers``
    teachers trained first (seeds ``seed``, ``seed + 1000``, ...; student ``seed + 1``)."""
    _, channels, length = train.signal.shape
    n_feat = train.features.shape[1]
    seed, spec = config.seed, config.train
    if config.teacher is None:
        torch.manual_seed(seed)
        net = build_net(config.student, channels, length, n_feat, N_CLASSES)
        fit(net, train, spec, seed=seed, n_classes=N_CLASSES)
        return net
    teachers = []
    for i in range(config.teachers):
        torch.manual_seed(seed + 1000 * i)
        t_net = build_net(config.teacher, channels, length, n_feat, N_CLASSES)
        fit(t_net, train, spec, seed=seed + 1000 * i, n_classes=N_CLASSES)
        teachers.append(t_net.eval())
    torch.manual_seed(seed + 1)
    net = build_net(config.student, channels, length, n_feat, N_CLASSES)
    teacher = teachers[0] if len(teachers) == 1 else Ensemble(teachers).eval()
    distill(net, train, spec, teacher=teacher, seed=seed + 1)
    return net


def _softmax(logits: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: npt.NDArray[np.float64] = z / z.sum(axis=1, keepdims=True)
    return out


def served(
    net: torch.nn.Module, data: TaskData, train: TaskData, config: CvConfig
) -> dict[str, npt.NDArray[np.int64]]:
    """Predicted classes of ``data``: the net alone, and (if configured) as shipped."""
    probs: npt.NDArray[Any] = _softmax(predict_logits(net, data))
    out = {"net": probs.argmax(axis=1)}
    for name, options in config.gate_variants.items():
        gate = fit_rr_gate(train.features, train.labels, 0, 1, **options)
        out[f"gate_{name}"] = gate.apply(probs, data.features).argmax(axis=1)
    if config.gate:
        probs = fit_rr_gate(train.features, train.labels, 0, 1).apply(probs, data.features)
        out["gate"] = probs.argmax(axis=1)
    if data.signal.shape[1] > 1:
        for rms in config.veto_grid:
            out[f"veto_{rms:g}"] = TemplateVeto(rms, 2, 4).apply(probs, data.signal).argmax(axis=1)
        if config.veto is not None:
            out["served"] = TemplateVeto(config.veto, 2, 4).apply(probs, data.signal).argmax(axis=1)
    return out


def cross_validate(
    load: Loader, config: CvConfig, classes: Sequence[str], records: Sequence[str] | None = None
) -> dict[str, Any]:
    """Pooled scores over :data:`FOLDS` of every condition (``clean`` = the records as they
    are) and every served form (``net``, ``gate``, ``served`` = gate + veto).

    ``load(records, view)`` returns the task's preprocessed beats (``models.tasks.beat.
    load_records`` with the task's options). ``records`` restricts the folds (smoke tests).
    """
    started = time.monotonic()
    conditions: dict[str, RecordView | None] = {"clean": None, **config.conditions}
    pooled: dict[tuple[str, str], list[Any]] = {}
    folds = [[r for r in f if records is None or r in records] for f in FOLDS]
    folds = [f for f in folds if f]
    everyone = [r for f in folds for r in f]
    for k, held in enumerate(folds):
        rest = [r for r in everyone if r not in held]
        train = load(rest, None)
        if config.views is not None:
            views = config.views
            extra = load(rest, views)
            train = _concat(train, extra)
        _LOGGER.info("fold %d: %d training beats, held out %s", k, len(train), held)
        net = train_fold(train, config)
        clean_train = load(rest, None)
        for cname, view in conditions.items():
            test = load(held, view)
            for form, pred in served(net, test, clean_train, config).items():
                pooled.setdefault((cname, form), []).append((test.labels, pred, test.groups))
    out: dict[str, Any] = {"seconds": round(time.monotonic() - started)}
    for (cname, form), parts in pooled.items():
        y, p, g = (np.concatenate([x[i] for x in parts]) for i in range(3))
        out.setdefault(cname, {})[form] = scores(y, p, g, classes)
    return out


def _concat(a: TaskData, b: TaskData) -> TaskData:
    return TaskData(
        np.concatenate([a.signal, b.signal]),
        np.concatenate([a.features, b.features]),
        np.concatenate([a.labels, b.labels]),
        np.concatenate([a.groups, b.groups]),
    )


def beat_loader(options: LoadOptions) -> Loader:
    """``load(records, view)`` over the beat task's cached preprocessing."""
    from models.tasks.beat import BEAT_SPEC, load_records

    def load(
        records: list[str], view: RecordView | Callable[[str], list[RecordView]] | None
    ) -> TaskData:
        return load_records(list(records), options, BEAT_SPEC, view)

    return load


def with_overrides(spec: Any, overrides: Mapping[str, Any]) -> Any:
    """``dataclasses.replace`` that turns JSON lists into tuples for tuple fields."""
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(spec, **fixed)
