"""The rhythm v2 net: a padded batch computes what one window alone does; ONNX and int8 agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.rhythm_data import BankBuilder, BankSpec, WindowBank, cached_bank
from models.rhythm_export import export_rhythm_onnx, quantize_rhythm
from models.rhythm_net import RhythmNet, rebuild
from models.rhythm_scoring import onnx_window_probs, record_probabilities
from models.rhythm_train import batch_tensors, fit_rhythm, predict_windows
from models.tasks.base import NetSpec, TrainSpec
from models.tasks.rhythm import TASK
from tests.common.signals.synthetic import synthetic_ecg

K = 15


def _net(spec: NetSpec, seed: int = 0) -> RhythmNet:
    torch.manual_seed(seed)
    net = RhythmNet(spec, np.zeros(K), np.ones(K), 4).eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("spec", [TASK.teacher, TASK.student], ids=["teacher", "student"])
def test_a_padded_batch_gives_each_window_its_own_answer(spec: NetSpec) -> None:
    # Prepare: windows of 9, 17.3 and 30 s at 128 Hz, and the features
    rng = np.random.default_rng(0)
    lengths = [1152, 2214, 3840]
    windows = [rng.normal(size=n).astype(np.float32) for n in lengths]
    feats = torch.from_numpy(rng.normal(size=(3, K)).astype(np.float32))
    net = _net(spec)
    batch = torch.zeros(3, 1, 3840)
    for i, w in enumerate(windows):
        batch[i, 0, : w.size] = torch.from_numpy(w)
    # Execute
    with torch.no_grad():
        padded, _ = net(batch, feats, torch.tensor(lengths))
        alone = [
            net(torch.from_numpy(w)[None, None], feats[i : i + 1])[0] for i, w in enumerate(windows)
        ]
    # Assert
    np.testing.assert_allclose(padded.numpy(), torch.cat(alone).numpy(), atol=1e-5)


def _bank(n: int, seed: int = 0, rr_track: bool = False) -> WindowBank:
    builder = BankBuilder(BankSpec(rr_track=rr_track))
    for i in range(n):
        label = i % 4
        x, _ = synthetic_ecg(
            300.0, 12.0 + 3 * (i % 5), seed=seed + i, rr_jitter=0.25 if label == 1 else 0.03
        )
        if label == 3:
            x = x + np.random.default_rng(i).normal(0, 600, x.size)
        builder.add(x, 300.0, label, f"r{i}")
    return builder.build()


def test_onnx_export_and_int8_follow_the_torch_student(tmp_path: Path) -> None:
    # Prepare: a student trained a few steps on synthetic windows of several lengths
    bank = _bank(24)
    net = RhythmNet(TASK.student, bank.features.mean(0), bank.features.std(0), 4)
    fit_rhythm(net, bank, TrainSpec(epochs=2, batch_size=8, lr=3e-3, steps_per_epoch=4), seed=0)
    idx = np.arange(len(bank))
    # Execute
    fp32 = export_rhythm_onnx(net, tmp_path / "rhythm_fp32.onnx")
    int8 = quantize_rhythm(fp32, tmp_path / "rhythm.onnx", bank)
    p_torch = predict_windows(net, bank, idx)
    p_fp32 = onnx_window_probs(fp32, bank, idx)
    p_int8 = onnx_window_probs(int8, bank, idx)
    # Assert: fp32 exact, int8 close, and the checkpoint metadata rebuilds the same net
    np.testing.assert_allclose(p_fp32, p_torch, atol=1e-5)
    assert np.abs(p_int8 - p_fp32).max() < 0.05
    again = rebuild(net.meta(), net.state_dict())
    np.testing.assert_allclose(predict_windows(again, bank, idx), p_torch, atol=1e-6)
    assert int8.stat().st_size < fp32.stat().st_size


def test_record_probabilities_average_full_windows_only() -> None:
    # Prepare: two windows of one record (one short) and one of another
    bank = WindowBank(
        np.zeros(30, np.float32), np.array([0, 10, 20, 30]), np.zeros((3, K), np.float32),
        np.array([1, 1, 2]), np.array(["a", "a", "b"]), np.array([False, True, False]), np.zeros(3, np.int64),
    )  # fmt: skip
    probs = np.array([[0.1, 0.9, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    # Execute
    names, rec, labels = record_probabilities(bank, probs, np.arange(3))
    # Assert
    assert names == ["a", "b"] and labels.tolist() == [1, 2]
    np.testing.assert_allclose(rec[0], [0.1, 0.9, 0, 0])
    signal, feats, lengths, _ = batch_tensors(bank, np.array([0, 2]))
    assert signal.shape == (2, 1, 10) and lengths.tolist() == [10, 10] and feats.shape == (2, K)


def test_the_rr_track_is_a_second_channel_from_bank_to_int8(tmp_path: Path) -> None:
    # Prepare: a bank with RR tracks, and its subset, concatenation and cached copy
    bank = _bank(16, rr_track=True)
    part = bank.subset(np.arange(3, 9))
    both = WindowBank.concat([part, bank.subset(np.array([0]))])
    cached = cached_bank(tmp_path, "k", lambda: bank)
    again = cached_bank(tmp_path, "k", lambda: _bank(1))
    # Assert: the track follows its window everywhere
    assert bank.channels == 2 and bank.track.size == bank.signal.size
    np.testing.assert_array_equal(part.inputs(1), bank.inputs(4))
    np.testing.assert_array_equal(both.inputs(6), bank.inputs(0))
    np.testing.assert_array_equal(again.track, bank.track)
    assert cached.channels == 2 and _bank(2).channels == 1
    with pytest.raises(ValueError, match="RR track"):
        WindowBank.concat([bank, _bank(2)])
    # Execute: a two-channel student trained, exported and quantized
    net = RhythmNet(TASK.student, bank.features.mean(0), bank.features.std(0), 4, bank.channels)
    fit_rhythm(net, bank, TrainSpec(epochs=1, batch_size=8, lr=3e-3, steps_per_epoch=3), seed=0)
    fp32 = export_rhythm_onnx(net, tmp_path / "rhythm_fp32.onnx")
    int8 = quantize_rhythm(fp32, tmp_path / "rhythm.onnx", bank)
    idx = np.arange(len(bank))
    # Assert: the graph reads (N, 2, L) and gives the torch numbers; the meta rebuilds it
    np.testing.assert_allclose(
        onnx_window_probs(fp32, bank, idx), predict_windows(net, bank, idx), atol=1e-5
    )
    assert np.abs(onnx_window_probs(int8, bank, idx) - predict_windows(net, bank, idx)).max() < 0.05
    assert rebuild(net.meta(), net.state_dict()).in_channels == 2


def test_augmentation_changes_the_ecg_and_leaves_the_rr_track() -> None:
    from models.rhythm_train import augment

    # Prepare
    bank = _bank(4, rr_track=True)
    signal, _, lengths, _ = batch_tensors(bank, np.arange(4))
    # Execute
    out = augment(signal, lengths, torch.Generator().manual_seed(0))
    # Assert
    assert out.shape == signal.shape
    assert torch.equal(out[:, 1], signal[:, 1]) and not torch.equal(out[:, 0], signal[:, 0])


def test_an_epoch_draws_one_window_per_recording_and_every_or_some_mitdb_windows() -> None:
    from models.rhythm_train import RecordWindows

    # Prepare: two CinC recordings (one with a short window) and a MIT-BIH record of 6 windows
    records = np.array(["A1", "A1", "A2", *["mitdb/100"] * 6])
    short = np.array([False, True, False, *[False] * 6])
    n = records.size
    bank = WindowBank(np.zeros(n, np.float32), np.arange(n + 1), np.zeros((n, K), np.float32),
                      np.zeros(n, np.int64), records, short, np.zeros(n, np.int64))  # fmt: skip
    windows = RecordWindows(bank)
    # Execute
    every = windows.draw(np.random.default_rng(0), 0.0)
    some = windows.draw(np.random.default_rng(0), 0.0, every_max=2)
    # Assert
    assert sorted(every.tolist()) == [0, 2, 3, 4, 5, 6, 7, 8]
    mitdb = [i for i in some.tolist() if i >= 3]
    assert len(some) == 4 and len(set(mitdb)) == 2 and {0, 2} <= set(some.tolist())
