"""Polyphase layout of ``cnn`` nets for ONNX export: the same function on fewer, wider positions.

``models.export.export_onnx`` uses it by default. onnxruntime's int8 convolution pays a fixed
cost per output position and kernel tap that dominates for these few-channel 1-D nets, so each
``Conv(k) -> BN -> ReLU -> MaxPool(2)`` stage is exported as the same function computed on
fewer, wider positions: the signal is held as ``P`` interleaved phases (channel ``q * C + c`` at
position ``j`` is sample ``P * j + q`` of channel ``c``), one strided convolution (BN folded,
weights placed at shifted taps, zeros elsewhere) yields ``2 P`` output phases, and MaxPool(2)
becomes an element-wise ``Max`` of the two halves of the channels. By default the input itself
is first split into 4 phases (a channels-last reshape), so the first convolution is unstrided on
8 channels instead of strided on 2; the first layer's input channels are zero-padded to a
multiple of 4 where they are fewer (onnxruntime's x86 symmetric-conv kernel needs it). The
embedding Linear's columns are permuted to the phase order. Same outputs as the torch net
(:func:`same_function`, checked at export; any other net, or a mismatch, exports the plain
graph).
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.nets import ConvStage, SignalNet

_LOGGER = logging.getLogger(__name__)

CHANNEL_ALIGN = 4  # onnxruntime MLAS symmetric int8 conv (x86) needs input channels % 4 == 0
PARITY_ATOL = 1e-4  # max |difference| of logits/embedding between polyphase and plain net

Layout = tuple[tuple[int, ...], int]  # (output phases per stage, phases the input is split into)


def default_layouts(n_stages: int) -> list[Layout]:
    """Layouts tried in order when none is given: the first that fits the net is exported.

    1. The input split into 4 phases, then (4, 2, 2, 1, 1, ...) output phases: the first
       convolution runs unstrided on 8 channels at a quarter of the positions instead of
       strided on 2 channels zero-padded to 4 (its int8 kernel was the least efficient per MAC).
       On an AMD EPYC with AVX-512 VNNI (CI's machine) the beat student is 1.1-1.2x faster
       than with 2. from 32 beats up (docs/models.md, Speed).
    2. The previous default, (2, 2, 1, 1, ...) on the unsplit input, for lengths 1. does not
       divide.

    A stage's phases must be a multiple of its input phases (half the previous stage's).
    ``bench/models_speed.py --phases`` measures any layout on the machine at hand.
    """
    split = (4, 2, 2, *([1] * max(0, n_stages - 3)))[:n_stages]
    legacy = (2,) if n_stages == 1 else (2, 2, *([1] * (n_stages - 2)))
    return [(split, 4), (legacy, 1)]


def _conv_bn(stage: nn.Module) -> tuple[nn.Conv1d, nn.BatchNorm1d] | None:
    """Conv and BN of a plain ``Conv(k odd, same) -> BN -> ReLU -> MaxPool(2)`` stage, else None."""
    body = list(stage.body) if isinstance(stage, ConvStage) else []
    if len(body) != 4:
        return None
    conv, bn, relu, pool = body
    if not (
        isinstance(conv, nn.Conv1d)
        and isinstance(bn, nn.BatchNorm1d)
        and isinstance(relu, nn.ReLU)
        and isinstance(pool, nn.MaxPool1d)
    ):
        return None
    k = conv.kernel_size[0]
    plain = conv.stride == (1,) and conv.dilation == (1,) and conv.groups == 1
    if k % 2 == 0 or conv.padding != (k // 2,) or not plain or pool.kernel_size not in (2, (2,)):
        return None
    if pool.stride not in (2, (2,)) or bn.running_var is None or bn.running_mean is None:
        return None
    return conv, bn


def _fold_bn(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """Weights ``(C_out, C_in, k)`` and bias ``(C_out,)`` of Conv followed by eval-mode BN."""
    assert bn.running_var is not None and bn.running_mean is not None  # checked by _conv_bn
    var, mean = bn.running_var, bn.running_mean
    scale = bn.weight / torch.sqrt(var + bn.eps)
    bias = bn.bias - mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return (conv.weight * scale[:, None, None]).detach(), bias.detach()


class _PhaseStage(nn.Module):
    """A ConvStage on a ``p_in``-phase input as one strided Conv to ``p_out`` phases, ReLU, Max."""

    def __init__(
        self,
        parts: tuple[nn.Conv1d, nn.BatchNorm1d],
        length: int,
        p_in: int,
        p_out: int,
        pad_to: int,
    ) -> None:
        super().__init__()
        w, b = _fold_bn(*parts)
        c_out, c_in, k = w.shape
        pad = k // 2
        lo = -(-pad // p_in)  # ceil(pad / p_in): left padding in input positions
        taps = (p_out + k - 2 - pad) // p_in + lo + 1
        self.extra = max(0, pad_to - p_in * c_in)
        weight = torch.zeros(p_out * c_out, p_in * c_in + self.extra, taps)
        half = p_out // 2
        for r in range(p_out):  # output row block: r % 2 first, so MaxPool(2) = max of halves
            row = (r % 2) * half * c_out + (r // 2) * c_out
            for t in range(k):
                d = r + t - pad  # input sample offset from the block start
                q, tap = d % p_in, d // p_in + lo
                weight[row : row + c_out, q * c_in : (q + 1) * c_in, tap] = w[:, :, t]
        right = (length // p_out - 1) * (p_out // p_in) + taps - length // p_in - lo
        # equal pads go into the Conv itself (a separate Pad node would run in float)
        self.pads = (lo, right) if right != lo else None
        stride = p_out // p_in
        self.conv = nn.Conv1d(weight.shape[1], p_out * c_out, taps, stride, 0 if self.pads else lo)
        self.conv.weight.data = weight
        self.conv.bias.data = b.repeat(p_out)  # type: ignore[union-attr]  # Conv1d has a bias
        self.split = half * c_out

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, 0, self.extra)) if self.extra else x
        x = F.pad(x, self.pads) if self.pads else x
        first, second = torch.split(torch.relu(self.conv(x)), self.split, dim=1)
        return torch.maximum(first, second)


class _InputPhases(nn.Module):
    """``(N, C, L) -> (N, P * C, L / P)``: channel ``q * C + c`` at position ``j`` is sample
    ``P * j + q`` of channel ``c`` (a channels-last reshape, so onnxruntime's NHWC convolution
    reads it without another Transpose)."""

    def __init__(self, phases: int, channels: int, length: int) -> None:
        super().__init__()
        # constant target shape: a shape read from the input costs five more onnxruntime nodes
        self.shape = (-1, length // phases, phases * channels)

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2).reshape(self.shape).transpose(1, 2)


def polyphase_net(
    net: SignalNet, phases: tuple[int, ...] | None = None, input_phases: int = 1
) -> SignalNet | None:
    """A copy of ``net`` computing the same function in the polyphase layout, or None if its
    stages are not plain ``cnn`` stages (k odd, lengths divisible by the phases) or the layout
    is not valid for it.

    Parameters
    ----------
    net : SignalNet
        Trained net (eval mode).
    phases : tuple of int, optional
        Output phases per stage. None: the first of :func:`default_layouts` that fits (and
        ``input_phases`` is ignored).
    input_phases : int
        Phases the input is split into before the first stage (:class:`_InputPhases`), so the
        first convolution runs on wider, fewer positions.
    """
    if phases is None:
        for layout in default_layouts(len(net.stages)):
            fast = polyphase_net(net, *layout)
            if fast is not None:
                return fast
        return None
    stages = list(net.stages)
    parts = [_conv_bn(s) for s in stages]
    linear = next((m for m in net.embed if isinstance(m, nn.Linear)), None)
    schedule = tuple(phases)
    if not stages or linear is None or len(schedule) != len(stages):
        return None
    if input_phases < 1 or net.length % input_phases:
        return None
    new: list[nn.Module] = []
    if input_phases > 1:
        new.append(_InputPhases(input_phases, net.in_channels, net.length))
    length, p_in, channels = net.length, input_phases, 0
    for i, (stage, conv_bn, p_out) in enumerate(zip(stages, parts, schedule, strict=True)):
        # p_out > 1 must be even: MaxPool(2) becomes the Max of two halves of the phases
        odd = p_out > 1 and p_out % 2
        if conv_bn is None or p_out < 1 or odd or length % p_out or p_out % p_in:
            return None
        channels = conv_bn[0].out_channels
        if p_out == 1:
            new.append(copy.deepcopy(stage))
        else:
            c_in = conv_bn[0].in_channels
            pad_to = -(-(p_in * c_in) // CHANNEL_ALIGN) * CHANNEL_ALIGN if i == 0 else 0
            new.append(_PhaseStage(conv_bn, length, p_in, p_out, pad_to))
        length, p_in = length // 2, max(p_out // 2, 1)
    fast = copy.deepcopy(net).eval()
    fast.stages = nn.Sequential(*new)
    per_phase = length // p_in
    # flatten order is (phase q, channel c, position j); the torch net's is (c, p_in * j + q)
    order = [
        c * length + p_in * j + q
        for q in range(p_in)
        for c in range(channels)
        for j in range(per_phase)
    ]
    fast_linear = next(m for m in fast.embed if isinstance(m, nn.Linear))
    fast_linear.weight.data[:, : len(order)] = linear.weight.data[:, order]
    return fast


def same_function(net: SignalNet, other: SignalNet) -> bool:
    """Whether ``other`` reproduces ``net``'s logits and embedding on random inputs."""
    gen = torch.Generator().manual_seed(0)
    signal = torch.randn(8, net.in_channels, net.length, generator=gen)
    feats = torch.rand(8, net.n_features, generator=gen) + 0.5  # RR-like: positive
    with torch.no_grad():
        pairs = zip(net(signal, feats), other(signal, feats), strict=True)
        return all(float((a - b).abs().max()) < PARITY_ATOL for a, b in pairs)
