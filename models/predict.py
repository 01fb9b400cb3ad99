"""Run a saved model (ONNX via onnxruntime, or a torch checkpoint) on a task's examples.

``load_predictor(path)`` returns a callable ``predict(data) -> probs (N, C)``; the ONNX path
reads input names from the graph, so the same code serves fp32 and int8 models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import CorruptInputError, DataNotFoundError
from models.tasks.base import TaskData

_LOGGER = logging.getLogger(__name__)

Predictor = Callable[[TaskData], npt.NDArray[np.float32]]


def onnx_session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session (``intra_op_num_threads=threads``), with clear errors."""
    import onnxruntime as ort

    if not path.is_file():
        raise DataNotFoundError(f"model {path.name!r}", str(path.parent))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph exceptions
        raise CorruptInputError(f"cannot load ONNX model {path}: {exc}") from exc


def onnx_feed(session: Any, data: TaskData) -> dict[str, npt.NDArray[np.float32]]:
    """Map the graph's inputs to ``data``.

    An input named ``features`` gets ``data.features`` (N, K): the feature models of
    ``models.feature_model`` have it as their only input. The other inputs are matched in order
    to ``data.signal`` (N, C, L) then ``data.features`` (the beat model's ``beat``, ``rr``).

    Raises
    ------
    CorruptInputError
        If the graph has more inputs than the task provides or an input's rank or fixed sizes
        differ from the task's arrays (a model made for another input contract).
    """
    inputs = session.get_inputs()
    by_name = {"features": data.features}
    positional = [a for a in (data.signal, data.features) if not _same(a, by_name, inputs)]
    arrays: list[npt.NDArray[np.float32]] = []
    for spec in inputs:
        if spec.name in by_name:
            arrays.append(by_name[spec.name])
        elif positional:
            arrays.append(positional.pop(0))
        else:
            raise CorruptInputError(
                f"model input {spec.name!r} has no counterpart in the task's data (signal, "
                "features): the model was made for another input contract"
            )
    for spec, array in zip(inputs, arrays, strict=True):
        fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        if len(spec.shape) != array.ndim or any(array.shape[i] != d for i, d in fixed):
            raise CorruptInputError(
                f"model input {spec.name!r} expects shape {list(spec.shape)} but the task's data "
                f"is {list(array.shape)}: the model was made for another input contract"
            )
    return {
        spec.name: np.ascontiguousarray(array, dtype=np.float32)
        for spec, array in zip(inputs, arrays, strict=True)
    }


def _same(array: npt.NDArray[np.float32], by_name: dict[str, Any], inputs: list[Any]) -> bool:
    """Whether ``array`` is already fed by name (so it is not matched by position again)."""
    return any(spec.name in by_name and by_name[spec.name] is array for spec in inputs)


def onnx_predictor(path: Path, batch_size: int = 4096) -> Predictor:
    """Predictor over an ONNX model (``probs`` output)."""
    session = onnx_session(path)

    def predict(data: TaskData) -> npt.NDArray[np.float32]:
        out = []
        for start in range(0, len(data), batch_size):
            part = data.subset(np.arange(start, min(start + batch_size, len(data))))
            out.append(session.run(["probs"], onnx_feed(session, part))[0])
        return np.concatenate(out).astype(np.float32)

    return predict


def load_checkpoint(path: Path) -> Any:
    """Rebuild a ``SignalNet`` from a checkpoint written by ``models.export.save_checkpoint``."""
    import torch

    from models.nets import build_net
    from models.tasks.base import NetSpec

    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path.name!r}", str(path.parent))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = ckpt["meta"]
        net = build_net(
            NetSpec(**{**meta["net_spec"], "widths": tuple(meta["net_spec"]["widths"])}),
            int(meta["in_channels"]),
            int(meta["length"]),
            int(meta["n_features"]),
            int(meta["n_classes"]),
        )
        net.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise CorruptInputError(f"cannot load checkpoint {path}: {exc}") from exc
    net.eval()
    return net


def torch_predictor(path: Path) -> Predictor:
    """Predictor over a torch checkpoint (softmax of the logits)."""
    from models.train import predict_logits

    net = load_checkpoint(path)

    def predict(data: TaskData) -> npt.NDArray[np.float32]:
        logits = predict_logits(net, data)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs: npt.NDArray[np.float32] = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs

    return predict


def load_predictor(path: Path) -> Predictor:
    """Predictor for ``.onnx`` (onnxruntime) or ``.pt`` (torch checkpoint) files."""
    if path.suffix == ".onnx":
        return onnx_predictor(path)
    if path.suffix in (".pt", ".pth"):
        return torch_predictor(path)
    raise CorruptInputError(f"unsupported model file {path} (expected .onnx or .pt)")
