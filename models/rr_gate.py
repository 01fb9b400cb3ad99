"""RR gate: the rhythm decides between N and S; the network keeps the rest of each beat's mass.

Inter-patient, the convolutional net separates V, F and Q from the beat's shape but cannot tell
an SVEB from a normal beat when SVEBs are the wearer's usual beat (MIT-BIH 232: 1,382 of DS2's
1,837 SVEBs; the template channel then calls them "usual"). Their prematurity is the signal a
cardiologist reads, so the gate re-splits the net's ``N + S`` probability by a class-balanced
logistic regression over the log RR features alone, fitted on the training patients:

    q       = sigmoid(log(max(rr, floor)) @ w + b)            (N, 1), rr in s / ratios
    probs'  = probs with  probs'[:, N] = (probs[:, N] + probs[:, S]) * (1 - q)
                          probs'[:, S] = (probs[:, N] + probs[:, S]) * q

so rows still sum to 1 and the V/F/Q probabilities are the net's. ``w`` already holds the
standardisation (``w = w_std / scale``, ``b = b_std - mean @ w``). :func:`add_rr_gate_to_onnx`
appends exactly this to an exported graph (fp32 nodes after the head's softmax, also in the
int8 model), :meth:`RRGate.apply` is the numpy reference. The head npz stays the head: a
device's personal head (``edge_agent.personal_head``) replaces the whole decision, gate included,
because it learns the wearer's own N/S boundary from labelled beats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.feature_model import fit_softmax

_LOGGER = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
RR_FLOOR_S = 1e-3  # log(0) guard: RR features are > 0 s / ratios on real data
PROBS = "probs"
# The card's head.activation of a gated model (models/cards.py; medchain train appends the gate)
GATED_ACTIVATION = "softmax, then the RR gate (input_contract.parameters.rr_gate)"


@dataclass(frozen=True)
class RRGate:
    """Logistic N-vs-S split over log RR features, applied to a net's probabilities.

    Attributes
    ----------
    weight : ndarray, shape (K,)
        Per log-feature weight (standardisation folded in).
    bias : float
        Intercept.
    n_index, s_index : int
        Columns of N and S in the probabilities.
    floor : float
        Features are clipped to at least this before the log (s or ratio).
    v_weight, v_bias, v_index : optional
        The V rhythm expert (same form; None: no V expert): V's probability is multiplied by
        ``v = sigmoid(log rr @ v_weight + v_bias)`` and every other class's by ``1 - v``, then
        rows are renormalised (a product of two experts on the V / not-V split).
    """

    weight: F64
    bias: float
    n_index: int
    s_index: int
    floor: float = RR_FLOOR_S
    v_weight: F64 | None = None
    v_bias: float = 0.0
    v_index: int = -1

    def _sigmoid(self, rr: npt.NDArray[Any], w: F64, b: float) -> F64:
        z = np.log(np.maximum(np.asarray(rr, np.float64), self.floor)) @ w + b
        out: F64 = 1.0 / (1.0 + np.exp(-z))
        return out

    def s_probability(self, rr: npt.NDArray[Any]) -> F64:
        """``q``: probability that a beat of the N/S pair is S, shape (N,)."""
        return self._sigmoid(rr, self.weight, self.bias)

    def v_probability(self, rr: npt.NDArray[Any]) -> F64 | None:
        """``v``: the V rhythm expert's probability of V, shape (N,) (None without it)."""
        return None if self.v_weight is None else self._sigmoid(rr, self.v_weight, self.v_bias)

    def apply(self, probs: npt.NDArray[Any], rr: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Re-split ``N + S`` of ``probs`` (N, C) by :meth:`s_probability` of ``rr`` (N, K)."""
        p = np.asarray(probs, np.float64)
        q = self.s_probability(rr)
        ns = p[:, self.n_index] + p[:, self.s_index]
        out = p.copy()
        out[:, self.s_index] = ns * q
        out[:, self.n_index] = ns - ns * q
        v = self.v_probability(rr)
        if v is not None:
            factor = np.repeat((1.0 - v)[:, None], out.shape[1], axis=1)
            factor[:, self.v_index] = v
            out *= factor
            out /= out.sum(axis=1, keepdims=True)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (for the model card)."""
        return {
            "weight": [float(v) for v in self.weight],
            "bias": float(self.bias),
            "n_index": self.n_index,
            "s_index": self.s_index,
            "floor": self.floor,
            "formula": "q = sigmoid(log(max(rr, floor)) @ weight + bias); "
            "probs[n], probs[s] = (probs[n] + probs[s]) * (1 - q), (probs[n] + probs[s]) * q"
            + (
                "; v = sigmoid(log(max(rr, floor)) @ v_weight + v_bias); probs[v_index] *= v, "
                "every other column *= 1 - v; rows renormalised"
                if self.v_weight is not None
                else ""
            ),
        } | (
            {}
            if self.v_weight is None
            else {
                "v_weight": [float(x) for x in self.v_weight],
                "v_bias": float(self.v_bias),
                "v_index": self.v_index,
            }
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RRGate:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(d["weight"], np.float64),
            float(d["bias"]),
            int(d["n_index"]),
            int(d["s_index"]),
            float(d.get("floor", RR_FLOOR_S)),
            None if "v_weight" not in d else np.asarray(d["v_weight"], np.float64),
            float(d.get("v_bias", 0.0)),
            int(d.get("v_index", -1)),
        )


def _fit_logistic(x: F64, target: npt.NDArray[np.int64], l2: float) -> tuple[F64, float]:
    """Class-balanced logistic regression; (weight, bias) on the raw ``x`` (standardisation
    folded in)."""
    if target.min(initial=1) == target.max(initial=0):
        raise ValueError("the RR gate needs beats of both sides of each split to fit")
    model = fit_softmax(x, target, 2, l2=l2, balanced=True)
    ((w_layer, b_layer),) = model["layers"]
    w_std = np.asarray(w_layer, np.float64)[:, 1] - np.asarray(w_layer, np.float64)[:, 0]
    w = w_std / np.asarray(model["scale"], np.float64)
    b = float(b_layer[1] - b_layer[0]) - float(np.asarray(model["mean"], np.float64) @ w)
    return w, b


def fit_rr_gate(
    rr: npt.NDArray[Any],
    labels: npt.NDArray[np.int64],
    n_index: int,
    s_index: int,
    *,
    l2: float = 1.0,
    ns_only: bool = False,
    v_index: int | None = None,
) -> RRGate:
    """Fit the gate: class-balanced logistic regressions on log RR features.

    Parameters
    ----------
    rr : ndarray, shape (N, K)
        RR features (s and ratios) of the training beats.
    labels : ndarray, shape (N,)
        Class indices.
    n_index, s_index : int
        Columns of N and S.
    l2 : float
        Ridge penalty of :func:`models.feature_model.fit_softmax`.
    ns_only : bool
        Fit the S split on N and S beats only (default: S against every other class).
    v_index : int, optional
        Also fit the V rhythm expert (V against N beats; see :class:`RRGate`).
    """
    y = np.asarray(labels, np.int64)
    x = np.log(np.maximum(np.asarray(rr, np.float64), RR_FLOOR_S))
    keep = np.isin(y, [n_index, s_index]) if ns_only else np.ones(len(y), bool)
    w, b = _fit_logistic(x[keep], (y[keep] == s_index).astype(np.int64), l2)
    gate = RRGate(w, b, n_index, s_index)
    if v_index is not None:
        nv = np.isin(y, [n_index, v_index])
        wv, bv = _fit_logistic(x[nv], (y[nv] == v_index).astype(np.int64), l2)
        gate = RRGate(w, b, n_index, s_index, v_weight=wv, v_bias=bv, v_index=v_index)
    _LOGGER.info("RR gate fitted on %d beats (%d S)", len(y), int(np.sum(y == s_index)))
    return gate


def add_rr_gate_to_onnx(path: Path, gate: RRGate, features_input: str = "rr") -> None:
    """Append the gate after the ``probs`` output of the ONNX model at ``path`` (in place).

    Raises
    ------
    ValueError
        If the model has no ``probs`` output or no ``features_input`` input of K features.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from models.onnx_names import compact_names

    model = onnx.load(str(path))
    g = model.graph
    if features_input not in [i.name for i in g.input]:
        raise ValueError(f"{path}: no input {features_input!r} for the RR gate")
    producers = [n for n in g.node if PROBS in n.output]
    outs = [o for o in g.output if o.name == PROBS]
    if len(producers) != 1 or len(outs) != 1:
        raise ValueError(f"{path}: expected one {PROBS!r} output")
    n_classes = outs[0].type.tensor_type.shape.dim[1].dim_value or None
    net_probs = "probs_net"
    producers[0].output[list(producers[0].output).index(PROBS)] = net_probs
    for node in g.node:  # any other reader of probs now reads the net's
        for i, name in enumerate(node.input):
            if name == PROBS:
                node.input[i] = net_probs
    c = int(n_classes) if n_classes else max(gate.n_index, gate.s_index) + 1
    # One MatMul does the re-split (each onnxruntime node costs microseconds at batch 1):
    # [probs, q * probs] @ [[move], [shift]], where ``move`` puts N + S in column N and
    # ``shift`` moves q * (N + S) from column N to column S.
    n, s_ = gate.n_index, gate.s_index
    move = np.eye(c, dtype=np.float32)
    move[s_, s_], move[s_, n] = 0.0, 1.0
    shift = np.zeros((c, c), np.float32)
    shift[[n, s_], n], shift[[n, s_], s_] = -1.0, 1.0
    consts = {
        "rrg_floor": np.array(gate.floor, np.float32),
        "rrg_w": gate.weight.astype(np.float32).reshape(-1, 1),
        "rrg_b": np.array([gate.bias], np.float32),
        "rrg_split": np.concatenate([move, shift]),  # (2C, C)
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    mk = helper.make_node
    g.node.extend(
        [
            mk("Max", [features_input, "rrg_floor"], ["rrg_rr"]),
            mk("Log", ["rrg_rr"], ["rrg_log"]),
            mk("Gemm", ["rrg_log", "rrg_w", "rrg_b"], ["rrg_z"]),
            mk("Sigmoid", ["rrg_z"], ["rrg_q"]),  # (N, 1)
            mk("Mul", [net_probs, "rrg_q"], ["rrg_pq"]),
            mk("Concat", [net_probs, "rrg_pq"], ["rrg_both"], axis=1),  # (N, 2C)
            mk(
                "MatMul",
                ["rrg_both", "rrg_split"],
                [PROBS if gate.v_weight is None else "rrg_ns_out"],
            ),
        ]
    )
    if gate.v_weight is not None:  # V expert: V * v, the rest * (1 - v), renormalised
        one_v = np.zeros(c, np.float32)
        one_v[gate.v_index] = 1.0
        vconsts = {
            "rrg_vw": gate.v_weight.astype(np.float32).reshape(-1, 1),
            "rrg_vb": np.array([gate.v_bias], np.float32),
            "rrg_one_v": one_v,
            "rrg_not_v": 1.0 - one_v,
            "rrg_ones": np.ones((c, 1), np.float32),
            "rrg_one": np.array(1.0, np.float32),
        }
        g.initializer.extend(numpy_helper.from_array(v, k) for k, v in vconsts.items())
        g.node.extend(
            [
                mk("Gemm", ["rrg_log", "rrg_vw", "rrg_vb"], ["rrg_vz"]),
                mk("Sigmoid", ["rrg_vz"], ["rrg_v"]),  # (N, 1)
                mk("Sub", ["rrg_one", "rrg_v"], ["rrg_nv"]),
                mk("Mul", ["rrg_v", "rrg_one_v"], ["rrg_fv"]),
                mk("Mul", ["rrg_nv", "rrg_not_v"], ["rrg_fo"]),
                mk("Add", ["rrg_fv", "rrg_fo"], ["rrg_factor"]),  # (N, C)
                mk("Mul", ["rrg_ns_out", "rrg_factor"], ["rrg_un"]),
                mk("MatMul", ["rrg_un", "rrg_ones"], ["rrg_total"]),
                mk("Div", ["rrg_un", "rrg_total"], [PROBS]),
            ]
        )
    del g.output[[o.name for o in g.output].index(PROBS)]
    g.output.insert(0, helper.make_tensor_value_info(PROBS, TensorProto.FLOAT, ["N", c]))
    for node in g.node:  # named like the exported nodes (onnxruntime's errors cite names)
        node.name = node.name or f"{node.op_type}_{node.output[0]}"
    compact_names(model)  # as every shipped graph (models.onnx_names)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
