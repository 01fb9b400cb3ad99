"""Causal, stateful IIR filtering: the same numbers in a stream and over a whole record.

The edge filters ECG chunk by chunk as it arrives; training filters whole records. Both go
through :class:`CausalSosFilter`, which carries the ``sosfilt`` state between calls, so any
chunking of a signal gives the same output as one call over the whole array (up to rounding).
Design and filtering use the numpy equivalents of :mod:`common.signals.iir` and
:mod:`common.signals.sosblock`, so the edge never imports ``scipy.signal`` (83 MB resident with scipy 1.17).
Zero-phase filters (``filtfilt``) are deliberately not used: they need future samples and
would make training inputs differ from what the device can compute.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from common.signals.iir import butter_sos, sosfilt_zi
from common.signals.sosblock import SosKernel

_LOGGER = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
FilterMethod = Literal["bandpass", "highpass", "lowpass", "none"]
_METHODS = ("bandpass", "highpass", "lowpass", "none")


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A causal Butterworth filter, optionally followed by a powerline notch.

    Attributes
    ----------
    method : {"bandpass", "highpass", "lowpass", "none"}
        Filter type. ``"none"`` passes the signal through (the notch still applies if set).
    lowcut_hz : float
        High-pass corner in Hz (bandpass, highpass). 0.5 Hz removes baseline wander while keeping
        the ST segment mostly intact.
    highcut_hz : float
        Low-pass corner in Hz (bandpass, lowpass); must be below the Nyquist rate.
    order : int
        Butterworth order of each band edge (1-8).
    powerline_hz : float or None
        Centre of an IIR notch (50 or 60 Hz), skipped when it is at or above Nyquist.
    powerline_q : float
        Quality factor of the notch (bandwidth = ``powerline_hz / powerline_q``).
    """

    method: FilterMethod = "bandpass"
    lowcut_hz: float = 0.5
    highcut_hz: float = 40.0
    order: int = 2
    powerline_hz: float | None = None
    powerline_q: float = 30.0

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"filter method must be one of {_METHODS}, got {self.method!r}")
        if not 1 <= self.order <= 8:
            raise ValueError(f"filter order must be 1..8, got {self.order}")
        if self.method == "bandpass" and not 0 < self.lowcut_hz < self.highcut_hz:
            raise ValueError(
                f"need 0 < lowcut_hz < highcut_hz, got {self.lowcut_hz}, {self.highcut_hz}"
            )
        if self.lowcut_hz <= 0 and self.method == "highpass":
            raise ValueError(f"lowcut_hz must be > 0, got {self.lowcut_hz}")
        if self.highcut_hz <= 0 and self.method == "lowpass":
            raise ValueError(f"highcut_hz must be > 0, got {self.highcut_hz}")
        if self.powerline_hz is not None and (self.powerline_hz <= 0 or self.powerline_q <= 0):
            raise ValueError("powerline_hz and powerline_q must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible mapping (for model cards)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FilterSpec:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown filter fields {sorted(unknown)}")
        return cls(**data)

    def design(self, sampling_rate: float) -> FloatArray:
        """Second-order sections of the whole cascade at ``sampling_rate`` Hz.

        Returns
        -------
        ndarray, shape (n_sections, 6)
            Empty (0, 6) for ``method="none"`` without a notch.
        """
        if not np.isfinite(sampling_rate) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate!r}")
        nyq = sampling_rate / 2.0
        parts: list[FloatArray] = []
        if self.method in ("bandpass", "lowpass") and self.highcut_hz >= nyq:
            raise ValueError(
                f"highcut_hz={self.highcut_hz} must be below Nyquist ({nyq} Hz at {sampling_rate} Hz)"
            )
        if self.method == "bandpass":
            band = (self.lowcut_hz, self.highcut_hz)
            parts.append(butter_sos(self.order, band, "bandpass", sampling_rate))
        elif self.method == "highpass":
            parts.append(butter_sos(self.order, self.lowcut_hz, "highpass", sampling_rate))
        elif self.method == "lowpass":
            parts.append(butter_sos(self.order, self.highcut_hz, "lowpass", sampling_rate))
        if self.powerline_hz is not None:
            if self.powerline_hz < nyq * 0.98:
                from scipy import signal as sps  # notch: not on the edge path (no card uses one)

                b, a = sps.iirnotch(self.powerline_hz, self.powerline_q, fs=sampling_rate)
                parts.append(sps.tf2sos(b, a))
            else:
                _LOGGER.debug(
                    "notch at %s Hz skipped: above Nyquist of %s Hz", self.powerline_hz, nyq
                )
        if not parts:
            return np.zeros((0, 6), dtype=np.float64)
        return np.ascontiguousarray(np.vstack(parts), dtype=np.float64)


def as_samples(chunk: npt.ArrayLike) -> FloatArray:
    """A chunk as a 1-D float64 array; accepts shape (n,) or (n, 1) (one ``SignalChunk`` column).

    Raises
    ------
    ValueError
        For several channels or more dimensions: a multi-lead array must be split by the
        caller, never silently interleaved.
    """
    x = np.asarray(chunk, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim > 1:
        raise ValueError(f"expected one channel, shape (n,) or (n, 1); got {x.shape}")
    return x.reshape(-1)


class CausalSosFilter:
    """Stream a signal through second-order sections, keeping the state between chunks.

    The state is initialised on the first sample as the steady state of a constant input
    (``sosfilt_zi`` times that sample), so a DC offset does not ring through a
    high-pass at start-up. Any split of the signal into chunks gives the same output as one call.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
        Filter sections (e.g. from :meth:`FilterSpec.design`).
    """

    def __init__(self, sos: npt.ArrayLike) -> None:
        self._sos = np.ascontiguousarray(np.asarray(sos, dtype=np.float64).reshape(-1, 6))
        self._zi_unit = sosfilt_zi(self._sos) if len(self._sos) else np.zeros((0, 2))
        self._kernel = SosKernel(self._sos)
        self._zi: FloatArray | None = None  # shape (n_sections, 2)

    def reset(self) -> None:
        """Forget the state; the next chunk starts a new stream."""
        self._zi = None

    def process(self, chunk: npt.ArrayLike) -> FloatArray:
        """Filter the next chunk of the stream.

        Parameters
        ----------
        chunk : array_like, shape (n,) or (n, 1)
            Next samples (finite values; NaN propagates into the state and stays there).

        Returns
        -------
        ndarray, shape (n,), float64
        """
        x = as_samples(chunk)
        if x.size == 0 or len(self._sos) == 0:
            return x.copy()
        if self._zi is None:
            self._zi = self._zi_unit * x[0]
        out, self._zi = self._kernel.run(x, self._zi)
        return out


class EcgFilter(CausalSosFilter):
    """The ECG cleaning filter of a :class:`FilterSpec`, streaming.

    Parameters
    ----------
    sampling_rate : float
        Rate of the incoming samples in Hz.
    spec : FilterSpec
        Which filter (default: 0.5-40 Hz order-2 Butterworth band-pass, no notch).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=1000)
    >>> f = EcgFilter(360.0)
    >>> y = np.concatenate([f.process(x[:300]), f.process(x[300:])])
    >>> bool(np.allclose(y, ecg_clean(x, 360.0)))
    True
    """

    def __init__(self, sampling_rate: float, spec: FilterSpec | None = None) -> None:
        self.spec = spec if spec is not None else FilterSpec()
        self.sampling_rate = float(sampling_rate)
        super().__init__(self.spec.design(self.sampling_rate))


def ecg_clean(
    signal: npt.ArrayLike, sampling_rate: float, spec: FilterSpec | None = None
) -> FloatArray:
    """Clean a whole ECG record with the causal filter of ``spec``.

    Exactly what :class:`EcgFilter` computes over a stream, so training inputs equal device
    inputs.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
        Raw ECG (µV, or any unit: the filter is linear).
    sampling_rate : float
        Hz.
    spec : FilterSpec, optional
        Default 0.5-40 Hz band-pass, order 2.

    Returns
    -------
    ndarray, shape (n_samples,), float64
        Filtered ECG in the input unit, delayed by the filter's group delay (a few ms in the QRS
        band for the default).

    References
    ----------
    Makowski et al. (2021), NeuroKit2: A Python toolbox for neurophysiological signal processing,
    Behavior Research Methods 53, 1689-1696 (``ecg_clean`` naming).
    """
    return EcgFilter(sampling_rate, spec).process(signal)
