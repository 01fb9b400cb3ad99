"""``medchain web add-user`` / ``patient-token`` against a real SQLite store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from medchain.cli import main
from store.factory import open_store
from web.security import hash_patient_token, verify_password


def test_add_user_from_stdin_and_patient_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # Prepare
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    # Execute
    rc_user = main(
        ["web", "add-user", "carol", "--role", "admin", "--password-stdin", "--store", url]
    )
    rc_tok = main(
        ["web", "--store", url, "patient-token", "p9", "--days", "30", "--label", "clinic"]
    )
    token = capsys.readouterr().out.strip().splitlines()[-1]
    # Assert
    assert rc_user == 0 and rc_tok == 0
    store = open_store(url)
    try:
        user = store.get_user("carol")
        assert (
            user is not None
            and user.role == "admin"
            and verify_password(user.password_hash, "a long password")
        )
        tok = store.get_patient_token(hash_patient_token(token))
        assert (
            tok is not None
            and tok.client_id == "p9"
            and tok.expires_at is not None
            and tok.label == "clinic"
        )
        assert store.get_client("p9") is not None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["web", "add-user", "dave", "--password-stdin"], "short\n", "at least"),
        (["web", "patient-token", "bad id!"], "", "invalid client id"),
        (["web", "patient-token", "p1", "--days", "-1"], "", "--days"),
    ],
)
def test_cli_user_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                argv: list[str], stdin: str, message: str) -> None:  # fmt: skip
    # Prepare
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    # Execute
    rc = main([*argv, "--store", f"sqlite:///{tmp_path / 'cli.db'}"])
    # Assert
    assert rc == 2 and message in capsys.readouterr().err


def test_duplicate_user_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # Prepare
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\na long password\n"))
    main(["web", "add-user", "erin", "--password-stdin", "--store", url])
    # Execute
    rc = main(["web", "add-user", "erin", "--password-stdin", "--store", url])
    # Assert
    assert rc == 2 and "erin" in capsys.readouterr().err


def test_update_sets_a_new_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("first password\nsecond password\n"))
    main(["web", "add-user", "erin", "--password-stdin", "--store", url])
    # Execute
    rc = main(["web", "add-user", "erin", "--password-stdin", "--update", "--store", url])
    # Assert
    store = open_store(url)
    try:
        user = store.get_user("erin")
        assert (
            rc == 0 and user is not None and verify_password(user.password_hash, "second password")
        )
    finally:
        store.close()


def test_web_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    with pytest.raises(SystemExit):
        main(["web", "--help"])
    # Assert
    out = capsys.readouterr().out
    assert "--store" in out and "--broker" in out and "add-user" in out and "patient-token" in out


def test_patient_token_with_url_prints_the_link_and_its_qr_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    rc = main(["web", "--store", f"sqlite:///{tmp_path / 'cli.db'}", "patient-token", "p9",
               "--url", "http://127.0.0.1:8080/"])  # fmt: skip
    # Assert
    lines = capsys.readouterr().out.splitlines()
    code, link = lines[0], lines[-1]
    assert rc == 0 and link == f"http://127.0.0.1:8080/patient/login#code={code}"
    assert sum("█" in line or "▀" in line for line in lines[1:-1]) > 10  # the QR code
