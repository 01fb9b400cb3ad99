"""`medchain rr-gate` through the real CLI: a model trained without the gate gets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medchain.cli import main


@pytest.mark.datasets("mitdb")
def test_rr_gate_appends_the_gate_and_recards(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: a tiny beat model trained without the gate
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    smoke = ["--records", "119,208", "--test-records", "100"]
    rc = main(
        ["train", "--task", "beat", "--out", str(tmp_path / "run"), *smoke, "--no-rr-gate"]
        + ["--epochs", "1", "--steps", "3", "--json"]
    )
    assert rc == 0
    before = json.loads((tmp_path / "run" / "beat.card.json").read_text())
    assert "rr_gate" not in before["input_contract"]["parameters"]
    # medchain train appends the template veto by default, and records what came before it
    assert before["input_contract"]["parameters"]["template_veto"]["rms_below"] == 0.5
    assert {"int8", "int8_without_veto"} <= set(before["metrics"])
    capsys.readouterr()
    # Execute
    gated = tmp_path / "gated" / "beat.onnx"
    args = ["rr-gate", "--model", str(tmp_path / "run" / "beat.onnx"), "--out", str(gated)]
    rc = main([*args, *smoke])
    # Assert: gate in the card, metrics re-measured, the net's kept, the head copied
    assert rc == 0 and "S Se/+P" in capsys.readouterr().out
    card = json.loads((tmp_path / "gated" / "beat.card.json").read_text())
    gate = card["input_contract"]["parameters"]["rr_gate"]
    assert len(gate["weight"]) == 8 and "RR gate" in card["head"]["activation"]
    assert "template veto" in card["head"]["activation"]  # the veto stays on record
    assert {"int8", "int8_without_gate", "fp32_without_gate"} <= set(card["metrics"])
    assert card["artifact"]["sha256"] != before["artifact"]["sha256"]
    assert " && medchain rr-gate " in card["training"]["command"]
    assert (tmp_path / "gated" / "beat.head.npz").is_file()
    # a second gate is refused with a one-line error
    assert main(["rr-gate", "--model", str(gated), "--out", str(gated), *smoke]) != 0
