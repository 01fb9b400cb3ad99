"""Load-time check: do onnxruntime's fused int8 kernels on *this* CPU compute what the model does?

An int8 QDQ model is defined by its quantize/dequantize arithmetic; onnxruntime fuses it into
integer kernels that depend on the CPU. On x86 CPUs without VNNI those kernels add pairs of
u8 x s8 products in a saturating int16, so a model quantized with full 8-bit weights gives other
answers there (the beat model made before 7-bit weights moved probabilities by up to 0.83 and
changed 2.6 % of DS2's classes on such a CPU; docs/models.md, "7-bit weights"). Models made by
``medchain train``/``quantize`` since, and the aggregator's releases, have 7-bit weights and
pass this check everywhere.

The check runs a fixed synthetic probe (64 beats of Gaussian noise, RR-like features in
0.4-1.6) through the optimized session and through the same graph with optimizations off
(onnxruntime then dequantizes and computes in float: the model's reference arithmetic) and
returns the largest probability difference. On the 8-bit beat model it was 0.20-0.34 on an
AVX2-only CPU; 0 on the 7-bit one. It costs one extra session and two small runs at load.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from common.model_card import FUSED_INT8_GAP_LIMIT, ModelCard

_LOGGER = logging.getLogger(__name__)

PROBE_BEATS = 64
KERNEL_GAP_LIMIT = FUSED_INT8_GAP_LIMIT  # max |probability difference| that is rounding
_PROBE_SEED = 0


def probe_feed(card: ModelCard) -> dict[str, np.ndarray]:
    """Synthetic inputs of the card's shapes.

    Parameters
    ----------
    card : ModelCard
        The model's card; dynamic axes become :data:`PROBE_BEATS`.

    Returns
    -------
    dict
        ``{input name: float32 array}``: the waveform input standard normal (z-scored units),
        any further input uniform in 0.4-1.6 (RR seconds and ratios). The same on every call.
    """
    rng = np.random.default_rng(_PROBE_SEED)
    feed: dict[str, np.ndarray] = {}
    for k, spec in enumerate(card.onnx.inputs):
        shape = [d if isinstance(d, int) and d > 0 else PROBE_BEATS for d in spec.shape]
        values = rng.standard_normal(shape) if k == 0 else rng.uniform(0.4, 1.6, shape)
        feed[spec.name] = values.astype(np.float32)
    return feed


def kernel_gap(path: Path, card: ModelCard, fused: Any) -> float:
    """How far this CPU's fused kernels are from the model's reference arithmetic.

    Parameters
    ----------
    path : Path
        The ONNX file (loaded again with graph optimizations off: the reference).
    card : ModelCard
        Its card (input names and shapes, :func:`probe_feed`).
    fused : onnxruntime.InferenceSession
        The agent's session of ``path`` (default optimizations: fused int8 kernels).

    Returns
    -------
    float
        Max |difference| of ``probs`` on the probe; logged as a WARNING above
        :data:`KERNEL_GAP_LIMIT`.

    Raises
    ------
    Exception
        Whatever onnxruntime raises when it cannot build the reference session or the graph
        refuses the probe.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    reference = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = probe_feed(card)
    ours = np.asarray(fused.run(["probs"], feed)[0], dtype=np.float64)
    theirs = np.asarray(reference.run(["probs"], feed)[0], dtype=np.float64)
    gap = float(np.abs(ours - theirs).max(initial=0.0))
    if gap > KERNEL_GAP_LIMIT:
        _LOGGER.warning(
            "%s: onnxruntime's int8 kernels on this CPU differ from the model's reference "
            "arithmetic by up to %.2f in probability (a model with 8-bit weights on an x86 CPU "
            "without VNNI); predictions are not the validated ones: convert it with "
            "`medchain narrow-weights` (docs/models.md, 7-bit weights)",
            path,
            gap,
        )
    return gap
