"""Scoring rhythm v2 ONNX models on a :class:`~models.rhythm_data.WindowBank` (no torch).

:func:`onnx_window_probs` runs a model (a file or its bytes, as a release carries it) on
windows batched by equal length; :func:`record_probabilities` turns window probabilities into
one decision per recording (the mean of its full windows, as a device averages its windows).
The training CV, the pipeline and the aggregator's server-side evaluation of federated rhythm
releases all score this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.rhythm_data import WindowBank


def session(model: Path | bytes) -> Any:
    """A one-thread onnxruntime session of a model file or its bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def onnx_window_probs(
    model: Path | bytes, bank: WindowBank, idx: npt.NDArray[np.int64], batch: int = 256
) -> npt.NDArray[np.float32]:
    """``probs`` of the windows ``idx``, batched by equal length."""
    sess = session(model)
    lengths = bank.lengths()[idx]
    out = np.zeros((idx.size, 0), dtype=np.float32)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        for k in range(0, rows.size, batch):
            part = rows[k : k + batch]
            ecg = np.stack([bank.inputs(int(i)) for i in idx[part]]).astype(np.float32)
            (probs,) = sess.run(
                ["probs"], {"ecg": ecg, "features": bank.features[idx[part]].astype(np.float32)}
            )
            if out.shape[1] == 0:
                out = np.zeros((idx.size, probs.shape[1]), dtype=np.float32)
            out[part] = probs
    return out


def record_probabilities(
    bank: WindowBank, window_probs: npt.NDArray[np.float32], idx: npt.NDArray[np.int64]
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Mean probabilities of each recording's full windows among ``idx`` (short ones ignored).

    Returns
    -------
    records : list of str
    probs : ndarray, shape (n_records, C)
    labels : ndarray, shape (n_records,)
    """
    keep = ~bank.short[idx]
    idx, window_probs = idx[keep], window_probs[keep]
    names, inverse = np.unique(bank.records[idx], return_inverse=True)
    probs = np.zeros((names.size, window_probs.shape[1]), dtype=np.float64)
    np.add.at(probs, inverse, window_probs)
    probs /= np.bincount(inverse, minlength=names.size)[:, None]
    labels = np.zeros(names.size, dtype=np.int64)
    labels[inverse] = bank.labels[idx]
    return [str(n) for n in names], probs.astype(np.float32), labels
