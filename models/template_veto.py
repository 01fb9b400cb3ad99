"""Template veto: a "VEB" that looks like the wearer's usual beat is served as Q, not V.

Inter-patient, most false VEBs are a patient's own usual beats when that beat is wide (bundle-
branch block, MIT-BIH 207) or noisy (108): the net learned from other patients that such a shape
is ventricular. The beat model's channel 1 is the window minus the wearer's running template
(median of the last 16 windows, ``common.signals.template``), so its RMS says how far the beat
is from the wearer's usual beat in z-score units (a VEB among normal beats: about 1). A V call
whose channel-1 RMS is below ``rms_below`` is re-labelled Q ("unclassifiable, review"):

    d       = sqrt(mean(beat[:, channel, :] ** 2))          (N,), z-score units
    veto    = d < rms_below
    probs'  = probs with  probs'[:, Q] = probs[:, Q] + veto * probs[:, V]
                          probs'[:, V] = (1 - veto) * probs[:, V]

so rows still sum to 1 and only the V mass of vetoed beats moves. A VEB run long enough to
become the template (8 or more of the last 16 beats) is vetoed after its first beats; its onset,
which a VT alarm needs, is not. The threshold was chosen on DS1 patient-wise CV
(``python -m models.beat_cv_cli --veto-grid ...``, docs/models.md "Template veto"). :func:`add_template_veto_to_onnx`
appends exactly this after the model's ``probs`` (after the RR gate when there is one);
:meth:`TemplateVeto.apply` is the numpy reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

PROBS = "probs"
VETO_ACTIVATION = ", then the template veto (input_contract.parameters.template_veto)"
# the beat task's threshold, chosen on DS1 CV (docs/models.md "Template veto")
BEAT_RMS_BELOW = 0.5
MAX_RMS_BELOW = 100.0  # z-score units


def vetoed_activation(activation: str) -> str:
    """The card's ``head.activation`` once the veto follows ``activation``."""
    return activation + VETO_ACTIVATION


@dataclass(frozen=True)
class TemplateVeto:
    """Move the V probability to Q where the template-difference channel is small.

    Attributes
    ----------
    rms_below : float
        Threshold on the RMS of input channel ``channel`` (z-score units).
    v_index, q_index : int
        Class indices of V and Q in the model's output.
    channel : int
        Input channel holding the window minus the running template.
    """

    rms_below: float
    v_index: int
    q_index: int
    channel: int = 1

    def __post_init__(self) -> None:
        # z-scored windows: an RMS above a few units is not a threshold anyone means, and the
        # bound keeps rms_below ** 2 * length finite in float32
        if not (np.isfinite(self.rms_below) and 0 <= self.rms_below <= MAX_RMS_BELOW):
            raise ValueError(f"rms_below must be in [0, {MAX_RMS_BELOW}], got {self.rms_below}")
        if min(self.v_index, self.q_index, self.channel) < 0 or self.v_index == self.q_index:
            raise ValueError(
                f"bad indices: v {self.v_index}, q {self.q_index}, channel {self.channel}"
            )

    def sum_square_limit(self, length: int) -> np.float32:
        """``rms_below ** 2 * length``: the sum of squares of a ``length``-sample channel below
        which a beat is vetoed (the graph compares sums of squares: no Sqrt, no Div node)."""
        return np.float32(self.rms_below**2 * length)

    def vetoed(self, signal: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Which beats of ``signal`` ``(N, C, L)`` look like the usual beat, shape (N,)."""
        diff = np.asarray(signal, np.float32)[:, self.channel, :]
        total: npt.NDArray[np.float32] = np.sum(diff * diff, axis=1, dtype=np.float32)
        return np.asarray(total < self.sum_square_limit(diff.shape[1]))

    def apply(self, probs: npt.NDArray[Any], signal: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Vetoed probabilities ``(N, C)`` from ``probs`` ``(N, C)`` and the inputs ``signal``."""
        out = np.array(probs, dtype=np.float32)
        veto = self.vetoed(signal)
        out[veto, self.q_index] += out[veto, self.v_index]
        out[veto, self.v_index] = 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        """The card's ``input_contract.parameters.template_veto``."""
        return {
            "rms_below": float(self.rms_below),
            "v_index": self.v_index,
            "q_index": self.q_index,
            "channel": self.channel,
            "formula": (
                "d = sqrt(mean(beat[:, channel, :]^2)); if d < rms_below the beat's V "
                "probability is added to Q and V set to 0 (after the RR gate)"
            ),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemplateVeto:
        """Inverse of :meth:`to_dict`.

        A card is data from a file, so the types are checked, not coerced.

        Raises
        ------
        KeyError, TypeError, ValueError
            On a missing field, a field of the wrong type (indices must be JSON integers, the
            threshold a number) or a value out of range.
        """
        if not isinstance(d, dict):
            raise TypeError(f"template_veto must be an object, got {type(d).__name__}")
        rms = d["rms_below"]
        if isinstance(rms, bool) or not isinstance(rms, int | float):
            raise TypeError(f"rms_below must be a number, got {rms!r}")
        indices = [d["v_index"], d["q_index"], d.get("channel", 1)]
        if any(isinstance(i, bool) or not isinstance(i, int) for i in indices):
            raise TypeError(f"v_index, q_index and channel must be integers, got {indices}")
        return cls(rms_below=float(rms), v_index=indices[0], q_index=indices[1], channel=indices[2])


def add_template_veto_to_onnx(path: Path, veto: TemplateVeto, signal_input: str = "beat") -> None:
    """Append the veto after the ``probs`` output of the ONNX model at ``path`` (in place).

    Raises
    ------
    ValueError
        If the model has no ``probs`` output, no ``signal_input`` input with the veto's channel,
        or fewer classes than the veto's indices.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from models.onnx_names import compact_names

    model = onnx.load(str(path))
    g = model.graph
    inputs = {i.name: i for i in g.input}
    if signal_input not in inputs:
        raise ValueError(f"{path}: no input {signal_input!r} for the template veto")
    dims = inputs[signal_input].type.tensor_type.shape.dim
    if len(dims) != 3 or (dims[1].dim_value and dims[1].dim_value <= veto.channel):
        raise ValueError(f"{path}: input {signal_input!r} has no channel {veto.channel}")
    producers = [n for n in g.node if PROBS in n.output]
    outs = [o for o in g.output if o.name == PROBS]
    if len(producers) != 1 or len(outs) != 1:
        raise ValueError(f"{path}: expected one {PROBS!r} output")
    probs_dims = outs[0].type.tensor_type.shape.dim
    c = probs_dims[1].dim_value if len(probs_dims) == 2 else 0
    if not c or max(veto.v_index, veto.q_index) >= c:
        raise ValueError(
            f"{path}: {PROBS!r} is not (N, classes) with classes > the veto's V and Q indices"
        )
    length = dims[2].dim_value
    if not length:
        raise ValueError(f"{path}: input {signal_input!r} needs a fixed window length")
    before = "probs_unvetoed"  # every check passed: from here on the graph changes
    producers[0].output[list(producers[0].output).index(PROBS)] = before
    for node in g.node:  # any other reader of probs now reads the unvetoed ones
        for i, name in enumerate(node.input):
            if name == PROBS:
                node.input[i] = before
    move = np.eye(c, dtype=np.float32)  # probs @ move: V's mass in column Q, none left in V
    move[veto.v_index, veto.v_index], move[veto.v_index, veto.q_index] = 0.0, 1.0
    consts: dict[str, npt.NDArray[Any]] = {
        "tv_start": np.array([veto.channel], np.int64),
        "tv_end": np.array([veto.channel + 1], np.int64),
        "tv_axis": np.array([1], np.int64),
        "tv_limit": np.array(veto.sum_square_limit(length), np.float32),
        "tv_move": move,
    }
    mk = helper.make_node
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset >= 18:  # the Reduce ops' axes became an input in opset 18
        consts["tv_raxes"] = np.array([2], np.int64)
        square = mk("ReduceSumSquare", ["tv_diff", "tv_raxes"], ["tv_ss"], keepdims=0)
    else:
        square = mk("ReduceSumSquare", ["tv_diff"], ["tv_ss"], axes=[2], keepdims=0)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    # five nodes: each onnxruntime node costs about a microsecond at batch 1
    g.node.extend(
        [
            mk("Slice", [signal_input, "tv_start", "tv_end", "tv_axis"], ["tv_diff"]),
            square,  # (N, 1) sum of squares of the channel
            mk("Less", ["tv_ss", "tv_limit"], ["tv_low"]),
            mk("MatMul", [before, "tv_move"], ["tv_moved"]),
            mk("Where", ["tv_low", "tv_moved", before], [PROBS]),
        ]
    )
    del g.output[[o.name for o in g.output].index(PROBS)]
    g.output.insert(0, helper.make_tensor_value_info(PROBS, TensorProto.FLOAT, ["N", c]))
    for node in g.node:  # named like the exported nodes (onnxruntime's errors cite names)
        node.name = node.name or f"{node.op_type}_{node.output[0]}"
    compact_names(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    _LOGGER.info("template veto (RMS < %g) appended to %s", veto.rms_below, path)
