"""Beat windows around R peaks, as a model's input contract describes them.

A :class:`BeatSpec` is the whole contract (model rate, samples before/after the R peak, filter,
normalisation, RR features) and is stored in the model card with :meth:`BeatSpec.to_dict`.
Training and the edge call the same :func:`beat_windows` on a signal cleaned by
:class:`~common.signals.filters.EcgFilter` with ``spec.filter``.

Each window depends only on the cleaned samples in ``[r - before_in, r + after_in)`` where
``(before_in, after_in) = spec.context_samples(fs)``: every beat is cut at the device rate with a
margin, resampled on its own, then cropped. A stream that keeps that much context around each
R peak therefore produces exactly the windows a whole-record pass produces.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from common.signals.align import align_context_samples, align_r_peaks
from common.signals.filters import FilterSpec
from common.signals.resample import resample_signal, resampling_ratio

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Normalization = Literal["zscore", "robust", "mv", "none"]
NORMALIZATIONS = ("zscore", "robust", "mv", "none")
RR_FEATURES = (
    "rr_pre",
    "rr_post",
    "rr_local",
    "rr_long",
    "rr_pre_local_ratio",
    "rr_post_local_ratio",
    "rr_pre_long_ratio",
    "rr_local_long_ratio",
)
SPEC_VERSION = 1
# resample_poly's default Kaiser FIR spans 10 * max(up, down) up-sampled taps per side.
_FIR_HALF_WIDTH = 10


@dataclass(frozen=True, slots=True)
class BeatSpec:
    """The input contract of a beat model.

    Attributes
    ----------
    sampling_rate_hz : float
        Model rate in Hz; beats are resampled to it.
    before_samples, after_samples : int
        Window length around the R peak at the model rate: the R peak is sample
        ``before_samples`` of a window of ``before_samples + after_samples`` samples.
    filter : FilterSpec
        Causal filter applied at the device rate before windowing.
    normalization : {"zscore", "robust", "mv", "none"}
        Per-window amplitude normalisation: ``zscore`` (minus mean, over std), ``robust`` (minus
        median, over 1.4826 * MAD), ``mv`` (minus median, µV -> mV), ``none`` (cleaned µV).
    rr_features : tuple of str
        RR features in column order, names from ``RR_FEATURES`` (seconds or ratios).
    rr_local_beats : int
        Number of past RR intervals averaged into ``rr_local``.
    rr_long_s : float
        Span in seconds of past RR intervals averaged into ``rr_long``.
    align_window_s : float
        If > 0, every R peak is first moved to the largest deflection of the cleaned ECG within
        this many seconds (:func:`~common.signals.align.align_r_peaks`), so that annotated
        (training) and detected (device) positions give the same windows. 0 keeps positions.
    """

    sampling_rate_hz: float = 360.0
    before_samples: int = 90
    after_samples: int = 110
    filter: FilterSpec = field(default_factory=FilterSpec)
    normalization: Normalization = "zscore"
    rr_features: tuple[str, ...] = (
        "rr_pre",
        "rr_post",
        "rr_local",
        "rr_long",
        "rr_pre_local_ratio",
        "rr_post_local_ratio",
    )
    rr_local_beats: int = 10
    rr_long_s: float = 300.0
    align_window_s: float = 0.05

    def __post_init__(self) -> None:
        if not math.isfinite(self.sampling_rate_hz) or self.sampling_rate_hz <= 0:
            raise ValueError(f"sampling_rate_hz must be positive, got {self.sampling_rate_hz}")
        if self.before_samples < 0 or self.after_samples < 1:
            raise ValueError("need before_samples >= 0 and after_samples >= 1")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}")
        bad = [f for f in self.rr_features if f not in RR_FEATURES]
        if bad:
            raise ValueError(f"unknown RR features {bad}; known: {RR_FEATURES}")
        if self.rr_local_beats < 1 or not self.rr_long_s > 0:
            raise ValueError("need rr_local_beats >= 1 and rr_long_s > 0")
        if not 0 <= self.align_window_s <= 0.2:
            raise ValueError(f"align_window_s must be in [0, 0.2] s, got {self.align_window_s}")

    @property
    def window_len(self) -> int:
        """Samples per window at the model rate."""
        return self.before_samples + self.after_samples

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible mapping for the model card (includes ``version``)."""
        return {
            "version": SPEC_VERSION,
            "sampling_rate_hz": self.sampling_rate_hz,
            "before_samples": self.before_samples,
            "after_samples": self.after_samples,
            "r_peak_index": self.before_samples,
            "window_len": self.window_len,
            "filter": self.filter.to_dict(),
            "normalization": self.normalization,
            "rr_features": list(self.rr_features),
            "rr_units": {name: "ratio" if "ratio" in name else "s" for name in self.rr_features},
            "rr_local_beats": self.rr_local_beats,
            "rr_long_s": self.rr_long_s,
            "align_window_s": self.align_window_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BeatSpec:
        """Inverse of :meth:`to_dict`; derived keys are checked, not trusted."""
        version = data.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ValueError(f"unsupported beat spec version {version!r}")
        spec = cls(
            sampling_rate_hz=float(data["sampling_rate_hz"]),
            before_samples=int(data["before_samples"]),
            after_samples=int(data["after_samples"]),
            filter=FilterSpec.from_dict(dict(data.get("filter", {}))),
            normalization=data.get("normalization", "zscore"),
            rr_features=tuple(data.get("rr_features", ())),
            rr_local_beats=int(data.get("rr_local_beats", 10)),
            rr_long_s=float(data.get("rr_long_s", 300.0)),
            align_window_s=float(data.get("align_window_s", 0.05)),
        )
        if "window_len" in data and int(data["window_len"]) != spec.window_len:
            raise ValueError("window_len does not match before_samples + after_samples")
        return spec

    def _segment(self, fs: float) -> tuple[int, int, int, int]:
        """(m, n, up, down): the cut spans ``m * down`` samples before and ``n * down`` after."""
        up, down = resampling_ratio(fs, self.sampling_rate_hz)
        if up == down:
            return self.before_samples, self.after_samples, 1, 1
        guard = math.ceil(_FIR_HALF_WIDTH * max(up, down) / down) + 1
        m = math.ceil((self.before_samples + guard) / up)
        n = math.ceil((self.after_samples + guard) / up)
        return m, n, up, down

    def context_samples(self, fs: float) -> tuple[int, int]:
        """Device-rate samples needed before and after each R peak to build its window.

        A beat at sample ``r`` can be windowed once samples up to ``r + after - 1`` exist;
        the context includes the alignment search when ``align_window_s > 0``.

        Returns
        -------
        (before, after) : tuple of int
        """
        m, n, _, down = self._segment(fs)
        if self.align_window_s <= 0:
            return m * down, n * down
        # Alignment may move the peak by ``shift`` either way and reads its own context.
        shift = round(self.align_window_s * fs)
        a_before, a_after = align_context_samples(fs, self.align_window_s)
        return max(m * down + shift, a_before), max(n * down + shift, a_after)


def beats_in_bounds(
    r_peaks: npt.ArrayLike, n_samples: int, sampling_rate: float, spec: BeatSpec
) -> BoolArray:
    """True for beats whose whole context lies inside a signal of ``n_samples`` samples.

    Windows of the other beats are edge-padded (the first/last sample repeated) and should be
    dropped from training and flagged on the device.
    """
    r = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
    before, after = spec.context_samples(sampling_rate)
    ok: BoolArray = (r - before >= 0) & (r + after <= n_samples)
    return ok


def _normalize(w: FloatArray, method: str) -> FloatArray:
    if method == "none":
        return w
    if method == "mv":
        return (w - np.median(w, axis=1, keepdims=True)) / 1000.0
    if method == "zscore":
        centre = w.mean(axis=1, keepdims=True)
        scale = w.std(axis=1, keepdims=True)
    else:  # robust
        centre = np.median(w, axis=1, keepdims=True)
        scale = 1.4826 * np.median(np.abs(w - centre), axis=1, keepdims=True)
    # A flat window (lead off, saturated) has no scale: return zeros, not inf/NaN.
    safe = np.where(scale > 0, scale, 1.0)
    out: FloatArray = np.where(scale > 0, (w - centre) / safe, 0.0)
    return out


def beat_windows(
    signal: npt.ArrayLike, sampling_rate: float, r_peaks: npt.ArrayLike, spec: BeatSpec
) -> FloatArray:
    """Cut, resample, align and normalise one window per R peak.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
        ECG at ``sampling_rate``, already cleaned with ``EcgFilter(sampling_rate, spec.filter)``
        (or :func:`~common.signals.filters.ecg_clean`), in µV.
    sampling_rate : float
        Device rate in Hz.
    r_peaks : array_like of int, shape (n_beats,)
        R-peak sample indices into ``signal``.
    spec : BeatSpec
        The model's contract.

    Returns
    -------
    ndarray, shape (n_beats, spec.window_len), float64
        Row ``i`` holds beat ``i`` at ``spec.sampling_rate_hz`` with its R peak at column
        ``spec.before_samples``. Beats too close to an edge are edge-padded; see
        :func:`beats_in_bounds`.

    Examples
    --------
    >>> import numpy as np
    >>> spec = BeatSpec(sampling_rate_hz=128.0, before_samples=32, after_samples=64)
    >>> x = np.random.default_rng(1).normal(size=3600)
    >>> beat_windows(x, 360.0, [400, 1000, 2000], spec).shape
    (3, 96)
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    r = np.asarray(r_peaks, dtype=np.int64).reshape(-1)
    if r.size == 0:
        return np.zeros((0, spec.window_len), dtype=np.float64)
    if x.size == 0:
        raise ValueError("cannot cut beats from an empty signal")
    if spec.align_window_s > 0:
        r = align_r_peaks(x, sampling_rate, r, spec.align_window_s)
    m, n, up, down = spec._segment(sampling_rate)
    offsets = np.arange(-m * down, n * down, dtype=np.int64)
    idx = np.clip(r[:, None] + offsets[None, :], 0, x.size - 1)
    segments = x[idx]
    if up == down:
        windows = segments
    else:
        resampled = resample_signal(segments, sampling_rate, spec.sampling_rate_hz, axis=1)
        centre = m * up
        windows = resampled[:, centre - spec.before_samples : centre + spec.after_samples]
    return _normalize(np.ascontiguousarray(windows), spec.normalization)
