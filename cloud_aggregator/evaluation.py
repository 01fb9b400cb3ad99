"""Server-side evaluation of each round's global model on a held-out labelled set.

In head mode the int8 backbone is frozen, so the evaluation embeddings are computed once with
onnxruntime and each round only applies the new head in numpy (milliseconds per round). The
scores are those of what a device serves from the release: the head's softmax, then the RR gate
when the release's card carries one (``input_contract.parameters.rr_gate``, models/rr_gate.py),
which re-splits N and S by the beats' RR features, then the template veto when the card carries
one (``input_contract.parameters.template_veto``, models/template_veto.py), which serves V calls
that look like the wearer's usual beat as Q.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud_aggregator.releases import CARD_FILE
from common.errors import ConfigError
from common.fl_protocol import ModelRelease
from models.metrics import classification_metrics
from models.rr_gate import RRGate
from models.template_veto import TemplateVeto

_LOGGER = logging.getLogger(__name__)


def embed_with_onnx(
    onnx_bytes: bytes, inputs: Mapping[str, npt.NDArray[np.float32]], batch: int = 4096
) -> npt.NDArray[np.float32]:
    """``embedding`` output (n, E) of a beat model for the given inputs."""
    import onnxruntime as ort  # adapter import

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    n = len(next(iter(inputs.values())))
    out = [
        sess.run(["embedding"], {k: np.ascontiguousarray(inputs[k][s : s + batch]) for k in names})[
            0
        ]
        for s in range(0, n, batch)
    ]
    return np.concatenate(out).astype(np.float32)


def input_channels(onnx_bytes: bytes, name: str = "beat") -> int | None:
    """Channel count (axis 1) the model expects on input ``name`` (None if dynamic/absent)."""
    import onnxruntime as ort  # adapter import

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    for i in sess.get_inputs():
        if i.name == name and len(i.shape) > 1 and isinstance(i.shape[1], int):
            return int(i.shape[1])
    return None


def fit_channels(signal: npt.NDArray[np.float32], channels: int | None) -> npt.NDArray[np.float32]:
    """Keep the first ``channels`` channels of (N, C, L) windows (loaders may add derived ones)."""
    if channels is None or signal.shape[1] == channels:
        return signal
    if signal.shape[1] < channels:
        raise ValueError(f"model expects {channels} channels, data has {signal.shape[1]}")
    return np.ascontiguousarray(signal[:, :channels])


def summary_metrics(
    labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], classes: Sequence[str]
) -> dict[str, float]:
    """Flat float metrics: macro-F1, accuracy, kappa and Se/+P/F1 of every class (NaN if
    undefined)."""
    m = classification_metrics(labels, predicted, list(classes))
    out = {
        "macro_f1": float(m["macro_f1"]),
        "accuracy": float(m["accuracy"]),
        "kappa": float(m["kappa"]),
    }
    for name, pc in m["per_class"].items():
        out[f"se_{name}"] = float("nan") if pc["se"] is None else float(pc["se"])
        out[f"ppv_{name}"] = float("nan") if pc["ppv"] is None else float(pc["ppv"])
        se, ppv = out[f"se_{name}"], out[f"ppv_{name}"]
        out[f"f1_{name}"] = 2 * se * ppv / (se + ppv) if se + ppv > 0 else float("nan")
    return out


class HeadEvaluator:
    """Evaluates releases' heads on fixed embeddings, re-embedding when the backbone changes.

    Parameters
    ----------
    embeddings : ndarray, shape (n, E)
        Embeddings of the evaluation beats (from the frozen backbone).
    labels : ndarray, shape (n,)
        True class indices.
    classes : sequence of str
        Class names in index order (e.g. AAMI ``N S V F Q``).
    inputs : mapping, optional
        The model inputs of the same beats; needed to re-embed after a distillation.
    backbone : str, optional
        ``backbone_sha256`` of the model that made ``embeddings``.
    """

    def __init__(
        self,
        embeddings: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int64],
        classes: Sequence[str],
        inputs: Mapping[str, npt.NDArray[np.float32]] | None = None,
        backbone: str | None = None,
    ) -> None:
        self.embeddings = embeddings.astype(np.float64)
        self.labels = labels
        self.classes = list(classes)
        self.inputs = inputs
        self.backbone = backbone

    def __call__(self, release: ModelRelease) -> dict[str, float]:
        """Flat metrics of the release's head (see :func:`summary_metrics`)."""
        current = release.metrics.get("backbone_sha256")
        if (
            self.inputs is not None
            and isinstance(current, str)
            and current != self.backbone
            and "model.onnx" in release.files
        ):
            onnx_bytes = release.files["model.onnx"]
            feed = dict(self.inputs)
            feed["beat"] = fit_channels(feed["beat"], input_channels(onnx_bytes))
            self.embeddings = embed_with_onnx(onnx_bytes, feed).astype(np.float64)
            self.backbone = current
        w = release.tensors["head.weight"].astype(np.float64)
        b = release.tensors["head.bias"].astype(np.float64)
        logits = self.embeddings @ w.T + b
        rr = None if self.inputs is None else self.inputs.get("rr")
        beat = None if self.inputs is None else self.inputs.get("beat")
        gate = card_rr_gate(release, logits.shape[1], None if rr is None else rr.shape[1])
        veto = release_veto(release, logits.shape[1], None if beat is None else beat.shape[1])
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        if gate is not None and rr is not None:
            probs = gate.apply(probs, rr)
        if veto is not None and beat is not None:
            probs = veto.apply(probs, beat)
        predicted = np.argmax(probs, axis=1)
        return summary_metrics(self.labels, predicted.astype(np.int64), self.classes)


def _card_parameters(release: ModelRelease) -> dict[str, Any] | None:
    """``input_contract.parameters`` of the release's card (None: no card).

    Raises ValueError (not JSON), KeyError or TypeError (not a card) for the callers to report.
    """
    raw = release.files.get(CARD_FILE)
    if raw is None:
        return None
    params = json.loads(raw)["input_contract"]["parameters"]
    if not isinstance(params, dict):
        raise TypeError(f"parameters is a {type(params).__name__}, not an object")
    return params


def card_rr_gate(release: ModelRelease, n_classes: int, n_features: int | None) -> RRGate | None:
    """The RR gate of the release's model card if it fits the evaluation data, else None.

    None when there is no card or no gate, and (with a warning: a card is data from a file and
    must never stop a round) when the gate is unreadable, does not fit ``n_classes`` /
    ``n_features`` (RR feature columns), or there are no RR features to apply it to.
    """
    try:
        params = _card_parameters(release)
        if params is None or "rr_gate" not in params:
            return None
        gate = RRGate.from_dict(params["rr_gate"])
        problem = _misfit(gate, n_classes, n_features)
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        problem = f"unreadable ({exc})"
    if problem:
        _LOGGER.warning("release %s: RR gate of the card %s: head only", release.version, problem)
        return None
    return gate


def release_veto(
    release: ModelRelease, n_classes: int, n_channels: int | None
) -> TemplateVeto | None:
    """The template veto of the release's model card if it fits the evaluation data, else None.

    None when there is no card or no veto, and (with a warning, as :func:`card_rr_gate`) when it
    is unreadable, names classes outside ``n_classes`` or a channel the evaluation beats
    (``n_channels``) do not have.
    """
    try:
        params = _card_parameters(release)
        if params is None or "template_veto" not in params:
            return None
        veto = TemplateVeto.from_dict(params["template_veto"])
        problem = ""
        if max(veto.v_index, veto.q_index) >= n_classes:
            problem = f"has class indices {veto.v_index}, {veto.q_index} outside {n_classes}"
        elif n_channels is None or veto.channel >= n_channels:
            problem = f"needs beat channel {veto.channel}, the evaluation has {n_channels}"
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        problem = f"unreadable ({exc})"
    if problem:
        _LOGGER.warning(
            "release %s: template veto of the card %s: not applied", release.version, problem
        )
        return None
    return veto


def _misfit(gate: RRGate, n_classes: int, n_features: int | None) -> str:
    """Why ``gate`` cannot be applied to (N, n_classes) probabilities and (N, n_features) RR
    features ("" when it can)."""
    if n_features is None:
        return "has no RR features to use"
    indices = [gate.n_index, gate.s_index] + ([gate.v_index] if gate.v_weight is not None else [])
    if any(not 0 <= i < n_classes for i in indices) or gate.n_index == gate.s_index:
        return f"has class indices {indices} outside {n_classes} classes"
    shapes = [gate.weight.shape] + ([gate.v_weight.shape] if gate.v_weight is not None else [])
    if any(shape != (n_features,) for shape in shapes):
        return f"has weights of shape {shapes}, not ({n_features},)"
    if not all(np.isfinite(v).all() for v in (gate.weight, gate.bias, gate.floor)):
        return "has non-finite parameters"
    return ""


def validation_evaluator(
    spec: str, onnx_bytes: bytes, env: Mapping[str, str], cache: Path | None
) -> HeadEvaluator:
    """The server's held-out evaluator for the beat task.

    Parameters
    ----------
    spec : str
        ``ds1``, ``ds2``, comma-separated MIT-BIH records (read from ``MEDCHAIN_DATA`` or the
        cache), or an ``.npz`` file with ``beat`` (N, C, L), ``rr`` (N, K) and ``labels`` (N,)
        indexing the AAMI classes ``N S V F Q``.
    onnx_bytes : bytes
        The current model (its embeddings of the validation beats are computed once).
    env : mapping
        Environment (dataset location).
    cache : Path, optional
        Beat-window cache folder.

    Raises
    ------
    ConfigError
        Unknown records, a missing dataset or a malformed ``.npz``.
    """
    from models.data.mitdb import AAMI_CLASSES

    beat, rr, labels = _validation_set(spec, env, cache)
    signal = fit_channels(beat, input_channels(onnx_bytes))
    emb = embed_with_onnx(onnx_bytes, {"beat": signal, "rr": rr})
    backbone = hashlib.sha256(onnx_bytes).hexdigest()
    return HeadEvaluator(emb, labels, AAMI_CLASSES, {"beat": beat, "rr": rr}, backbone)


def _validation_set(
    spec: str, env: Mapping[str, str], cache: Path | None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    if spec.endswith(".npz"):
        try:
            with np.load(spec) as z:
                beat, rr, labels = z["beat"], z["rr"], z["labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"validation set {spec}: {exc}") from exc
        if not (beat.ndim == 3 and rr.ndim == 2 and len(beat) == len(rr) == len(labels) > 0):
            raise ConfigError(f"validation set {spec}: beat (N, C, L), rr (N, K), labels (N,)")
        return beat.astype(np.float32), rr.astype(np.float32), labels.astype(np.int64)
    from models.data.mitdb import DS1, DS2
    from models.tasks.base import LoadOptions
    from models.tasks.beat import load_records

    named = {"ds1": DS1, "ds2": DS2}
    records = named.get(spec.lower()) or [r.strip() for r in spec.split(",") if r.strip()]
    unknown = [r for r in records if r not in (*DS1, *DS2)]
    if not records or unknown:
        raise ConfigError(f"unknown validation records {unknown or spec!r}: ds1, a list, or .npz")
    data = load_records(list(records), LoadOptions(env=env, cache_dir=cache))
    return data.signal, data.features, data.labels
