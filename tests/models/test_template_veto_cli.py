"""`medchain template-veto` through the real CLI: a model trained without the veto gets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medchain.cli import main


@pytest.mark.datasets("mitdb")
def test_template_veto_appends_the_veto_and_recards(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: a tiny beat model trained with the RR gate but without the veto
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    smoke = ["--test-records", "100"]
    rc = main(
        ["train", "--task", "beat", "--out", str(tmp_path / "run"), "--records", "119,208"]
        + [*smoke, "--no-template-veto", "--epochs", "1", "--steps", "3", "--json"]
    )
    assert rc == 0
    before = json.loads((tmp_path / "run" / "beat.card.json").read_text())
    assert "template_veto" not in before["input_contract"]["parameters"]
    capsys.readouterr()
    # Execute
    vetoed = tmp_path / "vetoed" / "beat.onnx"
    args = ["template-veto", "--model", str(tmp_path / "run" / "beat.onnx"), "--out", str(vetoed)]
    rc = main([*args, "--rms-below", "0.4", *smoke])
    # Verify: veto in the card after the gate, metrics re-measured, the old ones kept
    assert rc == 0 and "V Se/+P" in capsys.readouterr().out
    card = json.loads((tmp_path / "vetoed" / "beat.card.json").read_text())
    veto = card["input_contract"]["parameters"]["template_veto"]
    assert (veto["rms_below"], veto["v_index"], veto["q_index"], veto["channel"]) == (0.4, 2, 4, 1)
    assert card["head"]["activation"].index("RR gate") < card["head"]["activation"].index("veto")
    assert {"int8", "int8_without_veto", "int8_without_gate_without_veto"} <= set(card["metrics"])
    assert card["artifact"]["sha256"] != before["artifact"]["sha256"]
    assert " && medchain template-veto " in card["training"]["command"]
    assert (tmp_path / "vetoed" / "beat.head.npz").is_file()
    # a second veto, and an impossible threshold, are refused with a one-line error
    capsys.readouterr()
    assert main(["template-veto", "--model", str(vetoed), "--out", str(vetoed), *smoke]) != 0
    bad = ["--rms-below", "-1", "--out", str(tmp_path / "x.onnx")]
    assert main(["template-veto", "--model", str(tmp_path / "run" / "beat.onnx"), *bad]) != 0
    err = capsys.readouterr().err
    assert "already has a template veto" in err and "rms_below must be in" in err
    assert "Traceback" not in err and not (tmp_path / "x.onnx").exists()
