"""The advanced JSON of the training form is checked like the form's own fields (it used to
skip them, and the aggregator crash-looped on ``"deadline_s": "soon"``)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import csrf_of, login


@pytest.mark.parametrize(
    ("config_json", "message"),
    [
        ('{"deadline_s": "soon"}', "deadline_s"),
        ('{"min_clients": -3}', "min_clients"),
        ('{"min_clients": 2.5}', "whole number"),
        ('{"quorum_fraction": 0}', "quorum_fraction"),
        ('{"local_epochs": true}', "local_epochs"),
        ('{"mode": "turbo"}', "mode"),
        ('{"strategy_params": {"eta": "fast"}}', "strategy_params.eta"),
        ('{"strategy_params": [1]}', "strategy_params"),
        ('{"deadlin_s": 30}', "unknown training setting"),
    ],
)
def test_advanced_json_is_range_checked(
    client: FlaskClient, store, config_json: str, message: str
) -> None:
    # Prepare
    login(client, "root")
    body = {"action": "start", "task": "beat", "strategy": "fedavg", "rounds": "5",
            "config_json": config_json}  # fmt: skip
    # Execute
    resp = client.post(
        "/api/federation/control", data=body, headers={"X-CSRF-Token": csrf_of(client)}
    )
    # Assert
    assert resp.status_code == 400, resp.data
    assert message in resp.get_json()["error"]["message"]
    assert store.get_training_control().generation == 0
