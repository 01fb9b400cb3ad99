"""amqtt (MQTT 3.1.1) with a topic plugin that refuses the first two subscriptions to
``cmd/dev``: ``python -m tests.transport.flaky_broker PORT`` (loopback, anonymous). Prints one
line per subscription attempt to that filter (``refused`` / ``accepted``)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseTopicPlugin

REFUSED = "cmd/dev"
REFUSALS = 2


class RefuseTwice(BaseTopicPlugin):
    """Refuses the first :data:`REFUSALS` subscriptions to :data:`REFUSED`."""

    attempts = 0

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:  # fmt: skip
        if action != Action.SUBSCRIBE or topic != REFUSED:
            return True
        RefuseTwice.attempts += 1
        ok = RefuseTwice.attempts > REFUSALS
        print("accepted" if ok else "refused", flush=True)
        return ok


async def serve(port: int) -> None:
    """Run until SIGTERM."""
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                    f"{__name__}.RefuseTwice": {}},
    })  # fmt: skip
    await broker.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
