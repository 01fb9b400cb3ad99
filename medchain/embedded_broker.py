"""A pure-Python MQTT broker (amqtt, MQTT 3.1.1 only) for machines without Mosquitto.

Run as ``python -m medchain.embedded_broker --port 1883``. It binds to 127.0.0.1 only and allows
anonymous clients: it is the zero-setup default of ``medchain demo``, not a production broker
(production uses Mosquitto with TLS, passwords and the ACL from ``medchain broker config``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

_LOGGER = logging.getLogger(__name__)


def broker_config(port: int) -> dict[str, object]:
    """amqtt configuration: one loopback TCP listener, anonymous access."""
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 500}
        },
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def serve(port: int) -> None:
    """Run the broker until SIGINT/SIGTERM."""
    from amqtt.broker import Broker

    broker = Broker(broker_config(port))
    await broker.start()
    _LOGGER.info("embedded MQTT 3.1.1 broker listening on 127.0.0.1:%d", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    """Entry point of ``python -m medchain.embedded_broker``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
