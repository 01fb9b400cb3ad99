"""The top-level CLI: every command is registered where COMMAND_OWNERS says, help works."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys

import pytest

from medchain.cli import COMMAND_MODULES, COMMAND_OWNERS, main


def test_command_owners_match_the_registered_commands() -> None:
    # Prepare
    registered: dict[str, str] = {}
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(sub)
        registered.update(dict.fromkeys(sub.choices, name))
    # Assert
    assert registered == COMMAND_OWNERS


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in COMMAND_OWNERS)


def test_help_lists_each_command_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    listed = {
        cmd: len(re.findall(rf"^ +{re.escape(cmd)}(?: |$)", out, re.M)) for cmd in COMMAND_OWNERS
    }
    assert listed == dict.fromkeys(COMMAND_OWNERS, 1)


def test_edge_command_imports_only_its_own_package() -> None:
    code = (
        "import sys; from medchain.cli import main\n"
        "try:\n    main(['edge', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'web', 'cloud_aggregator', 'models', 'flask', 'psycopg', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_medchain_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["evaluate", "--task", "beat", "--model", "/nonexistent/model.onnx", "--split", "ds2"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("medchain: error:") and len(err.strip().splitlines()) == 1
