"""The patient's own VEB templates as a gate on the personal head's V calls (numpy only).

A beat the personal head calls V is kept as V only if its window looks like one of the V beats
labelled in the patient's first minutes; otherwise it is called Q (unclassifiable). The
false VEBs left after personalisation are mostly beats unlike anything labelled (noise bursts,
new rhythms), while a patient's true VEBs mostly repeat the labelled morphologies.

Similarity is the Pearson correlation of the z-scored beat windows (channel 0 of the beat
model's input, 128 Hz), maximised over small time shifts (the R-peak alignment jitters by a
few samples) and over the templates. The gate's threshold for one patient is

    min(THRESHOLD_CAP, min over labelled V beats of their leave-one-out similarity)

so a patient whose labelled VEBs already vary (multiform VEBs, noisy VEBs) gets a lax gate:
the rule never rejects a beat that is as similar to the templates as a labelled VEB is to the
others. With fewer than ``MIN_TEMPLATES`` labelled VEBs there is no gate. THRESHOLD_CAP was
chosen on DS1 only (``bench/fl_personalised.py --records ds1 --sweep-cap``; see
docs/federated.md). Edge inference imports this module: numpy only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

MAX_LAG = 3  # samples at 128 Hz (23 ms): the R-peak alignment jitter between beats
THRESHOLD_CAP = 0.625  # chosen on DS1 (largest cap costing <= 0.5 points of VEB Se there)
MIN_TEMPLATES = 2  # leave-one-out needs two labelled VEBs
MAX_TEMPLATES = 256  # bounds memory (96 floats each) and per-beat cost on the device


def _unit_rows(x: F64) -> F64:
    """Rows centred and scaled to unit norm (zero rows stay zero)."""
    c = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(c, axis=1, keepdims=True)
    out: F64 = c / np.where(norm > 0, norm, 1.0)
    return out


def lagged_correlation(
    windows: npt.NDArray[Any], templates: npt.NDArray[Any], max_lag: int = MAX_LAG
) -> F64:
    """Pearson correlation of every window with every template, maximised over shifts.

    The central ``L - 2 * max_lag`` samples of each template are compared with the window
    shifted by -max_lag..max_lag samples.

    Parameters
    ----------
    windows : ndarray, shape (n, L)
        Beat windows (any scale: correlation ignores offset and gain).
    templates : ndarray, shape (k, L)
        Template windows.
    max_lag : int
        Largest shift, samples (>= 0, ``2 * max_lag < L``).

    Returns
    -------
    ndarray, shape (n, k)
        Values in [-1, 1].
    """
    x = np.asarray(windows, np.float64)
    t = np.asarray(templates, np.float64)
    length = x.shape[1]
    if max_lag < 0 or 2 * max_lag >= length:
        raise ValueError(f"max_lag {max_lag} does not fit windows of {length} samples")
    if t.shape[1] != length:
        raise ValueError(f"templates of {t.shape[1]} samples vs windows of {length}")
    core = _unit_rows(t[:, max_lag : length - max_lag])
    best = np.full((len(x), len(t)), -1.0)
    for shift in range(-max_lag, max_lag + 1):
        seg = _unit_rows(x[:, max_lag + shift : length - max_lag + shift])
        np.maximum(best, seg @ core.T, out=best)
    out: F64 = np.clip(best, -1.0, 1.0)
    return out


def template_similarity(
    windows: npt.NDArray[Any], templates: npt.NDArray[Any], max_lag: int = MAX_LAG
) -> F64:
    """Best lagged correlation of each window with any template, shape (n,)."""
    if len(templates) == 0:
        return np.full(len(windows), -1.0)
    out: F64 = lagged_correlation(windows, templates, max_lag).max(axis=1)
    return out


def leave_one_out_similarity(templates: npt.NDArray[Any], max_lag: int = MAX_LAG) -> F64:
    """Each template's best lagged correlation with the OTHER templates, shape (k,), k >= 2."""
    if len(templates) < 2:
        raise ValueError("leave-one-out needs at least two templates")
    c = lagged_correlation(templates, templates, max_lag)
    np.fill_diagonal(c, -np.inf)
    out: F64 = c.max(axis=1)
    return out


@dataclass(frozen=True)
class VTemplateGate:
    """Beats called V that resemble none of the patient's labelled VEBs become Q.

    templates : (k, L) float32, channel-0 windows of the labelled VEBs
    threshold : similarity below which a V call is rejected
    v, q : column indices of V and Q in the head's probabilities
    """

    templates: F32
    threshold: float
    v: int
    q: int

    def similarity(self, windows: npt.NDArray[Any]) -> F64:
        """Similarity of windows (n, L) to the templates, shape (n,)."""
        return template_similarity(windows, self.templates)

    def apply(self, probs: npt.NDArray[Any], windows: npt.NDArray[Any]) -> F32:
        """Move the V probability of rejected V calls to Q.

        Parameters
        ----------
        probs : ndarray, shape (n, C)
            Class probabilities.
        windows : ndarray, shape (n, L)
            The beats' channel-0 windows.

        Returns
        -------
        ndarray, shape (n, C)
            Rows still sum to 1; a rejected beat's argmax becomes Q (its V mass was the max).
        """
        v, q = self.v, self.q
        out = np.array(probs, np.float32, copy=True)
        called_v = np.argmax(out, axis=1) == v
        if not np.any(called_v):
            return out
        reject = np.zeros(len(out), bool)
        reject[called_v] = self.similarity(windows[called_v]) < self.threshold
        out[reject, q] += out[reject, v]
        out[reject, v] = 0.0
        return out


def fit_v_gate(
    windows: npt.NDArray[Any],
    labels: npt.NDArray[np.int64],
    v: int,
    q: int,
    *,
    cap: float = THRESHOLD_CAP,
) -> VTemplateGate | None:
    """The patient's gate from their labelled beats, or None with < MIN_TEMPLATES VEBs.

    Parameters
    ----------
    windows : ndarray, shape (n, L)
        Channel-0 windows of the labelled beats, in time order.
    labels : ndarray, shape (n,)
        Class indices; ``v`` is V, ``q`` the class rejected V calls get (Q).
    cap : float
        Upper bound of the threshold.
    """
    tmpl = np.asarray(windows, np.float32)[np.asarray(labels) == v]
    if len(tmpl) < MIN_TEMPLATES:
        return None
    if len(tmpl) > MAX_TEMPLATES:  # evenly spread over the labelled time
        tmpl = tmpl[np.linspace(0, len(tmpl) - 1, MAX_TEMPLATES).round().astype(int)]
    loo = float(leave_one_out_similarity(tmpl).min())
    threshold = min(cap, loo)
    _LOGGER.debug("V gate: %d templates, threshold %.3f (LOO min %.3f)", len(tmpl), threshold, loo)
    return VTemplateGate(np.ascontiguousarray(tmpl), threshold, int(v), int(q))
