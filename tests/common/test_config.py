"""Settings loader (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from common.config import load_settings
from common.errors import ConfigError


@dataclass(frozen=True)
class Demo:
    broker_url: str = "mqtt://127.0.0.1:1883"
    rounds: int = 3
    fraction: float = 1.0
    tls: bool = False
    store: str | None = None


def test_defaults_toml_env_overrides_in_priority(tmp_path: Path) -> None:
    # Prepare
    toml = tmp_path / "s.toml"
    toml.write_text('[aggregator]\nrounds = 5\nbroker_url = "mqtt://b:1"\n')
    env = {"MEDCHAIN_ROUNDS": "7", "MEDCHAIN_TLS": "yes"}
    # Execute
    s = load_settings(
        Demo, env=env, toml_path=toml, table="aggregator", overrides={"fraction": 0.5}
    )
    # Assert
    assert s == Demo(broker_url="mqtt://b:1", rounds=7, fraction=0.5, tls=True)


def test_bad_values_give_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MEDCHAIN_ROUNDS"):
        load_settings(Demo, env={"MEDCHAIN_ROUNDS": "many"})
    bad = tmp_path / "bad.toml"
    bad.write_text("nope = 1\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings(Demo, toml_path=bad)
