"""Web settings: defaults, [web] TOML table, MEDCHAIN_WEB_* environment, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from web.settings import WebSettings, load_web_settings


def test_layers_in_priority_order(tmp_path: Path) -> None:
    # Prepare
    toml = tmp_path / "medchain.toml"
    toml.write_text('[web]\nport = 9000\nring_seconds = 20.0\nstrategies = ["fedavg"]\n')
    env = {"MEDCHAIN_WEB_PORT": "9100", "MEDCHAIN_WEB_SESSION_COOKIE_SECURE": "true"}
    # Execute
    s = load_web_settings(env, toml, {"host": "0.0.0.0", "broker_url": None})  # noqa: S104
    # Assert
    assert (s.port, s.ring_seconds, s.strategies, s.session_cookie_secure) == (
        9100,
        20.0,
        ("fedavg",),
        True,
    )
    assert s.host == "0.0.0.0" and s.broker_url == WebSettings().broker_url  # noqa: S104


@pytest.mark.parametrize(
    ("env", "toml"), [({"MEDCHAIN_WEB_PORT": "eighty"}, ""), ({}, "[web]\nbogus = 1\n")]
)
def test_bad_settings_are_config_errors(tmp_path: Path, env: dict[str, str], toml: str) -> None:
    # Prepare
    path = tmp_path / "m.toml"
    path.write_text(toml)
    # Execute / Assert
    with pytest.raises(ConfigError):
        load_web_settings(env, path)


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        WebSettings().port = 1  # type: ignore[misc]
