"""Per-message publish acknowledgements matched to their callbacks (pure, no broker)."""

from __future__ import annotations

import threading

from transport.acks import AckRegistry


def test_ack_after_registration_fires_the_callback_once() -> None:
    # Prepare
    reg: AckRegistry[bool] = AckRegistry()
    got: list[bool] = []
    reg.begin()
    reg.register(7, got.append)
    # Execute
    reg.resolve(7, True)
    reg.resolve(7, True)  # a duplicate PUBACK
    # Assert
    assert got == [True] and reg.waiting == 0


def test_ack_before_registration_is_kept_for_it() -> None:
    # Prepare: the broker answered before publish() returned the id
    reg: AckRegistry[bool] = AckRegistry()
    got: list[bool] = []
    reg.begin()
    reg.resolve(3, False)
    # Execute
    reg.register(3, got.append)
    # Assert
    assert got == [False] and reg.waiting == 0


def test_acks_of_plain_publishes_never_reach_a_later_callback() -> None:
    # Prepare: ids of publishes nobody waits for, acknowledged while a registration was
    # pending (kept aside), then the ids wrap round to a new message with a callback
    reg: AckRegistry[bool] = AckRegistry()
    got: list[bool] = []
    reg.begin()
    reg.resolve(5, True)  # a status publish, id 5
    reg.register(6, got.append)
    reg.resolve(9, True)  # no registration pending: dropped at once
    # Execute: a new message gets id 5 (and later 9)
    reg.begin()
    reg.register(5, got.append)
    reg.begin()
    reg.register(9, got.append)
    # Assert: nothing fired before the broker acknowledged the new messages
    assert got == [] and reg.waiting == 3
    reg.resolve(5, True)
    assert got == [True]


def test_a_failed_publish_registers_nothing() -> None:
    reg: AckRegistry[bool] = AckRegistry()
    got: list[bool] = []
    reg.begin()
    reg.register(None, got.append)
    assert got == [] and reg.waiting == 0


def test_concurrent_publishers_each_get_their_own_ack() -> None:
    # Prepare: 4 threads x 500 publishes, acknowledgements racing the registrations
    reg: AckRegistry[bool] = AckRegistry()
    got: dict[int, list[bool]] = {}
    lock = threading.Lock()
    ids = iter(range(1, 10**6))

    def publisher() -> None:
        for _ in range(500):
            reg.begin()
            with lock:
                mid = next(ids)
            if mid % 2:
                reg.resolve(mid, True)  # early
            reg.register(mid, lambda ok, m=mid: got.setdefault(m, []).append(ok))
            if not mid % 2:
                reg.resolve(mid, True)  # late

    # Execute
    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Assert
    assert len(got) == 2000 and all(v == [True] for v in got.values()) and reg.waiting == 0
