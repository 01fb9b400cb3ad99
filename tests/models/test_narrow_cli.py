"""`medchain narrow-weights` and the committed models' 7-bit weights (real data, real CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import pytest
from onnx import numpy_helper

from medchain.cli import main
from models.weight_range import WEIGHT_QMAX, int8_weight_peak

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"


def _widen(path: Path) -> None:
    """Test helper: the inverse of narrowing, 8-bit weights as models had before it."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm")):
        if node.input[1] not in dq:
            continue
        w_dq = dq[node.input[1]]
        w = numpy_helper.to_array(inits[w_dq.input[0]])
        s = numpy_helper.to_array(inits[w_dq.input[1]])
        inits[w_dq.input[0]].CopyFrom(
            numpy_helper.from_array(
                np.clip(np.round(w.astype(np.float64) * 127 / 64), -127, 127).astype(np.int8),
                w_dq.input[0],
            )
        )
        inits[w_dq.input[1]].CopyFrom(
            numpy_helper.from_array(s * np.float32(64 / 127), w_dq.input[1])
        )
        if len(node.input) > 2 and node.input[2] in dq:
            b_dq = dq[node.input[2]]
            b = numpy_helper.to_array(inits[b_dq.input[0]])
            bs = numpy_helper.to_array(inits[b_dq.input[1]])
            wide = np.round(b.astype(np.float64) * 127 / 64).astype(np.int32)
            inits[b_dq.input[0]].CopyFrom(numpy_helper.from_array(wide, b_dq.input[0]))
            inits[b_dq.input[1]].CopyFrom(
                numpy_helper.from_array(bs * np.float32(64 / 127), b_dq.input[1])
            )
    onnx.save(model, str(path))


@pytest.fixture()
def eight_bit_ptb(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The committed PTB model, card and head in ``tmp_path`` with 8-bit weights (as shipped
    before session 6); MEDCHAIN_DATA and a private cache set."""
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    for name in ("ptb.onnx", "ptb.card.json", "ptb.head.npz"):
        shutil.copyfile(PRETRAINED / name, tmp_path / name)
    model = tmp_path / "ptb.onnx"
    _widen(model)
    return model


@pytest.mark.datasets("kaggle_heartbeat_samples")
def test_narrow_weights_cli_rewrites_an_8bit_model_and_its_card(
    eight_bit_ptb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the committed PTB model with 8-bit weights, as it was shipped before
    model = eight_bit_ptb
    assert int8_weight_peak(onnx.load(str(model))) == 127
    # Execute
    rc = main(["narrow-weights", "--task", "ptb", "--model", str(model)])
    # Verify: 7-bit weights, card re-measured with the old int8 metrics kept
    assert rc == 0 and "weight tensors narrowed" in capsys.readouterr().out
    assert int8_weight_peak(onnx.load(str(model))) == WEIGHT_QMAX
    card = json.loads((tmp_path / "ptb.card.json").read_text())
    assert {"int8", "int8_8bit_weights", "fp32"} <= set(card["metrics"])
    assert "[-64, 64]" in card["artifact"]["quantization"]
    assert card["training"]["command"].endswith(
        f"medchain narrow-weights --task ptb --model {model}"
    )
    assert card["artifact"]["size_bytes"] == model.stat().st_size
    # a second run changes nothing; a card of other classes is a one-line error
    assert main(["narrow-weights", "--task", "ptb", "--model", str(model)]) == 0
    assert "already in [-64, 64]" in capsys.readouterr().out
    assert main(["narrow-weights", "--task", "beat", "--model", str(model)]) != 0
    err = capsys.readouterr().err
    assert "has classes" in err and "Traceback" not in err


@pytest.mark.datasets("kaggle_heartbeat_samples")
def test_narrow_weights_cli_writes_nothing_when_a_check_fails(
    eight_bit_ptb: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: an 8-bit PTB model whose agreement check fails; then a float model
    model = eight_bit_ptb
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    monkeypatch.setattr("models.narrow_cli._agreement", lambda path, test: (0.5, 7))
    # Execute
    rc = main(["narrow-weights", "--task", "ptb", "--model", str(model)])
    # Verify: a one-line error; the model, its card and the folder exactly as before
    err = capsys.readouterr().err
    assert rc != 0 and "still differ from the reference by 0.5" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    # a model without int8 weights (float, or QOperator) is refused the same way
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["probs"])],
        "f",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2])],
        [onnx.helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", 2])],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "float.onnx"))
    shutil.copyfile(tmp_path / "ptb.card.json", tmp_path / "float.card.json")
    rc = main(["narrow-weights", "--task", "ptb", "--model", str(tmp_path / "float.onnx")])
    err = capsys.readouterr().err
    assert rc != 0 and "no int8 QDQ weights found" in err and "Traceback" not in err
