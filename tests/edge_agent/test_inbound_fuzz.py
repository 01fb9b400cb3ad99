"""Untrusted inbound messages never stop the agent's inbound handling (hypothesis).

Every topic the edge agent subscribes (its ``label`` and ``predack`` topics, the participant's
``round/current`` and ``model/#``) is driven with random bytes, hostile envelopes (huge integers, NaN, deep
nesting, NUL, wrong types) and decoders that raise anything at all; after each, a good label
must still be handled. The decoders in ``common/`` are not trusted to raise only
``ProtocolError``: the device loop survives whatever they raise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import fl_protocol as fl
from common import protocol as proto
from common.payloads import Label, encode_label
from edge_agent.agent import EdgeAgent
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.featurize import StreamingBeatFeaturizer
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.participation import federated_participant
from edge_agent.pipeline import EcgPipeline
from tests.edge_agent.helpers import (
    SPEC,
    FakeUplink,
    ListSource,
    ThresholdDetector,
    build_beat_model,
    chunks_of,
    synthetic_ecg,
)
from tests.edge_agent.test_model_update import _release
from tests.support.invitations import invite

CID = "dev"
LABEL = proto.client_topic(proto.Channel.LABEL, CID)
PRED_ACK = proto.client_topic(proto.Channel.PRED_ACK, CID)
ROUND = proto.round_current_topic()
TOPICS = [LABEL, PRED_ACK, ROUND, proto.model_topic("v1"), f"{proto.model_topic('v1')}/0"]
HUGE = "9" * 5000  # a 5000-digit integer, spliced into the JSON text as is
FUZZ = settings(
    derandomize=True,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_beat_model(tmp_path_factory.mktemp("m"))


def _agent(model_path: Path, work: Path) -> tuple[EdgeAgent, FakeUplink]:
    """A federated agent on fakes: the real label handling, participant and installer."""
    settings = EdgeSettings(client_id=CID, workdir=work, federated=True)
    clf = OnnxBeatClassifier(model_path)
    pipe = EcgPipeline(CID, StreamingBeatFeaturizer(SPEC, ThresholdDetector, 360.0), clf)
    up = FakeUplink()
    agent = EdgeAgent(settings, pipe, BeatEventDetector(CID), SqliteBuffer(":memory:", CID), up)
    agent.participant = federated_participant(settings, clf)(agent, up)
    return agent, up


def envelope(kind: str, body_json: str, blob: bytes = b"") -> bytes:
    """An envelope built by hand, so the header may hold what ``encode`` refuses."""
    extra = f',"blob_size":{len(blob)},"blob_sha256":"{hashlib.sha256(blob).hexdigest()}"'
    header = f'{{"kind":"{kind}","body":{body_json}{extra if blob else ""}}}'.encode()
    return b"MC\x01" + len(header).to_bytes(4, "little") + header + blob


def _good_label(i: int = 0) -> bytes:
    # far from any beat: handled as "unmatched", which proves the label path still runs
    return encode_label(Label(f"good-{i}", CID, 1_000_000_000 + i, "N", "beat"))


def _handled(agent: EdgeAgent) -> int:
    s = agent.stats
    return s.labels_clinician + s.labels_unmatched


_BASE = {
    "label": {"label_id": "l1", "client_id": CID, "t_ns": 5, "label": "N", "target": "beat"},
    "round": {
        "round_id": "7",
        "run_id": "g1",
        "round_no": 1,
        "total_rounds": 3,
        "attempt": 0,
        "model_version": "v1",
        "model_sha256": "0" * 64,
        "deadline_ns": 2**62,
        "issued_ns": 1,
        "config": fl.RoundConfig().to_dict(),
    },
    "model": {"version": "v1", "round_no": 1, "tensors": [], "files": [], "metrics": {}},
    "chunk": {"message_id": "m", "seq": 0, "total": 2, "size": 10, "sha256": "0" * 64},
    "pred_ack": {"client_id": CID, "batch_ids": ["b1"], "t_ns": 1},
}
_HOSTILE_TOKENS = [
    HUGE,
    "-" + HUGE,
    str(2**70),
    str(2**63 - 1),
    str(-(2**63)),
    "1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\u0000"',
    '"x\\ud800"',
    '"' + "A" * 70000 + '"',
    "[" * 3000 + "]" * 3000,
    "null",
    "true",
    "{}",
    "[]",
    "0.5",
    '"v1/../x"',
]


@st.composite
def hostile_envelopes(draw: st.DrawFn) -> bytes:
    """A well-formed envelope of a real kind whose body has hostile values in some fields."""
    kind = draw(st.sampled_from(sorted(_BASE)))
    body = dict(_BASE[kind])
    keys = draw(st.lists(st.sampled_from(sorted(body)), min_size=1, max_size=3, unique=True))
    text = json.dumps(body, separators=(",", ":"))
    for key in keys:
        token = draw(st.sampled_from(_HOSTILE_TOKENS))
        old = json.dumps(body[key], separators=(",", ":"))
        text = text.replace(f'"{key}":{old}', f'"{key}":{token}', 1)
    blob = draw(st.sampled_from([b"", b"\x00" * 10, b"a\nb\nc"]))
    return envelope(kind, text, blob)


payloads = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b"MC\x01" + b),
    hostile_envelopes(),
)


async def _deliver(agent: EdgeAgent, messages: list[tuple[str, bytes]]) -> None:
    for topic, payload in messages:
        agent.handle_inbound(topic, payload)
    await agent.inbound_settled()


@pytest.fixture()
def agents(model_path: Path, tmp_path: Path) -> Iterator[list[EdgeAgent]]:
    made: list[EdgeAgent] = []
    yield made
    for a in made:
        a.close()


@FUZZ
@given(topic=st.sampled_from(TOPICS), payload=payloads)
def test_any_inbound_message_leaves_the_agent_handling_labels(
    model_path: Path, tmp_path: Path, agents: list[EdgeAgent], topic: str, payload: bytes
) -> None:
    # Prepare
    agent, _ = _agent(model_path, tmp_path / "fl")
    agents.append(agent)

    # Execute: the hostile message, then a good label
    asyncio.run(_deliver(agent, [(topic, payload), (LABEL, _good_label())]))

    # Assert: the good label was handled; the hostile one was handled or counted, not raised
    assert _handled(agent) >= 1


_RAISED = [
    OverflowError("Python int too large to convert to C long"),
    ValueError("Exceeds the limit (4300 digits) for integer string conversion"),
    RecursionError("maximum recursion depth exceeded"),
    KeyError("t_ns"),
    TypeError("'NoneType' object is not subscriptable"),
    IndexError("list index out of range"),
    ZeroDivisionError("division by zero"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    MemoryError(),
    RuntimeError("anything"),
]


@FUZZ
@given(
    topic=st.sampled_from(TOPICS),
    exc=st.sampled_from(_RAISED),
    where=st.sampled_from(["label", "round", "model", "reassembly", "predack"]),
)
def test_decoders_raising_anything_never_stop_inbound_handling(
    model_path: Path,
    tmp_path: Path,
    agents: list[EdgeAgent],
    topic: str,
    exc: BaseException,
    where: str,
) -> None:
    # Prepare: one decoder of the agent raises what a buggy decoder might
    agent, _ = _agent(model_path, tmp_path / "fl")
    agents.append(agent)

    def boom(*args: object, **kwargs: object) -> object:
        raise exc

    targets = {
        "label": ("edge_agent.clinician_labels", "decode_label"),
        "round": ("common.fl_protocol", "decode_round"),
        "model": ("common.fl_protocol", "decode_model"),
        "reassembly": ("common.fl_protocol.Reassembler", "feed"),
        "predack": ("edge_agent.outbox", "decode_pred_ack"),
    }
    module, name = targets[where]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(f"{module}.{name}", boom)
        payload = _good_label(1) if topic == LABEL else _release_payload(tmp_path)

        # Execute
        asyncio.run(_deliver(agent, [(topic, payload)]))
    asyncio.run(_deliver(agent, [(LABEL, _good_label(2))]))

    # Assert: labels are still handled; a failing label decoder was counted
    first_label_ok = topic == LABEL and where != "label"
    assert _handled(agent) == (2 if first_label_ok else 1)
    if (where, topic) == ("label", LABEL):
        assert agent.stats.bad_payloads == 1


_RELEASE: dict[str, bytes] = {}


def _release_payload(tmp: Path) -> bytes:
    if "v1" not in _RELEASE:
        _RELEASE["v1"] = _release(tmp / "rel", "v1", 1)
    return _RELEASE["v1"]


def _announce(version: str, payload: bytes) -> bytes:
    now = time.time_ns()
    return fl.encode_round(
        fl.RoundAnnouncement(
            "1",
            "g1",
            1,
            5,
            0,
            version,
            hashlib.sha256(payload).hexdigest(),
            now + 60 * 10**9,
            now,
            invite(["other"], [CID]),
            fl.RoundConfig(),
        )
    )


def _hostile_batch() -> list[tuple[str, bytes]]:
    """The issue's messages: a label at t_ns 2**70, one with a 5000-digit t_ns, a label at the
    largest int64 (passes a bounded decoder; the buffer's window arithmetic overflows), an
    announcement with a 5000-digit deadline, garbage on the model topics."""
    base = _BASE["label"]
    huge_t = json.dumps(base).replace('"t_ns": 5', f'"t_ns": {HUGE}')
    round_huge = json.dumps(_BASE["round"]).replace(
        f'"deadline_ns": {2**62}', f'"deadline_ns": {HUGE}'
    )
    return [
        (LABEL, encode_label(Label("big", CID, 2**70, "N", "beat"))),
        (LABEL, envelope("label", huge_t)),
        (LABEL, encode_label(Label("max", CID, 2**63 - 1, "N", "beat"))),
        (ROUND, envelope("round", round_huge)),
        (proto.model_topic("v9"), b"MC\x01\xff\xff\xff\xff"),
        (f"{proto.model_topic('v9')}/0", envelope("chunk", json.dumps(_BASE["chunk"]))),
    ]


def test_the_running_agent_survives_the_issues_messages_and_keeps_working(
    model_path: Path, tmp_path: Path, agents: list[EdgeAgent]
) -> None:
    # Prepare: a streaming agent; its inbound queue holds the hostile messages, then a good
    # label, a good announcement and the release it names
    agent, up = _agent(model_path, tmp_path / "fl")
    agents.append(agent)
    release = _release_payload(tmp_path)
    for message in _hostile_batch():
        up.queue.put_nowait(message)
    up.queue.put_nowait((LABEL, _good_label(3)))
    up.queue.put_nowait((ROUND, _announce("v1", release)))
    up.queue.put_nowait((proto.model_topic("v1"), release))
    x, _ = synthetic_ecg([0.8] * 20, 360.0)
    source = ListSource(chunks_of(x, 360.0, 360), pause_s=0.05)

    # Execute: run() re-raises whatever killed its inbound task
    stats = asyncio.run(agent.run(source, drain_timeout_s=0.5))

    # Assert: every message after the hostile ones was handled
    assert _handled(agent) >= 1
    assert stats.models_installed == 1
    assert stats.bad_payloads >= 4
