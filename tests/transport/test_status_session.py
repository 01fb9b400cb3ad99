"""Status stamps: a rising session per CONNECT, closed by its Will, statuses counted within."""

from __future__ import annotations

from common.payloads import WILL_SEQ, Status, decode_status, encode_status, supersedes
from transport.status_session import StatusSessions


def _build(online: bool, detail: str, session: int, seq: int) -> bytes:
    return encode_status(Status("dev-1", online, 1, detail=detail, session=session, seq=seq))


def test_sessions_rise_even_when_the_clock_steps_back_and_each_will_closes_its_own() -> None:
    # Prepare: the clock steps back between the two connects (NTP)
    times = iter([5_000, 4_000])
    s = StatusSessions(_build, clock_ns=lambda: next(times))
    # Execute
    will1 = decode_status(s.start())
    online1, beat1 = decode_status(s.next(True)), decode_status(s.next(True, "hr 61"))
    will2 = decode_status(s.start())
    online2 = decode_status(s.next(True))
    # Assert
    assert (will1.session, will1.seq, will1.online) == (5_000, WILL_SEQ, False)
    assert [online1.stamp, beat1.stamp] == [(5_000, 1), (5_000, 2)]
    assert will2.stamp == (5_001, WILL_SEQ) and online2.stamp == (5_001, 1)
    # the order the aggregator applies: a session's Will after its statuses, before the next
    assert supersedes(will1, beat1.stamp) and supersedes(online2, will1.stamp)
    assert not supersedes(will1, online2.stamp)


def test_a_will_without_payload_needs_a_status_builder() -> None:
    # a Will of b"" would clear the device's retained status instead of saying it is offline
    import pytest

    from common.errors import ConfigError
    from transport.mqtt import MqttConnection
    from transport.settings import Will, mqtt_settings

    settings = mqtt_settings("mqtt://127.0.0.1:1", "dev-1", will=Will("st/dev-1"))
    with pytest.raises(ConfigError, match="payload"):
        MqttConnection(settings)
    assert MqttConnection(settings, status=_build).connected is False  # the builder makes it
