"""Resampling and index mapping between rates."""

from __future__ import annotations

import numpy as np
import pytest

from common.signals.resample import map_indices, resample_signal, resampling_ratio


@pytest.mark.parametrize(
    ("fs_in", "fs_out", "expected"),
    [(360, 128, (16, 45)), (130, 128, (64, 65)), (128, 360, (45, 16)), (250, 250, (1, 1))],
)
def test_resampling_ratio_is_exact_for_integer_rates(fs_in, fs_out, expected) -> None:
    # Execute / Assert
    assert resampling_ratio(fs_in, fs_out) == expected


@pytest.mark.parametrize(("fs_in", "fs_out"), [(360, 128), (130, 128), (128, 360), (500, 250)])
def test_resample_keeps_an_in_band_sine(fs_in: float, fs_out: float) -> None:
    # Prepare: 10 s of a 5 Hz sine
    t_in = np.arange(int(10 * fs_in)) / fs_in
    # Execute
    y = resample_signal(np.sin(2 * np.pi * 5 * t_in), fs_in, fs_out)
    # Assert: same sine at the new rate, away from the zero-padded edges
    t_out = np.arange(y.size) / fs_out
    core = slice(int(fs_out), y.size - int(fs_out))
    assert y.size == int(np.ceil(t_in.size * fs_out / fs_in))
    np.testing.assert_allclose(y[core], np.sin(2 * np.pi * 5 * t_out[core]), atol=2e-3)


def test_resample_removes_content_above_the_new_nyquist() -> None:
    # Prepare: 100 Hz tone at 360 Hz, resampled to 128 Hz (Nyquist 64 Hz)
    t = np.arange(3600) / 360.0
    # Execute
    y = resample_signal(np.sin(2 * np.pi * 100 * t), 360, 128)
    # Assert
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 0.01


def test_map_indices_follows_time() -> None:
    # Prepare
    idx = np.array([0, 45, 360, 649_999])
    # Execute
    out = map_indices(idx, 360, 128)
    # Assert: nearest output sample to the same time
    np.testing.assert_array_equal(out, np.round(idx * 128 / 360).astype(np.int64))


def test_empty_and_bad_rates() -> None:
    # Execute / Assert
    assert resample_signal(np.zeros(0), 360, 128).shape == (0,)
    with pytest.raises(ValueError, match="positive"):
        resample_signal(np.zeros(10), 0, 128)
    with pytest.raises(ValueError, match="positive"):
        map_indices([1], 360, float("nan"))


@pytest.mark.parametrize(("fs_in", "fs_out"), [(360, 128), (130, 128), (128, 360)])
def test_cached_filter_gives_resample_poly_exactly(fs_in: int, fs_out: int) -> None:
    # Prepare
    from scipy.signal import resample_poly

    x = np.random.default_rng(3).normal(size=(4, 700))
    up, down = resampling_ratio(fs_in, fs_out)
    # Execute / Assert
    np.testing.assert_allclose(
        resample_signal(x, fs_in, fs_out, axis=1),
        resample_poly(x, up, down, axis=1),
        rtol=1e-9,
        atol=1e-12,
    )
