"""The device's personalisation protocol on one replayed record (``--personalise MIN``).

The detected beats of the first ``MIN`` minutes get the reference labels the way a replay
labels them on the device (``edge_agent.annotations.AnnotationLabeler``, 150 ms), their
embeddings come from the serving classifier, ``edge_agent.personal_head.personalise`` (with the
card's RR gate: the rhythm evidence is kept) fits the personal head, ``OnnxBeatClassifier.
set_head`` serves it, the edge's quality gate (the stream's rhythm judgements) reports its
classes, and only the beats after those minutes are scored, for the personal and the global
model. Re-classifying the later beats in one batch gives the classes a stream would:
the featurizer does not depend on the head, and each beat's output only on its own inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from edge_agent.annotations import AnnotationLabeler
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.quality_gate import af_flags
from models.record_eval import I64, RecordRequest, Stream, confusion_of
from models.record_gate import gate_stream


def personalise_record(
    stream: Stream,
    annotations: tuple[I64, list[str]],
    reference: tuple[I64, I64],
    pairs: tuple[I64, I64],
    clf: OnnxBeatClassifier,
    request: RecordRequest,
    global_head: dict[str, npt.NDArray[np.float32]] | None,
) -> dict[str, Any]:
    """The device's protocol on one record: personalise on the labelled first minutes, serve
    the personal head, score the beats after them (global and personal confusions)."""
    from edge_agent.personal_head import personalise

    assert request.personalise_min is not None and global_head is not None
    fs, k = stream.fs, len(clf.classes)
    boundary = round(request.personalise_min * 60.0 * fs)
    if stream.signal.size < boundary + round(60.0 * fs):
        return {"skipped": f"shorter than {request.personalise_min:g} min + 1 min"}
    labeler = AnnotationLabeler(*annotations, fs, request.tolerance_s)
    first = stream.samples < boundary
    names = labeler.labels_for(stream.samples[first].tolist())
    index = {c: i for i, c in enumerate(clf.classes)}
    train = np.flatnonzero(first)[[lab in index for lab in names]]
    labels = np.asarray([index[lab] for lab in names if lab in index], np.int64)
    windows, rr = stream.batch.windows, stream.batch.rr
    channel0 = windows[:, 0] if windows.ndim == 3 else windows
    emb = clf.embed(windows[train], rr[train]) if train.size else np.zeros((0, 0), np.float32)
    in_af = af_flags(stream.samples[train].tolist(), stream.judgements)
    head = personalise(
        global_head,
        clf.version,
        emb,
        labels,
        windows=channel0[train],
        classes=clf.classes,
        rr=rr[train],
        rr_gate=clf.card.input_contract.parameters.get("rr_gate"),
        in_af=in_af if request.patient_s_in_af else None,
    )
    s_index = index.get("S", -1)
    test = ~first
    personal = stream.predicted.copy()
    clf.set_head(head.weight, head.bias, gate=head.v_gate, rr_split=head.rr_split)
    try:
        if test.any():
            personal[test] = np.argmax(clf.predict(windows[test], rr[test]), axis=1)
    finally:
        clf.set_head(None, None)
    af_rule = request.s_in_af_as_n or head.s_in_af_as_n
    personal, _ = gate_stream(stream.samples, personal, clf.classes, stream.judgements, af_rule)
    ref, ref_cls = reference
    later = ref >= boundary
    matched = np.zeros(ref.size, bool)
    matched[pairs[1]] = True
    return {
        "labelled_beats": int(labels.size),
        "labelled_by_class": np.bincount(labels, minlength=k).tolist(),
        "global": confusion_of(ref_cls, stream.predicted, pairs, later, k),
        "personal": confusion_of(ref_cls, personal, pairs, later, k),
        "missed": np.bincount(ref_cls[later & ~matched], minlength=k).astype(np.int64),
        "false_detections": int(np.sum(test)) - int(np.sum(later[pairs[1]])),
        "v_gate": head.v_gate is not None,
        # labelled beats in stretches called AF, and how many of them are labelled S
        "labelled_in_af": [sum(in_af), int(np.sum(np.asarray(in_af, bool) & (labels == s_index)))],
        "s_in_af_as_n": head.s_in_af_as_n,
    }


def load_head(model: Path, clf: OnnxBeatClassifier) -> dict[str, npt.NDArray[np.float32]]:
    """The global head (``W``, ``b``) of the card's head npz beside ``model``.

    Raises
    ------
    DataNotFoundError
        If the card names no head or its file is missing.
    """
    from edge_agent.personal_head import HEAD_B, HEAD_W

    info = clf.card.head
    if info is None:
        raise DataNotFoundError("a head in the model card", str(model), "personalisation needs it")
    path = model.with_name(info.file)
    if not path.is_file():
        raise DataNotFoundError(f"head {info.file!r}", str(model.parent))
    try:
        with np.load(path) as z:
            return {
                HEAD_W: z[info.weight_key].astype(np.float32),
                HEAD_B: z[info.bias_key].astype(np.float32),
            }
    except (OSError, KeyError, ValueError) as exc:
        raise CorruptInputError(f"head {path}: {exc}") from exc
