"""The NATS grid's pure rules: its URL, which filters become durable consumers, subjects."""

from __future__ import annotations

import pytest

from cloud_aggregator.nats_intake import (
    ACK_WAIT_S,
    Intake,
    grid_class,
    parse_nats_url,
    plan_intake,
    subject_filter,
    topic_of,
)
from cloud_aggregator.service import subscriptions
from common import protocol as proto
from common.errors import ConfigError


def test_url_names_every_node_the_mqtt_listener_and_the_ack_wait() -> None:
    # Execute
    a = parse_nats_url(
        "nats://agg:s%40cret@n1:4222,n2:4223 ,n3:4224?mqtt=mqtt://lb:1883&ack_wait=4"
    )
    # Assert
    assert a.servers == ("nats://n1:4222", "nats://n2:4223", "nats://n3:4224")
    assert (a.mqtt_url, a.user, a.password, a.ack_wait_s) == (
        "mqtt://lb:1883",
        "agg",
        "s@cret",
        4.0,
    )
    assert "cret" not in repr(a)


def test_url_defaults_and_tls_nodes() -> None:
    a = parse_nats_url("tls://n1:4222?mqtt=mqtts://lb:8883?protocol=3.1.1")
    assert a.servers == ("tls://n1:4222",) and a.ack_wait_s == ACK_WAIT_S
    assert a.mqtt_url == "mqtts://lb:8883?protocol=3.1.1" and a.user is None


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://n1:1883",  # another scheme
        "nats://n1:4222",  # no MQTT listener for the devices
        "nats://n1?mqtt=mqtt://lb:1883",  # no port
        "nats://n1:99999?mqtt=mqtt://lb:1883",
        "nats://n1:4222,:4223?mqtt=mqtt://lb:1883",
        "nats://n1:4222?mqtt=mqtt://lb:1883&ack_wait=soon",
        "nats://n1:4222?mqtt=mqtt://lb:1883&ack_wait=0.1",
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_nats_url(url)


def test_shared_filters_become_shared_durable_consumers_and_statuses_stay_mqtt() -> None:
    # Execute: the aggregator's own subscription list
    intakes, mqtt = plan_intake(subscriptions("agg"))
    # Assert
    assert intakes == [
        Intake("agg-update", "$MQTT.msgs.medchain.v1.update.*", 256),
        Intake("agg-update-chunk", "$MQTT.msgs.medchain.v1.update.*.chunk", 1),
        Intake("agg-pred", "$MQTT.msgs.medchain.v1.pred.*", 256),
        Intake("agg-labelack", "$MQTT.msgs.medchain.v1.labelack.*", 256),
    ]
    assert mqtt == [proto.subscription(proto.Channel.STATUS)]


def test_without_a_group_nothing_is_shared() -> None:
    intakes, mqtt = plan_intake(subscriptions(""))
    assert [i.durable for i in intakes] == ["agg-update-chunk"]
    assert proto.client_subscription(proto.Channel.UPDATE) in mqtt


def test_subjects_and_topics() -> None:
    assert subject_filter("medchain/v1/status/#") == "$MQTT.msgs.medchain.v1.status.>"
    assert topic_of("$MQTT.msgs.medchain.v1.update.dev-1.chunk") == "medchain/v1/update/dev-1/chunk"
    assert topic_of("$MQTT.msgs.medchain.v1.pred.dev//7") == "medchain/v1/pred/dev.7"  # 2.10
    with pytest.raises(proto.ProtocolError):
        topic_of("medchain.v1.update.dev-1")


def test_grid_class_by_scheme() -> None:
    from cloud_aggregator.grid_nats import NatsGrid
    from cloud_aggregator.mqtt_io import PahoBroker

    assert grid_class("nats://n1:4222?mqtt=mqtt://lb:1883") is NatsGrid
    assert grid_class("tls://n1:4222?mqtt=mqtt://lb:1883") is NatsGrid
    assert grid_class("mqtt://127.0.0.1:1883") is PahoBroker
