"""MQTT transport shared by every MedChain process (device, aggregator, web feed, fleet, tools).

- :mod:`transport.settings` (pure): :func:`~transport.settings.mqtt_settings` turns a broker URL
  (``mqtt[s]://user:pw@host:port?ca=...&cert=...&key=...&protocol=auto|5|3.1.1``) and the
  process's choices (client id, session, Last Will...) into one frozen ``MqttSettings``.
- :mod:`transport.mqtt`: :class:`~transport.mqtt.MqttConnection`, the only paho-mqtt client
  (:mod:`transport.paho_client` builds it: protocol, session, TLS, credentials, Will, backoff).
- :mod:`transport.inbox` (pure): the bounded queues paho's callbacks hand messages to.
- :mod:`transport.acks` (pure): per-message publish acknowledgements.

Imports nothing of ours but ``common``; ``edge_agent``, ``cloud_aggregator``, ``web`` and
``firmware_bridge`` use it. paho is imported only by :mod:`transport.mqtt` and
:mod:`transport.paho_client`, so importing this package stays light.
"""
