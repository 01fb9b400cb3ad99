"""MQTT transport shared by every MedChain process (device, aggregator, web feed, fleet, tools).

- :mod:`transport.settings` (pure): :func:`~transport.settings.mqtt_settings` turns a broker URL
  (``mqtt[s]://user:pw@host:port?ca=...&cert=...&key=...&protocol=auto|5|3.1.1``) and the
  process's choices (client id, session, Last Will...) into one frozen ``MqttSettings``.
- :mod:`transport.mqtt`: :class:`~transport.mqtt.MqttConnection`, the only paho-mqtt client
  (:mod:`transport.paho_client` builds it: protocol, session, TLS, credentials, Will, backoff).
- :mod:`transport.subscriptions`: filters re-subscribed on every connect, refused ones again.
- :mod:`transport.inbox` (pure): the bounded queues paho's callbacks hand messages to.
- :mod:`transport.acks` (pure): broker acknowledgements (PUBACK, SUBACK) by message id.

Imports nothing of ours but ``common``; ``edge_agent``, ``cloud_aggregator``, ``web`` and
``firmware_bridge`` use it. Only its adapter modules import paho, and this ``__init__``
imports none of them, so importing the package stays light.
"""
