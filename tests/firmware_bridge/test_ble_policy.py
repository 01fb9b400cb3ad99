"""Settings negotiation and reconnect policy (pure)."""

from __future__ import annotations

import pytest

from firmware_bridge.ble_policy import DEFAULT_SETTINGS, ReconnectPolicy, choose_settings
from firmware_bridge.gatt import MeasurementType, SettingType

S = SettingType


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ({}, {S.SAMPLE_RATE: 200, S.RESOLUTION: 16, S.RANGE: 8}),  # nothing listed: ask defaults
        (
            {S.SAMPLE_RATE: (25, 50, 100, 200), S.RESOLUTION: (16,), S.RANGE: (2, 4, 8)},
            {S.SAMPLE_RATE: 200, S.RESOLUTION: 16, S.RANGE: 8},
        ),
        (
            {S.SAMPLE_RATE: (26, 52), S.RESOLUTION: (16,), S.RANGE: (8, 16)},
            {S.SAMPLE_RATE: 52, S.RESOLUTION: 16, S.RANGE: 8},
        ),
    ],
)
def test_choose_settings_for_acc(
    offered: dict[SettingType, tuple[float, ...]], expected: dict[SettingType, int]
) -> None:
    assert choose_settings(DEFAULT_SETTINGS[MeasurementType.ACC], offered) == expected


def test_default_policy_never_gives_up() -> None:
    policy = ReconnectPolicy()
    assert policy.max_failures is None and policy.initial_s < policy.max_s
