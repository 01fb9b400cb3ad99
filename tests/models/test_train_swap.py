"""``models.train.swap_aux_channels``: the S-template-swap augmentation (TrainSpec.aux_channel_swap)."""

from __future__ import annotations

import torch

from models.tasks.base import TrainSpec
from models.train import swap_aux_channels, swap_eligible


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """8 examples, 2 channels of 4 samples: channel c of example i is filled with 10 * i + c."""
    labels = torch.tensor([0, 1, 0, 1, 2, 1, 0, 2])
    signal = torch.arange(8, dtype=torch.float32).view(8, 1, 1) * 10 + torch.tensor(
        [0.0, 1.0]
    ).view(1, 2, 1)
    return signal.expand(8, 2, 4).clone(), labels


def test_swap_gives_receivers_donor_channels_and_keeps_everything_else() -> None:
    # Setup
    signal, labels = batch()
    gen = torch.Generator().manual_seed(0)
    # Execute
    out = swap_aux_channels(signal, labels, 1.0, (1, 0), gen)
    # Verify: channel 0 untouched everywhere; non-receivers untouched entirely
    torch.testing.assert_close(out[:, 0], signal[:, 0])
    others = labels != 1
    torch.testing.assert_close(out[others], signal[others])
    # every receiver's channel 1 now comes from a class-0 example (ids 0, 2, 6 -> 1, 21, 61)
    donor_channel1 = {1.0, 21.0, 61.0}
    for i in torch.nonzero(labels == 1).flatten().tolist():
        assert float(out[i, 1, 0]) in donor_channel1
        assert torch.all(out[i, 1] == out[i, 1, 0])
    assert torch.equal(signal, batch()[0])  # input not modified in place


def test_swap_probability_zero_or_missing_class_is_identity_and_draws_nothing() -> None:
    signal, labels = batch()
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert swap_aux_channels(signal, labels, 0.0, (1, 0), gen) is signal
    assert swap_aux_channels(signal, labels, 1.0, (3, 0), gen) is signal  # no receiver
    assert swap_aux_channels(signal, labels, 1.0, (1, 4), gen) is signal  # no donor
    one_channel = signal[:, :1]
    assert swap_aux_channels(one_channel, labels, 1.0, (1, 0), gen) is one_channel
    assert torch.equal(gen.get_state(), state)


def test_swap_rate_follows_p() -> None:
    # Setup: 2000 receivers whose channel 1 is 1, 2000 donors whose channel 1 is 0
    labels = torch.cat([torch.ones(2000, dtype=torch.long), torch.zeros(2000, dtype=torch.long)])
    signal = torch.zeros(4000, 2, 3)
    signal[:2000, 1] = 1.0
    # Execute
    out = swap_aux_channels(signal, labels, 0.3, (1, 0), torch.Generator().manual_seed(1))
    # Verify
    swapped = float((out[:2000, 1, 0] == 0).float().mean())
    assert 0.26 < swapped < 0.34


def test_eligible_restricts_receivers_and_spec_builds_it_from_features() -> None:
    # Setup: receivers 1, 3, 5; only 3 is premature (min of features 0 and 2 below 0.8)
    signal, labels = batch()
    feats = torch.ones(8, 3)
    feats[3, 2] = 0.7
    feats[5, 1] = 0.1  # not a named feature: 5 stays ineligible
    spec = TrainSpec(aux_channel_swap=1.0, aux_swap_features=(0, 2), aux_swap_below=0.8)
    # Execute
    eligible = swap_eligible(feats, spec)
    out = swap_aux_channels(signal, labels, 1.0, (1, 0), torch.Generator().manual_seed(0), eligible)
    # Verify
    assert eligible is not None and eligible.tolist() == [i == 3 for i in range(8)]
    assert swap_eligible(feats, TrainSpec()) is None
    assert float(out[3, 1, 0]) in {1.0, 21.0, 61.0}
    torch.testing.assert_close(out[[0, 1, 2, 4, 5, 6, 7]], signal[[0, 1, 2, 4, 5, 6, 7]])
