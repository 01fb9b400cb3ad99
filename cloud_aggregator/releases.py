"""Global model releases: build the first one from a model folder, derive each round's one.

A release (``common.fl_protocol.ModelRelease``) holds the federated tensors (``head.weight``
(C, E), ``head.bias`` (C,)), the deployable files (``model.onnx`` int8 + ``model.card.json``) and
metrics. The store keeps the encoded release (format :data:`RELEASE_FORMAT`) plus the strategy's
server state as extra tensors named ``_server.*``; what goes on the wire has those removed and
the store's version number in it.

Each round's deployable ONNX is the previous one with its fp32 head initialisers replaced by the
aggregated head (the int8 backbone is frozen in head mode), so every round publishes an int8
model that runs on the device as is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import CorruptInputError, DataNotFoundError
from common.fl_protocol import ModelRelease, Tensors, decode_model, encode_model
from common.model_card import card_path_for, load_card
from common.protocol import ProtocolError

_LOGGER = logging.getLogger(__name__)

RELEASE_FORMAT = "medchain-release-v1"
SERVER_PREFIX = "_server."
ONNX_FILE = "model.onnx"
CARD_FILE = "model.card.json"
HEAD_W, HEAD_B = "head.weight", "head.bias"


def version_name(version: int) -> str:
    """Wire name of a store version (``v12``)."""
    return f"v{version}"


def release_from_model_dir(onnx_path: Path) -> ModelRelease:
    """The initial release from an exported model: ONNX + card + head npz beside it.

    Raises
    ------
    DataNotFoundError
        If the ONNX, its card or the head file is missing.
    CorruptInputError
        If the card has no head section, or the ONNX does not hold the head file's values
        (a head the rounds could never write back into the model devices serve).
    """
    if not onnx_path.is_file():
        raise DataNotFoundError(
            f"model {onnx_path.name}", str(onnx_path.parent), "run `medchain train beat` first"
        )
    card = load_card(card_path_for(onnx_path))
    head = getattr(card, "head", None)
    if head is None:
        raise CorruptInputError(f"card of {onnx_path} has no head section: cannot train the head")
    head_path = card_path_for(onnx_path).parent / head.file
    if not head_path.is_file():
        raise DataNotFoundError(f"head file {head.file}", str(head_path.parent))
    with np.load(head_path) as z:
        tensors = {
            HEAD_W: z[head.weight_key].astype(np.float32),
            HEAD_B: z[head.bias_key].astype(np.float32),
        }
    # a head file out of step with the model would fail the first round's release: refuse now
    patch_head(onnx_path.read_bytes(), tensors, tensors)
    # the card as every later release writes it (json indent 1): patches then carry no reformat
    card_bytes = json.dumps(json.loads(card_path_for(onnx_path).read_text()), indent=1).encode()
    files = {ONNX_FILE: onnx_path.read_bytes(), CARD_FILE: card_bytes}
    return ModelRelease("v0", 0, tensors, files, {"source": str(onnx_path.name)})


def stored_blob(release: ModelRelease, server_state: Tensors) -> bytes:
    """What the store keeps: the release plus the strategy state as ``_server.*`` tensors."""
    tensors = dict(release.tensors)
    tensors.update({SERVER_PREFIX + k: v for k, v in server_state.items()})
    return encode_model(dataclasses.replace(release, tensors=tensors))


def load_stored(blob: bytes) -> tuple[ModelRelease, Tensors]:
    """Inverse of :func:`stored_blob` -> (release, server state)."""
    try:
        rel = decode_model(blob)
    except ProtocolError as exc:
        raise CorruptInputError(f"stored model is not a {RELEASE_FORMAT}: {exc}") from exc
    model = {k: v for k, v in rel.tensors.items() if not k.startswith(SERVER_PREFIX)}
    state = {
        k[len(SERVER_PREFIX) :]: v for k, v in rel.tensors.items() if k.startswith(SERVER_PREFIX)
    }
    return dataclasses.replace(rel, tensors=model), state


def wire_release(release: ModelRelease, version: int) -> tuple[bytes, str]:
    """The bytes published on ``model/v{version}`` and their sha256."""
    payload = encode_model(dataclasses.replace(release, version=version_name(version)))
    return payload, hashlib.sha256(payload).hexdigest()


def patch_head(onnx_bytes: bytes, old: Tensors, new: Tensors) -> bytes:
    """Replace the head initialisers of an ONNX model (found by value: ``W`` or ``W.T``, ``b``).

    Raises
    ------
    CorruptInputError
        If the model has no initialiser equal to the old head.
    """
    import onnx  # server-side adapter import (the ``server`` extra needs ``onnx``)
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    found = set()
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        for key in (HEAD_W, HEAD_B):
            if key in found:  # first match only: never patch a look-alike tensor twice
                continue
            ref = old[key]
            for transposed in (False, True):
                cand = ref.T if transposed else ref
                if (
                    arr.shape == cand.shape
                    and arr.dtype == np.float32
                    and np.allclose(arr, cand, atol=1e-6)
                ):
                    value = new[key].T if transposed else new[key]
                    init.CopyFrom(
                        numpy_helper.from_array(np.ascontiguousarray(value, np.float32), init.name)
                    )
                    found.add(key)
                    break
    if found != {HEAD_W, HEAD_B}:
        raise CorruptInputError(f"ONNX head initialisers not found (found {sorted(found)})")
    return bytes(model.SerializeToString())


class ReleaseBuildError(CorruptInputError):
    """A round's release cannot be built from its base (the round fails with the reason)."""


def next_release(
    base: ModelRelease, tensors: Tensors, round_no: int, metrics: dict[str, Any]
) -> ModelRelease:
    """The release of a closed round: new head, patched ONNX, card with the round's metrics.

    Raises
    ------
    ReleaseBuildError
        If the base's ONNX does not hold the base's head (:func:`patch_head`): a release with
        the new head beside the old model would have devices serve the old one, round after
        round, while the card reported progress.
    """
    files = dict(base.files)
    if ONNX_FILE in files:  # raises rather than ship the new head beside the old model
        try:
            files[ONNX_FILE] = patch_head(files[ONNX_FILE], base.tensors, tensors)
        except CorruptInputError as exc:
            raise ReleaseBuildError(str(exc)) from exc
    if CARD_FILE in files:
        try:
            card = json.loads(files[CARD_FILE])
            card.setdefault("federated", {})
            card["federated"].update({"round_no": round_no, "metrics": metrics})
            files[CARD_FILE] = json.dumps(card, indent=1, allow_nan=False, default=str).encode()
        except (ValueError, TypeError) as exc:
            _LOGGER.warning("round %d: card not updated: %s", round_no, exc)
    metrics = dict(metrics)
    # Devices key their embedding cache on the frozen backbone, not on the (re-headed) ONNX.
    metrics.setdefault("backbone_sha256", backbone_sha256(base))
    return ModelRelease(base.version, round_no, tensors, files, metrics)


def is_whole_model(release: ModelRelease) -> bool:
    """True for a whole-model release: its card describes the network (``federated.net``,
    see ``models.federated``), so every weight is federated, not only the head."""
    raw = release.files.get(CARD_FILE)
    try:
        card = json.loads(raw) if raw else {}
        return isinstance(card.get("federated", {}).get("net"), dict)
    except (ValueError, AttributeError):
        return False


def backbone_sha256(release: ModelRelease) -> str:
    """Identity of the frozen backbone: carried over from the first release that had one."""
    known = release.metrics.get("backbone_sha256")
    if isinstance(known, str):
        return known
    return hashlib.sha256(release.files.get(ONNX_FILE, b"")).hexdigest()
