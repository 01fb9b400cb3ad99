"""``medchain db upgrade|status`` end to end through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from medchain.cli import main
from store import open_store
from store.migrate import latest_version
from tests.store.conftest import Backend


def test_status_then_upgrade_then_status(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    pending = main(["db", "status", "--store", backend.url])
    out_pending = capsys.readouterr().out
    first = main(["db", "upgrade", "--store", backend.url, "--to", "1"])
    out_first = capsys.readouterr().out
    rest = main(["db", "upgrade", "--store", backend.url])
    out_rest = capsys.readouterr().out
    current = main(["db", "status", "--store", backend.url])
    out_current = capsys.readouterr().out

    # Assert
    assert (pending, first, rest, current) == (1, 0, 0, 0)
    assert "0001_federation: pending" in out_pending
    assert "schema 0 -> 1" in out_first
    assert f"schema 1 -> {latest_version()}" in out_rest
    assert "0001_federation: applied" in out_current and "pending" not in out_current
    store = open_store(backend.url, schema="check")
    assert store.schema_version() == latest_version()
    store.close()


@pytest.mark.parametrize("to", ["-3", "0", "999"])
def test_upgrade_to_a_version_that_does_not_exist_is_one_error(
    backend: Backend, capsys: pytest.CaptureFixture[str], to: str
) -> None:
    # `--to -3` printed "schema 0 is up to date" and exited 0 with every migration pending
    assert main(["db", "upgrade", "--store", backend.url, "--to", to]) == 2
    assert f"--to {to}: schema versions are 1-{latest_version()}" in capsys.readouterr().err
    assert main(["db", "upgrade", "--store", backend.url]) == 0
    capsys.readouterr()
    assert main(["db", "upgrade", "--store", backend.url, "--to", "1"]) == 0
    assert "is past --to 1 (no downgrades)" in capsys.readouterr().out


def test_store_url_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MEDCHAIN_STORE_URL", url)

    # Execute
    code = main(["db", "upgrade"])

    # Assert
    assert code == 0 and url in capsys.readouterr().out
    assert (tmp_path / "env.db").exists()


def test_bad_url_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["db", "status", "--store", "mysql://u:secret@db/x"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("medchain: error: unsupported store URL")
    assert "secret" not in err


def test_newer_schema_fails_status_and_upgrade(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    store = backend.open()
    from store.sql_base import SqlStoreBase

    assert isinstance(store, SqlStoreBase)
    with store._tx(write=True) as tx:
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'x', 0)",
            (latest_version() + 1,),
        )

    # Execute / Assert
    assert main(["db", "status", "--store", backend.url]) == 1
    assert "NEWER" in capsys.readouterr().out
    assert main(["db", "upgrade", "--store", backend.url]) == 2
    assert "upgrade MedChain" in capsys.readouterr().err
