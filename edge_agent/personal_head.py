"""The device's personal softmax head: a MAP fit on the patient's own labelled beats with the
global head as a Gaussian prior, and what it decides for the patient from them (its file on
the device: ``edge_agent.personal_head_file``).

The personal head is what the edge serves (``OnnxBeatClassifier.set_head``, loaded by
``edge_agent.participation``): ``probs = softmax(embedding @ W.T + b)`` on the frozen backbone's
embedding, W (C, E), b (C,). It stays linear so the serving path needs nothing new.

The fit minimises, over theta = (W, b),

    sum_i s_i * CE(softmax(W x_i + b), y_i) + tau/2 * ||theta - theta_global||^2

(``s_i`` class weights with mean 1) to convergence by Newton's method: (C * (E + 1))^2 = 165^2
Hessian for the shipped model, a few ms per iteration in numpy on a Raspberry Pi. Unlike a
fixed number of SGD epochs, the result does not depend on the learning rate or the number of
examples seen per epoch; ``tau`` is the prior's precision in units of "weighted beats": with
few local beats the global head dominates, with many the patient's data does.

Given the labelled beats' windows, the head also carries the patient's VEB template gate
(:mod:`edge_agent.beat_quality`): a V call unlike every labelled VEB is served as Q. Given their
RR features and the global model's RR gate (the card's ``rr_gate``), it also keeps the gate's
rhythm evidence (:mod:`edge_agent.rr_split`): a beat more premature than every labelled normal
beat of the patient stays S even if the head, which saw no SVEB of this patient, says N.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.beat_quality import VTemplateGate, fit_v_gate
from edge_agent.quality_gate import NORMAL, SUPRAVENTRICULAR, s_in_af_confirmed
from edge_agent.rr_split import RRSplit

_LOGGER = logging.getLogger(__name__)

HEAD_W = "head.weight"
HEAD_B = "head.bias"
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Defaults chosen by cross-validation inside the labelled first 5 minutes of each patient
# only (blocked 5-fold and forward 3 min -> 2 min, pooled over records; see docs/federated.md):
# balance 0 (natural class frequencies: the patient's own prior) and tau 1.
PRIOR_PRECISION = 1.0
BALANCE = 0.0


def softmax(logits: npt.NDArray[np.floating[Any]]) -> F32:
    """Row-wise softmax, numerically stable."""
    z = logits - np.max(logits, axis=1, keepdims=True)
    e = np.exp(z)
    out: F32 = (e / np.sum(e, axis=1, keepdims=True)).astype(np.float32)
    return out


def head_probs(emb: npt.NDArray[Any], weight: npt.NDArray[Any], bias: npt.NDArray[Any]) -> F32:
    """``softmax(emb @ W.T + b)``, shape (n, C)."""
    logits: F64 = emb.astype(np.float64) @ weight.T.astype(np.float64) + bias
    return softmax(logits)


def class_weights(labels: npt.NDArray[np.int64], n_classes: int, power: float) -> F32:
    """Per-class loss weights ``count^-power`` normalised to mean 1 over the examples."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    mean = float(np.sum(w * counts) / max(1.0, counts.sum()))
    return (w / mean if mean > 0 else w).astype(np.float32)


def fit_map_head(
    emb: npt.NDArray[Any],
    labels: npt.NDArray[np.int64],
    weight: npt.NDArray[Any],
    bias: npt.NDArray[Any],
    *,
    tau: float = PRIOR_PRECISION,
    balance: float = BALANCE,
    max_iter: int = 50,
) -> tuple[F32, F32, int]:
    """MAP softmax head with a Gaussian prior N(global head, 1/tau) by damped Newton steps.

    Parameters
    ----------
    emb : ndarray, shape (n, E)
        Embeddings of the patient's labelled beats.
    labels : ndarray, shape (n,)
        Class indices.
    weight, bias : ndarray, shapes (C, E), (C,)
        The global head: the prior's mean and the starting point.
    tau : float
        Prior precision (> 0), in units of one weighted beat's loss.
    balance : float
        Class weights ``count^-balance`` (0 = the patient's natural frequencies).
    max_iter : int
        Newton iterations at most (about 10 are needed).

    Returns
    -------
    (W, b, iterations)
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    n_classes, dim = weight.shape
    n = len(labels)
    x = np.hstack([emb.astype(np.float64).reshape(n, dim), np.ones((n, 1))])
    t0: F64 = np.hstack([weight, bias[:, None]]).astype(np.float64)
    theta = t0.copy()
    s = class_weights(labels, n_classes, balance).astype(np.float64)[labels]
    onehot = np.eye(n_classes)[labels]
    eye = np.eye(n_classes)

    def objective(t: F64) -> float:
        z = x @ t.T
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-np.sum(s * logp[np.arange(n), labels]) + 0.5 * tau * np.sum((t - t0) ** 2))

    f = objective(theta)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        p = softmax(x @ theta.T).astype(np.float64)
        grad = ((p - onehot) * s[:, None]).T @ x + tau * (theta - t0)
        # Hessian of the weighted CE: sum_i s_i (diag p_i - p_i p_i^T) (x) x_i x_i^T
        # block by block: no (n, E+1, E+1) temporary (thousands of beats on a Pi)
        a = (p[:, :, None] * eye - p[:, :, None] * p[:, None, :]) * s[:, None, None]
        size = n_classes * (dim + 1)
        hess = tau * np.eye(size)
        for c in range(n_classes):
            for d in range(c, n_classes):
                blk = (x * a[:, c, d, None]).T @ x
                hess[c * (dim + 1) : (c + 1) * (dim + 1), d * (dim + 1) : (d + 1) * (dim + 1)] += (
                    blk
                )
                if d != c:
                    hess[
                        d * (dim + 1) : (d + 1) * (dim + 1), c * (dim + 1) : (c + 1) * (dim + 1)
                    ] += blk.T
        step = np.linalg.solve(hess, grad.ravel()).reshape(theta.shape)
        decrement = float(np.sum(grad * step))
        if decrement < 1e-8:
            break
        lr = 1.0
        while True:  # backtracking (Armijo): Newton's full step can overshoot far from optimum
            cand = theta - lr * step
            f_new = objective(cand)
            if f_new <= f - 1e-4 * lr * decrement or lr < 1e-4:
                break
            lr *= 0.5
        theta, f = cand, f_new
    return theta[:, :dim].astype(np.float32), theta[:, dim].astype(np.float32), iterations


@dataclass(frozen=True)
class PersonalHead:
    """A device's own head, trained from a global model version on its labelled beats, and
    its VEB template gate (None: V calls are served as they are)."""

    weight: F32
    bias: F32
    base_version: str
    n_examples: int
    v_gate: VTemplateGate | None = None
    rr_split: RRSplit | None = None
    s_in_af_as_n: bool = False  # the patient's labels confirm the rhythm monitor's AF calls

    def predict(
        self,
        emb: F32,
        windows: npt.NDArray[Any] | None = None,
        rr: npt.NDArray[Any] | None = None,
    ) -> F32:
        """Class probabilities (n, C) for embeddings (n, E); with the beats' RR features
        (n, K) the RR split re-splits N and S, with their channel-0 windows (n, L) the V gate
        is applied (the order the serving classifier uses)."""
        probs = head_probs(emb, self.weight, self.bias)
        if self.rr_split is not None and rr is not None:
            probs = self.rr_split.apply(probs, rr)
        if self.v_gate is None or windows is None:
            return probs
        return self.v_gate.apply(probs, windows)


def personalise(
    global_tensors: dict[str, Any],
    base_version: str,
    emb: F32,
    labels: npt.NDArray[np.int64],
    *,
    tau: float = PRIOR_PRECISION,
    balance: float = BALANCE,
    windows: npt.NDArray[Any] | None = None,
    classes: Sequence[str] | None = None,
    rr: npt.NDArray[Any] | None = None,
    rr_gate: Any = None,
    in_af: Sequence[bool] | None = None,
) -> PersonalHead:
    """The patient's MAP head with the global head as prior (:func:`fit_map_head`).

    With no labelled beats the personal head is the global head. With the labelled beats'
    channel-0 windows (n, L) and the class names (``V`` and ``Q`` among them) it also carries
    the patient's VEB template gate (:func:`edge_agent.beat_quality.fit_v_gate`).

    With their RR features (n, K) and the global model's RR gate (the card's ``rr_gate``
    dict) it keeps the gate's rhythm evidence (:class:`edge_agent.rr_split.RRSplit`): a beat
    is S when the head says so or when its rhythm is more premature than every labelled
    normal beat of the patient (with the gate but no labelled beats, the gate's own boundary).

    With whether each labelled beat lay in a stretch the rhythm monitor called AF (``in_af``)
    and the class names, it decides whether S calls inside AF are reported N for this patient
    (:func:`edge_agent.quality_gate.s_in_af_confirmed`).
    """
    w0 = np.asarray(global_tensors[HEAD_W], np.float32)
    b0 = np.asarray(global_tensors[HEAD_B], np.float32)
    split = RRSplit.from_card(rr_gate) if rr is not None else None
    if split is not None and max(split.n, split.s) >= w0.shape[0]:
        _LOGGER.warning("RR gate classes %d/%d not in the head: no rhythm expert", split.n, split.s)
        split = None
    if len(labels) == 0:
        return PersonalHead(w0.copy(), b0.copy(), base_version, 0, rr_split=split)
    w, b, it = fit_map_head(emb, labels, w0, b0, tau=tau, balance=balance)
    _LOGGER.debug("personal head: %d beats, %d Newton iterations", len(labels), it)
    gate = None
    if windows is not None and classes is not None and {"V", "Q"} <= set(classes):
        names = list(classes)
        gate = fit_v_gate(windows, labels, names.index("V"), names.index("Q"))
    if split is not None and rr is not None:
        split = split.personal(np.asarray(rr)[np.asarray(labels) == split.n])
    af_rule = False
    if in_af is not None and classes is not None and {NORMAL, SUPRAVENTRICULAR} <= set(classes):
        af_rule = s_in_af_confirmed([classes[int(i)] for i in labels], in_af)
    return PersonalHead(w, b, base_version, int(len(labels)), gate, split, af_rule)


def card_rr_gate(card_json: bytes | str) -> dict[str, Any] | None:
    """The RR gate (``input_contract.parameters.rr_gate``) of a model card's JSON, or None
    (no gate, or a card that is not valid JSON: the head then serves without it)."""
    import json

    try:
        card = json.loads(card_json) if card_json else None
        gate = card["input_contract"]["parameters"].get("rr_gate") if card else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        _LOGGER.warning("model card unreadable for the RR gate (%s): none", exc)
        return None
    return gate if isinstance(gate, dict) else None
