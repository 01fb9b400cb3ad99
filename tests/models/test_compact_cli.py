"""`medchain compact` through the real CLI: an older model gets short names, same outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from common.model_card import file_sha256
from medchain.cli import main
from models.export import export_onnx
from models.nets import build_net
from models.tasks.base import NetSpec

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"


def _run(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(x) for x in sess.run(None, feed)]


def test_committed_models_are_compact() -> None:
    # every shipped graph has short internal names (beat, ptb: the CNN students)
    for name in ("beat.onnx", "ptb.onnx"):
        inits = onnx.load(str(PRETRAINED / name)).graph.initializer
        assert max(len(i.name) for i in inits) <= 2, name


def test_compact_rewrites_an_older_model_and_its_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a fresh export (module-path names, as models made before compaction) with the
    # committed PTB card and head beside it
    torch.manual_seed(0)
    export_onnx(
        build_net(NetSpec("cnn", (8, 16), 5, 8), 1, 187, 0, 2),
        tmp_path / "ptb.onnx",
        ("beat", "rr"),
    )
    for name in ("ptb.card.json", "ptb.head.npz"):
        shutil.copyfile(PRETRAINED / name, tmp_path / name)
    src = tmp_path / "ptb.onnx"
    before = json.loads((tmp_path / "ptb.card.json").read_text())
    size = src.stat().st_size
    feed = {"beat": np.random.default_rng(0).normal(size=(8, 1, 187)).astype(np.float32)}
    reference = _run(src, feed)
    # Execute
    rc = main(["compact", "--model", str(src), "--out", str(tmp_path / "out" / "ptb.onnx")])
    # Verify: smaller, same outputs, card re-hashed with the command appended, head copied
    out = tmp_path / "out" / "ptb.onnx"
    assert rc == 0 and "bytes saved" in capsys.readouterr().out
    assert out.stat().st_size < size - 1000
    for a, b in zip(reference, _run(out, feed), strict=True):
        np.testing.assert_array_equal(a, b)
    card = json.loads((tmp_path / "out" / "ptb.card.json").read_text())
    assert card["artifact"]["size_bytes"] == out.stat().st_size
    assert card["artifact"]["sha256"] == file_sha256(out)
    assert file_sha256(src) in card["training"]["notes"]  # the sha256 of the file compacted
    assert card["version"] == "ptb-" + card["artifact"]["sha256"][:12]
    assert card["training"]["command"].endswith(f"&& medchain compact --model {src} --out {out}")
    assert card["metrics"] == before["metrics"]
    assert (tmp_path / "out" / "ptb.head.npz").is_file()
    assert all(len(i.name) <= 2 for i in onnx.load(str(out)).graph.initializer)


def test_compact_of_a_corrupt_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    shutil.copyfile(PRETRAINED / "ptb.card.json", tmp_path / "ptb.card.json")
    (tmp_path / "ptb.onnx").write_bytes(b"\x08\x07not a protobuf")
    # Execute
    rc = main(["compact", "--model", str(tmp_path / "ptb.onnx")])
    # Verify
    err = capsys.readouterr().err
    assert rc != 0 and "cannot read ONNX model" in err and "Traceback" not in err
    # a file onnx parses but that holds no graph: onnxruntime refuses it, still one line
    (tmp_path / "ptb.onnx").write_bytes(b"")
    assert main(["compact", "--model", str(tmp_path / "ptb.onnx")]) != 0
    err = capsys.readouterr().err
    assert "cannot read ONNX model" in err and "Traceback" not in err


def test_compacting_a_compact_model_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    for name in ("ptb.onnx", "ptb.card.json"):
        shutil.copyfile(PRETRAINED / name, tmp_path / name)
    card_before = (tmp_path / "ptb.card.json").read_bytes()
    # Execute
    rc = main(["compact", "--model", str(tmp_path / "ptb.onnx")])
    # Verify
    assert rc == 0 and "nothing to compact" in capsys.readouterr().out
    assert (tmp_path / "ptb.onnx").read_bytes() == (PRETRAINED / "ptb.onnx").read_bytes()
    assert (tmp_path / "ptb.card.json").read_bytes() == card_before
