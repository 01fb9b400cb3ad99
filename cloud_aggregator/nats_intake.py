"""What the aggregator takes from a NATS cluster, and how: pure rules of the NATS grid.

Devices speak MQTT 3.1.1 to the cluster's MQTT listeners, unchanged. NATS stores every QoS 1
PUBLISH in its ``$MQTT_msgs`` JetStream stream (subject ``$MQTT.msgs.<topic with / as .>``,
replicated, interest retention) *before* it sends the PUBACK; the aggregator's replicas read
that stream through durable pull consumers with explicit acknowledgement, so whatever a device
was told is received is kept until a replica acknowledges it after the store has it.

The aggregator's subscription list (:func:`cloud_aggregator.service.subscriptions`) maps to:

- a shared filter (``$share/<group>/medchain/v1/<channel>/+``: whole updates, predictions,
  label receipts) -> one durable consumer ``<group>-<channel>`` shared by every replica, so
  each message goes to one replica and, unacknowledged (a crash), to another after the
  acknowledgement wait;
- the chunks of split updates (``medchain/v1/update/+/chunk``) -> one shared durable consumer
  ``<group>-<channel>-chunk`` with at most one message in flight: a chunk is handed out only
  after the previous one is stored and acknowledged, so the replica storing the last chunk of
  an update always sees the others (the store counts the chunks it holds after each insert);
- anything else (statuses: every replica keeps its own view of who is online) -> an MQTT
  subscription, which also replays the retained statuses.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from common import protocol as proto
from common.errors import ConfigError

if TYPE_CHECKING:
    from cloud_aggregator.grid_nats import NatsGrid
    from cloud_aggregator.mqtt_io import PahoBroker

MQTT_STREAM = "$MQTT_msgs"
MQTT_SUBJECT_PREFIX = "$MQTT.msgs."
DEFAULT_GROUP = "agg"
IN_FLIGHT = 256  # messages one consumer may have unacknowledged across the replicas
ACK_WAIT_S = 10.0  # a dead replica's messages go to another after this long


@dataclass(frozen=True)
class Intake:
    """One durable consumer on :data:`MQTT_STREAM`.

    Attributes
    ----------
    durable : str
        Consumer name, shared by every replica of the group.
    filter_subject : str
        The JetStream subject filter (the MQTT filter with ``/`` as ``.`` and ``+`` as ``*``).
    max_ack_pending : int
        Messages handed out and not yet acknowledged, over all replicas.
    """

    durable: str
    filter_subject: str
    max_ack_pending: int


@dataclass(frozen=True)
class NatsGridAddress:
    """Where the NATS grid connects: JetStream nodes and the MQTT URL for publishing."""

    servers: tuple[str, ...]
    mqtt_url: str
    user: str | None = None
    password: str | None = None
    ack_wait_s: float = ACK_WAIT_S

    def __repr__(self) -> str:
        return f"NatsGridAddress(servers={self.servers!r}, mqtt_url=..., user={self.user!r})"


def parse_nats_url(url: str) -> NatsGridAddress:
    """Parse ``nats://[user:pw@]host:port[,host:port...]?mqtt=mqtt://host:port[&ack_wait=S]``.

    ``tls://`` instead of ``nats://`` asks for TLS to the nodes. The MQTT URL (devices' side:
    retained announcements and models, statuses) may carry its own credentials. ``ack_wait``
    (s, default :data:`ACK_WAIT_S`) is the acknowledgement wait of the consumers a replica
    creates: how long a dead replica's messages wait before another replica gets them.

    Raises
    ------
    ConfigError
        On another scheme, no host, a bad port or a missing ``mqtt`` option.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("nats", "tls"):
        raise ConfigError(f"NATS grid URL must look like nats://host:4222?mqtt=..., got {url!r}")
    hosts, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    mqtt_url = options.get("mqtt", "")
    if not mqtt_url:
        raise ConfigError("NATS grid URL needs ?mqtt=mqtt://host:port (the devices' listener)")
    try:
        ack_wait_s = float(options.get("ack_wait", ACK_WAIT_S))
    except ValueError as exc:
        raise ConfigError(f"ack_wait must be seconds: {exc}") from exc
    if not 0.5 <= ack_wait_s <= 3600:
        raise ConfigError(f"ack_wait must be 0.5-3600 s, got {ack_wait_s}")
    user = password = None
    if "@" in hosts:
        cred, hosts = hosts.rsplit("@", 1)
        user, _, pw = cred.partition(":")
        user, password = unquote(user), (unquote(pw) if pw else None)
    servers = []
    for hp in hosts.split(","):
        host, _, port = hp.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"NATS node must be host:port, got {hp!r}")
        servers.append(f"{scheme}://{host}:{int(port)}")
    return NatsGridAddress(tuple(servers), mqtt_url, user, password, ack_wait_s)


def grid_class(url: str) -> type[PahoBroker] | type[NatsGrid]:
    """The grid a broker URL asks for: :class:`~cloud_aggregator.grid_nats.NatsGrid` for
    ``nats://`` and ``tls://`` (nats-py imported only then), else the MQTT
    :class:`~cloud_aggregator.mqtt_io.PahoBroker`. Both take the same arguments."""
    if url.partition("://")[0] in ("nats", "tls"):
        from cloud_aggregator.grid_nats import NatsGrid

        return NatsGrid
    from cloud_aggregator.mqtt_io import PahoBroker

    return PahoBroker


def plan_intake(subscriptions: list[str]) -> tuple[list[Intake], list[str]]:
    """Split the aggregator's MQTT filters into durable consumers and MQTT filters (see the
    module docstring); the chunk consumer takes the group of the shared filters."""
    shared = [f for f in subscriptions if f.startswith("$share/")]
    group = shared[0].split("/", 2)[1] if shared else DEFAULT_GROUP
    intakes, mqtt = [], []
    for flt in subscriptions:
        if flt.startswith("$share/"):
            g, plain = flt.split("/", 2)[1:]
            intakes.append(Intake(f"{g}-{_channel(plain)}", subject_filter(plain), IN_FLIGHT))
        elif flt.endswith(f"/+/{proto.CHUNK_LEVEL}"):
            name = f"{group}-{_channel(flt)}-{proto.CHUNK_LEVEL}"
            intakes.append(Intake(name, subject_filter(flt), 1))
        else:
            mqtt.append(flt)
    return intakes, mqtt


def subject_filter(topic_filter: str) -> str:
    """The ``$MQTT_msgs`` subject filter of an MQTT filter (``+`` -> ``*``, ``#`` -> ``>``)."""
    levels = ["*" if lv == "+" else ">" if lv == "#" else lv for lv in topic_filter.split("/")]
    return MQTT_SUBJECT_PREFIX + ".".join(levels)


def topic_of(subject: str) -> str:
    """The MQTT topic a ``$MQTT_msgs`` subject was published on: ``.`` separates levels and a
    ``.`` inside a level is ``//`` (NATS 2.10; 2.9 refuses such topics); raises ProtocolError
    for another subject."""
    if not subject.startswith(MQTT_SUBJECT_PREFIX):
        raise proto.ProtocolError(f"not an MQTT message subject: {subject[:200]!r}")
    tokens = subject[len(MQTT_SUBJECT_PREFIX) :].split(".")
    return "/".join(t.replace("//", ".") for t in tokens)


def _channel(topic_filter: str) -> str:
    parts = topic_filter.split("/")
    if len(parts) < 3 or "/".join(parts[:2]) != proto.PREFIX:
        raise ConfigError(f"not a medchain/v1 filter: {topic_filter!r}")
    return parts[2]
