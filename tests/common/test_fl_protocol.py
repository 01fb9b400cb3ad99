"""Federated-learning payloads, tensor bundles and chunk reassembly (pure)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import fl_protocol as fl
from common.protocol import ProtocolError, encode


def _tensors(seed: int = 0) -> fl.Tensors:
    rng = np.random.default_rng(seed)
    return {
        "head.weight": rng.normal(0, 0.1, (5, 32)).astype(np.float32),
        "head.bias": rng.normal(0, 0.1, 5).astype(np.float32),
    }


def _announcement() -> fl.RoundAnnouncement:
    return fl.RoundAnnouncement(
        round_id="7",
        run_id="run3",
        round_no=2,
        total_rounds=10,
        attempt=1,
        model_version="v4",
        model_sha256="ab" * 32,
        deadline_ns=2_000_000_000_000_000_000,
        issued_ns=1_999_999_000_000_000_000,
        invitation=fl.Invitation.covering("g3/2/1/00ab", ("mitdb-101", "mitdb-106")),
        config=fl.RoundConfig(mode="head", mu=0.01, lr=0.05),
    )


def test_round_announcement_round_trip() -> None:
    # Prepare
    ann = _announcement()
    # Execute
    out = fl.decode_round(fl.encode_round(ann))
    # Assert
    assert out == ann


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "weird"), ("lr", float("inf")), ("local_epochs", 0), ("compression", "zip"),
     ("optimizer", "lbfgs"), ("norm", "group"), ("class_weights", [1.0, -1.0]), ("class_weights", [1.0] * 65),
     ("class_weights", "1,2")],
)  # fmt: skip
def test_round_config_out_of_range_is_rejected(field: str, value: object) -> None:
    cfg = fl.RoundConfig().to_dict()
    cfg[field] = value
    with pytest.raises(ProtocolError):
        fl.RoundConfig.from_dict(cfg)


def test_round_config_carries_the_optimiser_and_class_weights() -> None:
    # Prepare: a config with both, and one of an older aggregator without them
    cfg = fl.RoundConfig(mode="full", optimizer="sgd", norm="frozen",
                         class_weights=(0.7, 1.6, 1.1, 3.9))  # fmt: skip
    old = {k: v for k, v in cfg.to_dict().items()
           if k not in ("optimizer", "norm", "class_weights")}  # fmt: skip
    # Execute
    back = fl.RoundConfig.from_dict(cfg.to_dict())
    older = fl.RoundConfig.from_dict(old)
    # Assert
    assert back == cfg and older.optimizer == "adam" and older.class_weights == ()
    assert older.norm == "batch"


def test_update_int8_round_trip_bounds_the_error() -> None:
    # Prepare
    delta = _tensors(1)
    u = fl.ClientUpdate("7", "mitdb-101", "v4", 1234, delta, "int8", 0.004, {"loss": 0.3})
    # Execute
    out = fl.decode_update(fl.encode_update(u))
    # Assert: per element error at most scale/2 = max|x|/254
    for k, v in delta.items():
        assert np.max(np.abs(out.delta[k] - v)) <= np.max(np.abs(v)) / 254 + 1e-7
    assert out.update_id == u.update_id == fl.update_id_for("7", "mitdb-101")
    assert (out.n_examples, out.metrics, out.compression) == (1234, {"loss": 0.3}, "int8")
    assert fl.compression_error(delta, out.delta) < 0.01


def test_update_uncompressed_is_exact() -> None:
    delta = _tensors(2)
    u = fl.ClientUpdate("7", "c1", "v4", 10, delta, "none")
    out = fl.decode_update(fl.encode_update(u))
    for k in delta:
        np.testing.assert_array_equal(out.delta[k], delta[k])


def test_update_with_forged_update_id_is_rejected() -> None:
    # Prepare: a valid update re-labelled with another client's update id
    u = fl.ClientUpdate("7", "c1", "v4", 10, _tensors(), "none")
    specs, blob = fl.pack_tensors(u.delta)
    body = {
        "round_id": "7",
        "client_id": "c1",
        "update_id": fl.update_id_for("7", "c2"),
        "base_version": "v4",
        "n_examples": 10,
        "compression": "none",
        "compression_error": 0.0,
        "metrics": {},
        "tensors": specs,
    }
    # Execute / Assert
    with pytest.raises(ProtocolError, match="update_id"):
        fl.decode_update(encode("update", body, blob))


def _evaluated(metrics: dict[str, float]) -> bytes:
    return fl.encode_update(
        fl.ClientUpdate("7", "c1", "v4", 10, _tensors(), "none", metrics=metrics)
    )


@pytest.mark.parametrize(
    ("metrics", "why"),
    [
        ({"eval_n": 1.0, "eval_tp_0": -1e15}, "not a count"),  # pooled Se went to -1
        ({"eval_n": 1.0, "eval_tp_0": 1e15}, "not a count"),  # class weights past every device's
        ({"eval_n": 2.0, "eval_tp_0": 1.5, "eval_fn_1": 0.5}, "not a count"),
        ({"eval_n": 3.0, "eval_tp_0": 2.0, "eval_fp_1": 1.0}, "do not add up"),  # fn missing
        ({"eval_tp_0": 2.0}, "do not add up"),  # no eval_n
    ],
)
def test_a_devices_evaluation_counts_must_be_a_confusion_matrix(
    metrics: dict[str, float], why: str
) -> None:
    # The aggregator pools them into the device figures and the run's class weights: one
    # device's negative or inflated counts pushed pooled scores out of [0, 1] and made weights
    # every device refuses, for the rest of the run
    with pytest.raises(ProtocolError, match=why):
        fl.decode_update(_evaluated(metrics))


def test_honest_evaluation_counts_and_other_metrics_pass() -> None:
    # Two labelled beats of class 0, one called 1; one of class 1 called 1; a loss metric
    metrics = {"eval_n": 3.0, "eval_tp_0": 1.0, "eval_fn_0": 1.0, "eval_tp_1": 1.0,
               "eval_fp_1": 1.0, "eval_fp_0": 0.0, "loss": -0.5}  # fmt: skip
    assert fl.decode_update(_evaluated(metrics)).metrics == metrics
    assert fl.decode_update(_evaluated({"loss": 1.0})).metrics == {"loss": 1.0}


def test_tensor_spec_pointing_outside_the_blob_is_rejected() -> None:
    specs, blob = fl.pack_tensors(_tensors())
    specs[1]["offset"] = len(blob)
    with pytest.raises(ProtocolError, match="do not fit"):
        fl.unpack_tensors(specs, blob)


def test_model_release_round_trip_with_files() -> None:
    rel = fl.ModelRelease(
        "v5",
        3,
        _tensors(),
        {"model.onnx": b"\x08\x01onnx", "model.card.json": b"{}"},
        {"macro_f1": 0.8},
    )
    out = fl.decode_model(fl.encode_model(rel))
    assert out.files == rel.files and out.metrics == rel.metrics and out.round_no == 3
    np.testing.assert_array_equal(out.tensors["head.weight"], rel.tensors["head.weight"])
    assert rel.sha256 == out.sha256


def test_chunks_reassemble_out_of_order_and_duplicated_exactly_once() -> None:
    # Prepare
    payload = fl.encode_model(
        fl.ModelRelease("v1", 0, _tensors(), {"model.onnx": bytes(range(256)) * 40})
    )
    chunks = fl.split_message(payload, "m1", 1000)
    order = list(reversed(chunks)) + chunks[:3]  # reordered, then QoS 1 redelivery
    r = fl.Reassembler()
    # Execute
    outs = [r.feed(c, now_s=0.0) for c in order]
    # Assert
    done = [o for o in outs if o is not None]
    assert len(chunks) > 5 and done == [payload] and r.pending == 0


def test_small_message_is_not_chunked_and_passes_through() -> None:
    payload = fl.encode_round(_announcement())
    assert fl.split_message(payload, "x", 10_000) == [payload]
    assert fl.Reassembler().feed(payload, 0.0) == payload


def test_conflicting_chunks_and_bad_hash_are_rejected() -> None:
    # Prepare
    chunks = fl.split_message(b"A" * 3000, "m", 1000)
    forged = encode(
        "chunk",
        {"message_id": "m", "seq": 1, "total": 3, "size": 3000, "sha256": "00" * 32},
        b"B" * 1000,
    )
    r = fl.Reassembler()
    r.feed(chunks[0], 0.0)
    # Execute / Assert
    with pytest.raises(ProtocolError, match="disagrees"):
        r.feed(forged, 0.0)
    r2 = fl.Reassembler()
    tampered = [
        chunks[0],
        encode(
            "chunk",
            {
                "message_id": "m",
                "seq": 1,
                "total": 3,
                "size": 3000,
                "sha256": hashlib.sha256(b"A" * 3000).hexdigest(),
            },
            b"B" * 1000,
        ),
        chunks[2],
    ]
    r2.feed(tampered[0], 0.0)
    r2.feed(tampered[1], 0.0)
    with pytest.raises(ProtocolError, match="sha256"):
        r2.feed(tampered[2], 0.0)
    assert r.rejected == 1 and r2.rejected == 1


def test_partial_messages_expire_and_memory_is_bounded() -> None:
    r = fl.Reassembler(max_pending=2, ttl_s=10)
    for i in range(3):
        r.feed(fl.split_message(b"x" * 30, f"m{i}", 10)[0], now_s=0.0)
    assert r.pending == 2 and r.expired == 1
    r.feed(fl.split_message(b"y" * 30, "late", 10)[0], now_s=100.0)
    assert r.pending == 1 and r.expired == 3


@settings(derandomize=True, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_decoders_raise_only_protocol_error(data: bytes) -> None:
    for fn in (fl.decode_round, fl.decode_model, fl.decode_update):
        try:
            fn(data)
        except ProtocolError:
            pass
    try:
        fl.Reassembler().feed(data, 0.0)
    except ProtocolError:
        pass


@settings(derandomize=True, max_examples=200)
@given(st.binary(min_size=1, max_size=400), st.integers(0, 300))
def test_fuzz_mutated_update_never_crashes(noise: bytes, pos: int) -> None:
    payload = bytearray(fl.encode_update(fl.ClientUpdate("7", "c1", "v4", 10, _tensors(), "int8")))
    pos = min(pos, len(payload) - 1)
    payload[pos : pos + len(noise)] = noise
    try:
        fl.decode_update(bytes(payload))
    except ProtocolError:
        pass
