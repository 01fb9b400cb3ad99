"""Full-mode local training with torch (the student network of the beat task)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.fl_protocol import RoundConfig, decode_update, encode_update
from edge_agent.trainer import LabelledExamples
from edge_agent.trainer_torch import full_update, load_tensors, net_tensors
from models.nets import build_net
from models.tasks.base import NetSpec

SPEC = NetSpec("cnn", (8, 8), 5, 16, dropout=0.0, feature_dim=4)


def _examples(n: int, seed: int) -> LabelledExamples:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int64)
    beat = (rng.normal(0, 0.3, (n, 1, 32)) + labels[:, None, None]).astype(np.float32)
    return LabelledExamples(
        {"beat": beat, "rr": rng.normal(1, 0.1, (n, 2)).astype(np.float32)}, labels
    )


def test_full_update_learns_and_round_trips_over_the_wire() -> None:
    # Prepare
    torch.manual_seed(0)
    net = build_net(SPEC, 1, 32, 2, 3)
    glob = net_tensors(net)
    ex = _examples(256, 1)
    cfg = RoundConfig(
        mode="full", local_epochs=3, lr=0.01, batch_size=32, mu=0.01, compression="int8"
    )
    # Execute
    u = full_update(
        net,
        round_id="3",
        client_id="c",
        base_version="v1",
        global_tensors=glob,
        examples=ex,
        config=cfg,
    )
    back = decode_update(encode_update(u))
    # Assert: every float weight travels; the trained net classifies the local data
    assert set(back.delta) == set(glob) and u.compression == "int8" and u.compression_error <= 0.02
    load_tensors(net, {k: glob[k] + back.delta[k] for k in glob})
    with torch.no_grad():
        logits, _ = net(torch.from_numpy(ex.inputs["beat"]), torch.from_numpy(ex.inputs["rr"]))
    assert float((logits.argmax(1).numpy() == ex.labels).mean()) > 0.9
    assert u.metrics["loss"] > 0


def test_round_class_weights_scale_a_one_class_devices_sgd_step_but_not_adams() -> None:
    # Prepare: a device whose examples are all of class 2, weights for a rare class 2
    ex = _examples(16, 3)
    ex = LabelledExamples(ex.inputs, np.full(16, 2, np.int64))

    def step_norm(optimizer: str, weights: tuple[float, ...]) -> float:
        torch.manual_seed(0)
        net = build_net(SPEC, 1, 32, 2, 3)
        cfg = RoundConfig(mode="full", local_epochs=1, lr=0.01, batch_size=16,
                          compression="none", optimizer=optimizer, class_weights=weights)  # fmt: skip
        u = full_update(net, round_id="1", client_id="c", base_version="v1",
                        global_tensors=net_tensors(net), examples=ex, config=cfg)  # fmt: skip
        params = dict(net.named_parameters())  # batch-norm statistics move whatever the loss
        return float(np.sqrt(sum(float(np.sum(d.astype(np.float64) ** 2))
                                 for k, d in u.delta.items() if k in params)))  # fmt: skip

    # Execute
    sgd1, sgd2 = step_norm("sgd", (1.0, 1.0, 1.0)), step_norm("sgd", (1.0, 1.0, 2.0))
    adam1, adam2 = step_norm("adam", (1.0, 1.0, 1.0)), step_norm("adam", (1.0, 1.0, 2.0))
    # Assert: SGD's step doubles with the weight; Adam's does not move (why rhythm runs use SGD)
    assert sgd2 / sgd1 == pytest.approx(2.0, rel=1e-3)
    assert adam2 / adam1 == pytest.approx(1.0, rel=1e-3)


def test_frozen_normalisation_keeps_the_releases_statistics() -> None:
    # Prepare: one device's batch whose statistics are far from the release's
    torch.manual_seed(0)
    net = build_net(SPEC, 1, 32, 2, 3)
    glob = net_tensors(net)
    ex = _examples(8, 5)
    ex = LabelledExamples({**ex.inputs, "beat": ex.inputs["beat"] * 10 + 3}, ex.labels)

    def delta(norm: str) -> dict[str, np.ndarray]:
        cfg = RoundConfig(mode="full", local_epochs=1, lr=0.01, batch_size=8,
                          compression="none", optimizer="sgd", norm=norm)  # fmt: skip
        return full_update(build_net(SPEC, 1, 32, 2, 3), round_id="1", client_id="c",
                           base_version="v1", global_tensors=glob, examples=ex,
                           config=cfg).delta  # fmt: skip

    # Execute
    frozen, batch = delta("frozen"), delta("batch")
    stats = [k for k in glob if k.endswith(("running_mean", "running_var"))]
    # Assert: frozen leaves every running statistic as released; batch moves them
    assert stats and all(not frozen[k].any() for k in stats)
    assert any(np.abs(batch[k]).max() > 0.01 for k in stats)
