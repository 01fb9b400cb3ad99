"""Full local training with torch (phones acting as hubs, simulation): every weight of the
student network is trained and sent as an int8-compressed delta.

The only edge module allowed to import torch (and ``models``). Tensor names are the network's
``state_dict`` keys (float tensors only; batch-norm counters are left out), so the aggregator's
strategies and validation work unchanged on them. The head keys ``head.weight``/``head.bias``
are the same tensors light mode trains.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from common.fl_protocol import ClientUpdate, RoundConfig, Tensors
from edge_agent.trainer import LabelledExamples, class_weights, compress_delta

_LOGGER = logging.getLogger(__name__)


def net_tensors(net: nn.Module) -> Tensors:
    """Float weights of ``net`` as numpy (the federated tensors of full mode)."""
    return {
        k: v.detach().cpu().numpy().astype(np.float32)
        for k, v in net.state_dict().items()
        if v.is_floating_point()
    }


def load_tensors(net: nn.Module, tensors: Mapping[str, np.ndarray]) -> None:
    """Copy federated tensors into ``net`` (missing or misshaped keys raise ValueError)."""
    state = net.state_dict()
    for k, v in tensors.items():
        if k not in state or tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"tensor {k} {tuple(v.shape)} does not fit the network")
        state[k] = torch.from_numpy(np.ascontiguousarray(v))
    net.load_state_dict(state)


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
    """Train all weights of ``net`` (a ``models.nets.SignalNet``) from the global ones.

    Adam on class-weighted cross-entropy plus the FedProx term ``mu/2 * ||w - w_global||^2``;
    returns the clipped, compressed delta.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    load_tensors(net, global_tensors)
    anchor = {k: torch.from_numpy(v.copy()) for k, v in global_tensors.items()}
    n_classes = int(getattr(net, "n_classes", int(examples.labels.max()) + 1))
    cw = torch.from_numpy(class_weights(examples.labels, n_classes, 0.5))
    sig = torch.from_numpy(examples.inputs[signal_key])
    feats = torch.from_numpy(
        examples.inputs.get(features_key, np.zeros((len(examples), 0), np.float32))
    )
    labels = torch.from_numpy(examples.labels)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    params = dict(net.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    net.train()
    loss_sum, steps = 0.0, 0
    for _ in range(config.local_epochs):
        order = torch.randperm(len(labels), generator=gen)
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            logits, _ = net(sig[idx], feats[idx])
            loss = F.cross_entropy(logits, labels[idx], weight=cw)
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
