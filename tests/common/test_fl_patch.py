"""Model patches: a release as what changed since the version a device holds (common.fl_patch)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import fl_protocol as fl
from common.fl_patch import apply_patch, decode_patch, downlink_tensors, encode_patch, make_patch
from common.protocol import ProtocolError


def release(version: str, tensors: fl.Tensors, onnx: bytes, metrics: dict) -> fl.ModelRelease:
    return fl.ModelRelease(version, 1, tensors, {"model.onnx": onnx, "model.card.json": b"{}"},
                           metrics)  # fmt: skip


def pair(seed: int = 0) -> tuple[fl.ModelRelease, fl.ModelRelease, bytes]:
    rng = np.random.default_rng(seed)
    old_t = {"w": rng.normal(0, 1, (5, 32)).astype(np.float32), "b": np.zeros(5, np.float32)}
    onnx = bytes(rng.integers(0, 256, 40_000, dtype=np.uint8))
    base = release("v1", old_t, onnx, {"macro_f1": 0.5, "backbone_sha256": "ab" * 32})
    aggregated = {k: v + rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in old_t.items()}
    exact, deltas = downlink_tensors(old_t, aggregated)
    new_onnx = onnx[:100] + exact["w"].tobytes() + onnx[100 + exact["w"].nbytes :]
    new = release("v2", exact, new_onnx, {"backbone_sha256": "ab" * 32, "macro_f1": 0.55})
    return base, new, encode_patch(make_patch(base, new, deltas))


def test_a_patch_rebuilds_the_release_bit_for_bit_and_is_small() -> None:
    # Prepare
    base, new, wire = pair()
    # Execute
    rebuilt = apply_patch(base, decode_patch(wire))
    # Assert: the same bytes on the wire (so the same sha256 the announcement names)
    assert fl.encode_model(rebuilt) == fl.encode_model(new)
    assert len(wire) < 2_000 < len(fl.encode_model(new)) / 20


def test_downlink_tensors_are_what_the_device_rebuilds() -> None:
    old = {"w": np.linspace(-1, 1, 50, dtype=np.float32)}
    new = {"w": old["w"] * 1.01 + 0.003}
    exact, deltas = downlink_tensors(old, new)
    q, scale = deltas["w"]
    assert np.array_equal(exact["w"], (old["w"] + q.astype(np.float32) * np.float32(scale)))
    assert np.max(np.abs(exact["w"] - new["w"])) <= scale / 2 + 1e-6


def test_a_patch_for_another_base_or_tampered_is_refused() -> None:
    base, new, wire = pair()
    other_base = dataclasses.replace(base, metrics={"macro_f1": 0.1})
    with pytest.raises(ProtocolError, match="does not apply"):
        apply_patch(other_base, decode_patch(wire))
    patch = decode_patch(wire)
    forged = dataclasses.replace(patch, blob=bytes(len(patch.blob)))  # other tensor deltas
    with pytest.raises(ProtocolError, match="another sha256"):
        apply_patch(base, forged)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 5000), flip=st.integers(0, 5000))
def test_damaged_patches_raise_only_protocol_error(cut: int, flip: int) -> None:
    base, _, wire = pair()
    damaged = bytearray(wire[: max(0, len(wire) - cut)])
    if damaged:
        damaged[flip % len(damaged)] ^= 0x5A
    try:
        apply_patch(base, decode_patch(bytes(damaged)))
    except ProtocolError:
        pass
