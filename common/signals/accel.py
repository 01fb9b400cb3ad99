"""Wrist accelerometer: activity level (ENMO), fall detection, long-inactivity alerts, features.

All functions take acceleration in **mg** (1 g = 1000 mg), shape (n_samples, 3) = x, y, z, the
unit of ``StreamKind.ACC``. The detectors are small stateful classes fed chunk by chunk, so they
run identically on a replayed file and on a live BLE stream.

References
----------
van Hees VT et al., "Separating movement and gravity components in an acceleration signal",
PLoS One 8(4):e61691, 2013 (ENMO). Hildebrand M et al., "Age group comparability of raw
accelerometer output from wrist- and hip-worn monitors", MSSE 46(9):1816-1824, 2014 (cut-points,
approx. 45 / 100 / 430 mg). Bourke AK et al., "Evaluation of a threshold-based tri-axial
accelerometer fall detection algorithm", Gait Posture 26(2):194-199, 2007 (impact threshold).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
G_MG = 1000.0

#: ENMO cut-points (mg) between sedentary/light/moderate/vigorous (approx. Hildebrand 2014).
ACTIVITY_CUTPOINTS_MG = (45.0, 100.0, 430.0)
ACTIVITY_LEVELS = ("sedentary", "light", "moderate", "vigorous")


def _as_acc(acc: npt.ArrayLike) -> FloatArray:
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"acceleration must have shape (n, 3), got {a.shape}")
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def acc_magnitude(acc: npt.ArrayLike) -> FloatArray:
    """Vector magnitude in mg, shape (n,)."""
    return np.asarray(np.linalg.norm(_as_acc(acc), axis=1))


def acc_enmo(acc: npt.ArrayLike) -> FloatArray:
    """Euclidean norm minus one g, negatives set to 0 (mg), shape (n,)."""
    return np.maximum(acc_magnitude(acc) - G_MG, 0.0)


def acc_activity_level(
    acc: npt.ArrayLike, sampling_rate: float, epoch_s: float = 5.0
) -> tuple[FloatArray, list[str]]:
    """Mean ENMO per epoch and its intensity class.

    Parameters
    ----------
    acc : array_like, shape (n, 3)
        Acceleration in mg.
    sampling_rate : float
        Hz.
    epoch_s : float
        Epoch length in s (5 s is the GGIR default).

    Returns
    -------
    enmo_mg : ndarray, shape (n_epochs,)
        Mean ENMO of each complete epoch, mg.
    levels : list of str
        ``sedentary``, ``light``, ``moderate`` or ``vigorous`` per epoch.
    """
    if sampling_rate <= 0 or epoch_s <= 0:
        raise ValueError("sampling_rate and epoch_s must be positive")
    e = acc_enmo(acc)
    n = max(round(epoch_s * sampling_rate), 1)
    k = e.size // n
    enmo = e[: k * n].reshape(k, n).mean(axis=1) if k else np.zeros(0)
    idx = np.searchsorted(np.asarray(ACTIVITY_CUTPOINTS_MG), enmo, side="right")
    return enmo, [ACTIVITY_LEVELS[i] for i in idx]


@dataclass(frozen=True, slots=True)
class FallEvent:
    """A suspected fall.

    Attributes
    ----------
    sample : int
        Stream index of the impact peak.
    peak_mg : float
        Peak vector magnitude at impact, mg.
    orientation_change_deg : float
        Angle between the gravity direction before the fall and after it, degrees.
    post_std_mg : float
        Standard deviation of the magnitude after the impact (low = lying still), mg.
    """

    sample: int
    peak_mg: float
    orientation_change_deg: float
    post_std_mg: float


class FallDetector:
    """Impact peak followed by stillness and a changed orientation (threshold detector).

    A candidate is an impact with magnitude above ``impact_mg``. It is confirmed
    ``confirm_s`` later if the magnitude then stays still (std below ``still_std_mg`` over
    ``still_s``) and the gravity direction changed by at least ``min_orientation_deg`` versus
    the second before the impact.

    Parameters
    ----------
    sampling_rate : float
        Hz.
    impact_mg, still_std_mg, min_orientation_deg, confirm_s, still_s : float
        Thresholds as above (mg, mg, degrees, s, s).
    """

    def __init__(
        self,
        sampling_rate: float,
        impact_mg: float = 2500.0,
        still_std_mg: float = 120.0,
        min_orientation_deg: float = 30.0,
        confirm_s: float = 4.0,
        still_s: float = 2.0,
    ) -> None:
        if not np.isfinite(sampling_rate) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate!r}")
        self.fs = float(sampling_rate)
        self.impact_mg = impact_mg
        self.still_std_mg = still_std_mg
        self.min_orientation_deg = min_orientation_deg
        self._pre = max(round(1.5 * self.fs), 2)
        self._confirm = max(round(confirm_s * self.fs), 2)
        self._still = max(round(min(still_s, confirm_s) * self.fs), 2)
        self._hist: deque[FloatArray] = deque(maxlen=max(self._pre, self._still) + 1)
        self._n = 0  # samples seen
        self._pending: tuple[int, float, FloatArray] | None = None  # (sample, peak mg, gravity)
        self._refractory_until = -1

    def push(self, acc: npt.ArrayLike) -> list[FallEvent]:
        """Feed a chunk (n, 3) in mg; return falls confirmed by it (``confirm_s`` after impact)."""
        a = _as_acc(acc)
        events: list[FallEvent] = []
        for row in a:
            self._hist.append(row)
            mag = float(np.linalg.norm(row))
            cand = self._pending
            if cand is None and mag >= self.impact_mg and self._n > self._refractory_until:
                hist = np.asarray(self._hist)
                # gravity before the fall: skip the last 0.5 s (free fall, the impact itself)
                before = hist[-self._pre : -max(self._pre // 3, 1)]
                g0 = before.mean(axis=0) if before.shape[0] else row
                self._pending = (self._n, mag, g0)
                self._refractory_until = self._n + self._confirm
            elif cand is not None and mag > cand[1] and self._n - cand[0] < 0.3 * self.fs:
                self._pending = (cand[0], mag, cand[2])  # same impact, higher peak
            cand = self._pending
            if cand is not None and self._n == cand[0] + self._confirm:
                self._pending = None
                ev = self._confirm_fall(cand)
                if ev is not None:
                    events.append(ev)
            self._n += 1
        return events

    def _confirm_fall(self, cand: tuple[int, float, FloatArray]) -> FallEvent | None:
        sample, peak, g_before = cand
        after = np.asarray(self._hist)[-min(self._still, len(self._hist)) :]
        post_std = float(np.std(np.linalg.norm(after, axis=1)))
        g_after = after.mean(axis=0)
        denom = float(np.linalg.norm(g_before) * np.linalg.norm(g_after))
        cosang = float(np.dot(g_before, g_after) / denom) if denom > 0 else 1.0
        angle = float(np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0))))
        if post_std <= self.still_std_mg and angle >= self.min_orientation_deg:
            _LOGGER.info("fall at sample %d: peak %.0f mg, %.0f deg", sample, peak, angle)
            return FallEvent(sample, peak, angle, post_std)
        return None


class InactivityMonitor:
    """Alert once when the wrist has not moved for ``alert_after_s``; re-armed by movement.

    Movement = the standard deviation of the magnitude over a 1 s block above ``move_std_mg``.

    Parameters
    ----------
    sampling_rate : float
        Hz.
    alert_after_s : float
        Inactivity duration that raises the alert, s (default 2 h).
    move_std_mg : float
        Movement threshold, mg.
    """

    def __init__(
        self, sampling_rate: float, alert_after_s: float = 7200.0, move_std_mg: float = 15.0
    ) -> None:
        if not np.isfinite(sampling_rate) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate!r}")
        self.fs = float(sampling_rate)
        self.alert_after_s = alert_after_s
        self.move_std_mg = move_std_mg
        self._block = max(round(self.fs), 1)
        self._buf: FloatArray = np.zeros(0)
        self._still_samples = 0
        self._alerted = False
        self._n = 0

    @property
    def inactive_s(self) -> float:
        """Seconds since the last movement."""
        return self._still_samples / self.fs

    def push(self, acc: npt.ArrayLike) -> list[int]:
        """Feed a chunk (n, 3) in mg; return the stream sample indices where an alert fired."""
        self._buf = np.concatenate([self._buf, acc_magnitude(acc)])
        alerts: list[int] = []
        while self._buf.size >= self._block:
            block, self._buf = self._buf[: self._block], self._buf[self._block :]
            self._n += self._block
            if float(np.std(block)) > self.move_std_mg:
                self._still_samples = 0
                self._alerted = False
                continue
            self._still_samples += self._block
            if not self._alerted and self.inactive_s >= self.alert_after_s:
                self._alerted = True
                alerts.append(self._n - 1)
        return alerts


ACC_FEATURE_NAMES: tuple[str, ...] = tuple(
    [f"{ax}_{s}" for ax in "xyz" for s in ("mean", "std", "p10", "p90", "jerk", "first", "last")]
    + ["mag_mean", "mag_std", "mag_range", "corr_xy", "corr_xz", "corr_yz"]
    + ["dom_freq_hz", "band_0_1", "band_1_3", "band_3_8", "duration_s"]
    + [f"{ax}_{s}" for ax in "xyz" for s in ("middle", "min", "max", "freq_hz", "spec_entropy")]
    + ["mag_acf_peak", "pitch_deg", "roll_deg"]
)


def acc_features(acc: npt.ArrayLike, sampling_rate: float) -> FloatArray:
    """Features of one activity segment (orientation, intensity, rhythm, temporal order).

    Parameters
    ----------
    acc : array_like, shape (n, 3)
        Acceleration in mg, n >= 4.
    sampling_rate : float
        Hz.

    Returns
    -------
    ndarray, shape (len(ACC_FEATURE_NAMES),)
        Values in g (levels), g/s (``*_jerk``), Hz, band power fractions, s (duration).
        ``*_first`` / ``*_middle`` / ``*_last`` are the means of the thirds (gravity direction
        along a motion, which separates e.g. ``Getup_bed`` from ``Liedown_bed``); ``*_freq_hz``
        and ``*_spec_entropy`` the dominant 0.3-8 Hz frequency and spectral entropy (nats) of
        each axis; ``mag_acf_peak`` the largest autocorrelation of |a| at lags 0.25-2 s
        (periodic movements such as walking); ``pitch_deg`` / ``roll_deg`` the mean orientation.
    """
    a = _as_acc(acc) / G_MG
    n = a.shape[0]
    if n < 4:
        raise ValueError(f"need at least 4 samples, got {n}")
    third = max(n // 3, 1)
    feats: list[float] = []
    for j in range(3):
        x = a[:, j]
        feats += [
            float(x.mean()),
            float(x.std()),
            float(np.percentile(x, 10)),
            float(np.percentile(x, 90)),
            float(np.mean(np.abs(np.diff(x))) * sampling_rate),
            float(x[:third].mean()),
            float(x[-third:].mean()),
        ]
    mag = np.linalg.norm(a, axis=1)
    feats += [float(mag.mean()), float(mag.std()), float(np.ptp(mag))]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        sx, sy = a[:, i].std(), a[:, j].std()
        cov = float(np.mean((a[:, i] - a[:, i].mean()) * (a[:, j] - a[:, j].mean())))
        feats.append(cov / (sx * sy) if sx > 1e-9 and sy > 1e-9 else 0.0)
    m = mag - mag.mean()
    p = np.abs(np.fft.rfft(m * np.hanning(n), n=max(256, n))) ** 2
    f = np.fft.rfftfreq(max(256, n), 1.0 / sampling_rate)
    tot = float(p[f > 0.1].sum()) + 1e-12
    band = (f > 0.3) & (f < 8.0)
    feats.append(float(f[band][np.argmax(p[band])]) if np.any(band) else 0.0)
    for lo, hi in ((0.1, 1.0), (1.0, 3.0), (3.0, 8.0)):
        feats.append(float(p[(f >= lo) & (f < hi)].sum()) / tot)
    feats.append(n / sampling_rate)
    nfft = max(256, n)
    f_ax = np.fft.rfftfreq(nfft, 1.0 / sampling_rate)
    band_ax = (f_ax > 0.3) & (f_ax < 8.0)
    for j in range(3):
        x = a[:, j]
        feats += [
            float(x[third : max(2 * third, third + 1)].mean()),
            float(x.min()),
            float(x.max()),
        ]
        px = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(n), n=nfft))[band_ax] ** 2
        share = px / (float(px.sum()) + 1e-12)
        peak = float(f_ax[band_ax][np.argmax(px)]) if px.size else 0.0
        feats += [peak, float(-np.sum(share * np.log(share + 1e-12)))]
    # periodicity of the movement: autocorrelation peak of |a| at lags 0.25-2 s
    lo, hi = max(round(0.25 * sampling_rate), 1), min(round(2.0 * sampling_rate), n - 1)
    denom = float(m @ m)
    acf = [float(m[:-k] @ m[k:]) / denom for k in range(lo, hi)] if denom > 1e-12 else []
    feats.append(max(acf) if acf else 0.0)
    g = a.mean(axis=0)
    feats += [
        float(np.degrees(np.arctan2(g[0], np.hypot(g[1], g[2])))),
        float(np.degrees(np.arctan2(g[1], g[2]))),
    ]
    return np.asarray(feats, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class FeatureClassifier:
    """Pure-numpy inference of a MedChain feature model (softmax regression or small ReLU MLP).

    Reads the ``<model>.json`` written beside the ONNX file by ``models.tasks.activity``
    (``activity``, ``rhythm`` and ``aft`` models): inputs are standardised with ``mean`` /
    ``scale``, every layer but the last is followed by ReLU, the last by softmax; this is the
    same maths as the ONNX graph, for devices without onnxruntime.

    Attributes
    ----------
    classes : tuple of str
        Class names in output order.
    feature_names : tuple of str
        Expected feature order.
    mean, scale : ndarray, shape (n_features,)
    layers : tuple of (weight (in, out), bias (out,)) pairs
    """

    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray
    layers: tuple[tuple[FloatArray, FloatArray], ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureClassifier:
        """Build from the weights JSON; raises ValueError when shapes do not chain."""
        try:
            classes = tuple(str(c) for c in d["classes"])
            names = tuple(str(n) for n in d["feature_names"])
            mean = np.asarray(d["mean"], dtype=np.float64)
            scale = np.asarray(d["scale"], dtype=np.float64)
            layers = tuple(
                (
                    np.asarray(layer["weight"], dtype=np.float64),
                    np.asarray(layer["bias"], dtype=np.float64),
                )
                for layer in d["layers"]
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a feature-model JSON: {exc}") from exc
        width = len(names)
        if mean.shape != (width,) or scale.shape != (width,) or not np.all(scale > 0):
            raise ValueError(f"feature model mean/scale shapes do not match {width} features")
        for w, b in layers:
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError("feature model layer shapes do not chain")
            width = w.shape[1]
        if not layers or width != len(classes):
            raise ValueError("feature model output size differs from the number of classes")
        return cls(classes, names, mean, scale, layers)

    def predict_proba(self, features: npt.ArrayLike) -> FloatArray:
        """Class probabilities, shape (n, n_classes), for features of shape (n, n_features)."""
        h = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        h = h - h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def classify_activity(self, acc: npt.ArrayLike, sampling_rate: float) -> tuple[str, FloatArray]:
        """Label and probabilities of one segment of acceleration (n, 3) in mg (activity model)."""
        p = self.predict_proba(acc_features(acc, sampling_rate))[0]
        return self.classes[int(np.argmax(p))], p
