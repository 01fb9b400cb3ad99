"""The whole system through its faults (tests/support/fault_run.py), compressed into two
minutes: two devices replaying MIT-BIH in real time; the aggregator, the broker and the web
killed with SIGKILL; PostgreSQL stopped for 20 s; a hostile device spraying malformed payloads
and poisoning rounds. Every beat a device produced is in the store exactly once, every label
the clinician made was acknowledged by its device, no update counted twice, no round lost, and
no input forced an aggregator restart. ``bench/fault_run.py`` runs the 10-minute version."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.fault_run import FaultRun

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.datasets("mitdb")]


@pytest.mark.timeout(600)
def test_nothing_lost_nothing_twice_through_every_fault(data_root: Path, tmp_path: Path) -> None:
    # Prepare
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # the database is down on purpose
    faults = [(15.0, "kill_aggregator"), (30.0, "stop_postgres"), (60.0, "kill_broker"),
              (75.0, "kill_web")]  # fmt: skip
    run = FaultRun(tmp_path, data_root, ("208", "119"), 100.0, faults)
    # Execute
    report = run.run()
    # Assert
    assert report.faults == [f for _, f in faults]
    assert report.beats_produced == report.beats_stored, report.as_dict()
    assert min(report.beats_produced.values()) > 50
    assert report.labels_sent >= 10 and report.labels_sent == report.labels_acknowledged
    assert report.updates_double_counted == 0 and report.rounds_lost == 0
    assert report.aggregator_restarts_forced_by_input == 0
    # rounds go on through the faults: decided = aggregated and released, or aggregated and
    # refused by the release gate (with two devices and a few labelled beats each, a candidate
    # is refused by chance: se_F on the validation set's 7 F beats; CI saw 2 closed + 5 refused)
    decided = report.rounds_closed + report.rounds_failed.get("release gate", 0)
    assert report.hostile_messages > 100 and report.rounds_closed >= 1 and decided >= 3
    assert report.ok
