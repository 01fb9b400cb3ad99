"""Untrusted inbound messages never break the agent (hypothesis)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.payloads import Label, encode_label
from edge_agent.agent import EdgeAgent
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.featurize import StreamingBeatFeaturizer
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.pipeline import EcgPipeline
from tests.edge_agent.helpers import SPEC, ThresholdDetector, build_beat_model

TOPIC = "medchain/v1/label/dev"


def make(tmp: Path) -> EdgeAgent:
    clf = OnnxBeatClassifier(build_beat_model(tmp / "m"))
    pipe = EcgPipeline("dev", StreamingBeatFeaturizer(SPEC, ThresholdDetector, 360.0), clf)
    return EdgeAgent(
        EdgeSettings(client_id="dev"),
        pipe,
        BeatEventDetector("dev"),
        SqliteBuffer(":memory:", "dev"),
    )


@settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    topic=st.one_of(st.just(TOPIC), st.text(max_size=40)),
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda lid, cid, t, lab, tgt: encode_label(Label(lid, cid, t, lab, tgt)),
            st.text(max_size=10),
            st.sampled_from(["dev", "other"]),
            st.integers(-(2**62), 2**62),
            st.sampled_from(["N", "V", "X", ""]),
            st.sampled_from(["beat", "event"]),
        ),
    ),
)
def test_any_inbound_message_is_handled_or_counted(
    tmp_path: Path, topic: str, payload: bytes
) -> None:
    agent = _AGENT.get("a") or _AGENT.setdefault("a", make(tmp_path))
    before = (agent.stats.bad_payloads, agent.stats.labels_clinician, agent.stats.labels_unmatched)
    agent.handle_inbound(topic, payload)  # must not raise
    after = (agent.stats.bad_payloads, agent.stats.labels_clinician, agent.stats.labels_unmatched)
    # every message is either counted as bad, as a label outcome, or is an event label
    assert sum(after) - sum(before) in (0, 1)


_AGENT: dict[str, EdgeAgent] = {}


def teardown_module() -> None:
    for a in _AGENT.values():
        a.close()
