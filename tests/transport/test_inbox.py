"""The bounded inboxes paho's callbacks hand messages to."""

from __future__ import annotations

import asyncio
import threading

from transport.inbox import LoopInbox, Message, QueueInbox, hand_to_loop


def _msg(i: int) -> Message:
    return Message(f"t/{i}", bytes([i]), i, 1, False)


def test_queue_inbox_drops_and_counts_when_full() -> None:
    # Prepare
    inbox: QueueInbox[Message] = QueueInbox(2)
    # Execute
    for i in range(5):
        inbox.put(_msg(i))
    # Assert: the first two kept, three dropped; waits are bounded
    assert inbox.dropped == 3
    assert inbox.get(0.1) == _msg(0)
    assert inbox.drain() == [_msg(1)]
    assert inbox.get(0.05) is None and inbox.empty()


def test_loop_inbox_receives_from_another_thread_and_drops_when_full() -> None:
    async def run() -> tuple[list[Message], int]:
        inbox: LoopInbox[Message] = LoopInbox(asyncio.get_running_loop(), 3)
        t = threading.Thread(target=lambda: [inbox.put(_msg(i)) for i in range(5)])
        t.start()
        t.join()
        await asyncio.sleep(0.05)  # the scheduled puts run
        got = [await asyncio.wait_for(inbox.get(), 1) for _ in range(3)]
        return got, inbox.dropped

    # Execute
    got, dropped = asyncio.run(run())
    # Assert
    assert got == [_msg(0), _msg(1), _msg(2)] and dropped == 2


def test_hand_to_a_closed_loop_is_refused_not_raised() -> None:
    # Prepare
    loop = asyncio.new_event_loop()
    loop.close()
    # Execute / Assert
    assert hand_to_loop(loop, print, "late") is False
