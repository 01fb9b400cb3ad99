"""Full local training with torch (phones acting as hubs, simulation): every weight of the
student network is trained and sent as an int8-compressed delta.

The only edge module allowed to import torch (and ``models``). Tensor names are the network's
``state_dict`` keys (float tensors only; batch-norm counters are left out), so the aggregator's
strategies and validation work unchanged on them. The head keys ``head.weight``/``head.bias``
are the same tensors light mode trains.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from common.fl_protocol import ClientUpdate, ModelRelease, RoundAnnouncement, RoundConfig, Tensors
from edge_agent.federated_eval import confusion_counts
from edge_agent.trainer import LabelledExamples, class_weights, compress_delta
from models.federated import load_tensors, net_from_card, net_inputs, net_tensors, release_card

__all__ = ["full_round_update", "full_update", "load_tensors", "net_tensors"]

_LOGGER = logging.getLogger(__name__)


def full_update(
    net: nn.Module,
    *,
    round_id: str,
    client_id: str,
    base_version: str,
    global_tensors: Tensors,
    examples: LabelledExamples,
    config: RoundConfig,
    signal_key: str = "beat",
    features_key: str = "rr",
    max_compression_error: float = 0.02,
    seed: int = 0,
    threads: int = 1,
) -> ClientUpdate:
    """Train all weights of ``net`` (``net(signal, features[, lengths]) -> (logits, emb)``: a
    beat ``SignalNet`` or a ``RhythmNet``) from the global ones.

    Adam (or SGD: ``config.optimizer``) on class-weighted cross-entropy (the round's
    ``class_weights`` when it carries them, else this device's counts) plus the FedProx term ``mu/2 * ||w - w_global||^2``;
    returns the clipped, compressed delta. Examples with a ``lengths`` input are zero-padded
    windows of different lengths: the net masks the padding (what the exported graph computes
    on each window unpadded).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    load_tensors(net, global_tensors)
    anchor = {k: torch.from_numpy(v.copy()) for k, v in global_tensors.items()}
    n_classes = int(getattr(net, "n_classes", int(examples.labels.max()) + 1))
    cw = torch.from_numpy(
        np.asarray(config.class_weights, np.float32)
        if len(config.class_weights) == n_classes  # the fleet's label counts (round config)
        else class_weights(examples.labels, n_classes, 0.5)
    )
    sig = torch.from_numpy(examples.inputs[signal_key])
    feats = torch.from_numpy(
        examples.inputs.get(features_key, np.zeros((len(examples), 0), np.float32))
    )
    lengths = _lengths(examples)
    labels = torch.from_numpy(examples.labels)
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(net.parameters(), lr=config.lr)
        if config.optimizer == "sgd"
        else torch.optim.Adam(net.parameters(), lr=config.lr)
    )
    params = dict(net.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    net.train()
    if config.norm == "frozen":  # the release's statistics, not this device's batches
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    loss_sum, steps = 0.0, 0
    for _ in range(config.local_epochs):
        order = torch.randperm(len(labels), generator=gen)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            logits, _ = net(sig[idx], feats[idx], *([] if lengths is None else [lengths[idx]]))
            # weighted sum / batch size, not torch's weighted mean: on a one-class batch the
            # latter divides the weight out again
            y = labels[idx]
            loss = (F.cross_entropy(logits, y, reduction="none") * cw[y]).mean()
            if config.mu > 0:
                loss = loss + 0.5 * config.mu * sum(
                    ((params[k] - anchor[k]) ** 2).sum() for k in params if k in anchor
                )
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            loss_sum += float(loss.detach())
            steps += 1
    net.eval()
    local = net_tensors(net)
    delta = {k: (local[k] - global_tensors[k]).astype(np.float32) for k in global_tensors}
    norm = float(np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in delta.values())))
    if config.clip_norm > 0 and norm > config.clip_norm:
        delta = {k: (v * (config.clip_norm / norm)).astype(np.float32) for k, v in delta.items()}
    compression, err = (
        compress_delta(delta, max_compression_error)
        if config.compression == "int8"
        else ("none", 0.0)
    )
    return ClientUpdate(
        round_id=round_id,
        client_id=client_id,
        base_version=base_version,
        n_examples=len(labels),
        delta=delta,
        compression=compression,
        compression_error=err,
        metrics={"loss": loss_sum / max(1, steps), "train_s": time.perf_counter() - t0},
    )


def full_round_update(
    announcement: RoundAnnouncement,
    release: ModelRelease,
    examples: LabelledExamples,
    client_id: str,
    *,
    max_compression_error: float = 0.02,
    seed: int = 0,
) -> ClientUpdate:
    """A whole-model round on this device: rebuild the release's network from its card, score
    it on the local beats (federated evaluation, before training), train every weight.

    Raises ValueError when the release describes no network (not a whole-model release).
    """
    card = release_card(release)
    net = net_from_card(card)
    signal_key, features_key = net_inputs(card)
    load_tensors(net, release.tensors)
    net.eval()
    lengths = _lengths(examples)
    with torch.no_grad():
        sig = torch.from_numpy(examples.inputs[signal_key])
        feats = torch.from_numpy(
            examples.inputs.get(features_key, np.zeros((len(examples), 0), np.float32))
        )
        logits, _ = net(sig, feats, *([] if lengths is None else [lengths]))
    predicted = logits.argmax(dim=1).numpy().astype(np.int64)
    evaluation = confusion_counts(predicted, examples.labels, int(logits.shape[1]))
    update = full_update(
        net,
        round_id=announcement.round_id,
        client_id=client_id,
        base_version=announcement.model_version,
        global_tensors=release.tensors,
        examples=examples,
        config=announcement.config,
        signal_key=signal_key,
        features_key=features_key,
        max_compression_error=max_compression_error,
        seed=seed,
    )
    return dataclasses.replace(update, metrics={**update.metrics, **evaluation})


def _lengths(examples: LabelledExamples) -> torch.Tensor | None:
    """Valid samples of each zero-padded window (the ``lengths`` input), or None."""
    raw = examples.inputs.get("lengths")
    return None if raw is None else torch.from_numpy(np.asarray(raw).astype(np.int64).ravel())
