"""StopSignals: SIGTERM / SIGHUP / SIGINT become StopSignal, held back while a child is being
recorded, ignored once stopping, and left ignored when they were (nohup)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from medchain.supervisor import StopSignal, StopSignals

SIGNUMS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@pytest.fixture()
def caught() -> Iterator[list[int]]:
    """Signals that reached the handler installed before StopSignals (never the default death)."""
    got: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        got.append(signum)

    before = {s: signal.signal(s, record) for s in SIGNUMS}
    yield got
    for s, handler in before.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("signum", SIGNUMS)
def test_a_stop_signal_raises_and_the_old_handler_comes_back(
    caught: list[int], signum: int
) -> None:
    # Execute
    with pytest.raises(StopSignal) as info, StopSignals():
        os.kill(os.getpid(), signum)
    # Assert
    assert info.value.signum == signum and isinstance(info.value, KeyboardInterrupt)
    os.kill(os.getpid(), signum)
    assert caught == [signum]


def test_held_signal_is_raised_when_the_block_ends(caught: list[int]) -> None:
    # Prepare
    steps = []
    # Execute
    with pytest.raises(StopSignal), StopSignals() as signals:
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("recorded")  # still runs: the signal waits
        steps.append("after")  # never runs
    # Assert
    assert steps == ["recorded"] and caught == []


def test_signals_are_ignored_once_stopping(caught: list[int]) -> None:
    # Execute: the first one raises, the second (during the shutdown) is ignored
    with StopSignals():
        with pytest.raises(StopSignal):
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        cleanup_finished = True
    # Assert
    assert cleanup_finished and caught == []


def test_an_ignored_signal_stays_ignored(caught: list[int]) -> None:
    # Prepare: started under nohup
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Execute / Assert: no exception, still ignored afterwards
    with StopSignals():
        os.kill(os.getpid(), signal.SIGHUP)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN and caught == []
