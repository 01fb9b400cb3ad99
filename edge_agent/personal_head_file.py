"""The personal head's file on the device (``personal_head.npz``): written atomically by the
round participant, read by the inference path (``edge_agent.participation``).

Keys: ``W`` (C, E), ``b`` (C,), ``base_version``, ``n``, ``s_in_af_as_n``; with a VEB template
gate ``gate_*``, with the RR split ``split_*``. A file without a key written later (an older
device) loads with that part off.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.beat_quality import VTemplateGate
from edge_agent.personal_head import PersonalHead
from edge_agent.rr_split import RRSplit

_LOGGER = logging.getLogger(__name__)

PERSONAL_HEAD_FILE = "personal_head.npz"


def save_personal_head(head: PersonalHead, folder: Path) -> Path:
    """Write the personal head atomically to ``folder/personal_head.npz``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PERSONAL_HEAD_FILE
    tmp = folder / (PERSONAL_HEAD_FILE + ".tmp.npz")
    gate: dict[str, Any] = {}
    if head.v_gate is not None:
        g = head.v_gate
        gate = {
            "gate_templates": g.templates,
            "gate_threshold": np.float64(g.threshold),
            "gate_classes": np.array([g.v, g.q], np.int64),
        }
    split: dict[str, Any] = {}
    if head.rr_split is not None:
        r = head.rr_split
        split = {
            "split_weight": r.weight,
            "split_bias": np.float64(r.bias),
            "split_classes": np.array([r.n, r.s], np.int64),
            "split_floor": np.float64(r.floor),
            "split_threshold": np.float64(r.threshold),
        }
    with tmp.open("wb") as fh:  # synced before the rename: a power cut leaves the old or the new
        np.savez(
            fh,
            W=head.weight,
            b=head.bias,
            base_version=np.str_(head.base_version),
            n=np.int64(head.n_examples),
            s_in_af_as_n=np.bool_(head.s_in_af_as_n),
            **gate,
            **split,
        )
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def load_personal_head(folder: Path) -> PersonalHead | None:
    """The device's personal head for inference, or None if it has none (use the global head).

    This is what the edge inference path calls: ``probs = head.predict(embedding)``.
    """
    path = folder / PERSONAL_HEAD_FILE
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as z:  # fh: closed on error
            gate = None
            if "gate_templates" in z.files:
                v, q = (int(i) for i in z["gate_classes"])
                gate = VTemplateGate(
                    z["gate_templates"].astype(np.float32), float(z["gate_threshold"]), v, q
                )
            split = None
            if "split_weight" in z.files:
                n, s = (int(i) for i in z["split_classes"])
                split = RRSplit(
                    z["split_weight"].astype(np.float64),
                    float(z["split_bias"]),
                    n,
                    s,
                    float(z["split_floor"]),
                    float(z["split_threshold"]),
                )
            return PersonalHead(
                z["W"].astype(np.float32),
                z["b"].astype(np.float32),
                str(z["base_version"]),
                int(z["n"]),
                gate,
                split,
                # heads written before the per-patient S-in-AF decision have no key: off
                "s_in_af_as_n" in z.files and bool(z["s_in_af_as_n"]),
            )
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # damaged
        _LOGGER.warning("personal head %s unreadable (%s): using the global head", path, exc)
        return None
