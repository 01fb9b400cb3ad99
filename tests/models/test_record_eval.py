"""`medchain evaluate --task beat --records DIR`: any WFDB folder through the serving path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medchain.cli import main

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"
MINUTES = 7.0


def _write(folder: Path, name: str, signals: np.ndarray, fs: float, leads: list[str]) -> None:
    import wfdb

    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(leads),
        sig_name=leads,
        p_signal=signals,
        fmt=["16"] * len(leads),
        adc_gain=[1000.0] * len(leads),
        baseline=[0] * len(leads),
        write_dir=str(folder),
    )


def _write_ann(folder: Path, name: str, samples: np.ndarray, symbols: list[str], fs: float) -> None:
    import wfdb

    wfdb.wrann(name, "atr", samples.astype(np.int64), symbol=symbols, fs=fs, write_dir=str(folder))


def _excerpt(mitdb: Path, name: str, minutes: float) -> tuple[np.ndarray, float, list[str], Any]:
    import wfdb

    rec = wfdb.rdrecord(str(mitdb / name), sampto=round(minutes * 60 * 360))
    ann = wfdb.rdann(str(mitdb / name), "atr", sampto=round(minutes * 60 * 360))
    return rec.p_signal, float(rec.fs), list(rec.sig_name), ann


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 7-minute MIT-BIH excerpts (one at 250 Hz) and records with bad input."""
    from common.signals.resample import map_indices, resample_signal
    from tests.support.datasets import require_data

    mitdb = require_data("mitdb") / "mitdb"
    out = tmp_path_factory.mktemp("records")
    sig, fs, leads, ann = _excerpt(mitdb, "208", MINUTES)
    _write(out, "208", sig, fs, leads)
    _write_ann(out, "208", ann.sample, ann.symbol, fs)
    sig, fs, leads, ann = _excerpt(mitdb, "100", MINUTES)
    res = np.stack([resample_signal(sig[:, i], fs, 250.0) for i in range(2)], axis=1)
    _write(out, "100r", res, 250.0, leads)
    _write_ann(out, "100r", map_indices(ann.sample, fs, 250.0), ann.symbol, 250.0)
    flat = np.zeros_like(sig)  # a disconnected lead
    _write(out, "flat", flat, fs, leads)
    _write_ann(out, "flat", ann.sample, ann.symbol, fs)
    sig208, _, _, ann208 = _excerpt(mitdb, "208", MINUTES)
    _write(out, "swap", sig, fs, leads)  # 100's signal with 208's annotations
    _write_ann(out, "swap", ann208.sample, ann208.symbol, fs)
    _write(out, "long", sig[: 60 * 360], fs, leads)  # annotations beyond the signal's end
    _write_ann(out, "long", ann.sample, ann.symbol, fs)
    low = np.stack([resample_signal(sig[:, i], fs, 60.0) for i in range(2)], axis=1)
    _write(out, "low", low, 60.0, leads)  # a rate the ECG filters cannot take (ended the run)
    _write_ann(out, "low", map_indices(ann.sample, fs, 60.0), ann.symbol, 60.0)
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["evaluate", "--task", "beat", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.datasets("mitdb")
def test_scores_any_rate_and_says_why_a_record_is_not_scored(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = _run(capsys, "--records", str(folder), "--json", "--bootstrap", "200")
    result = json.loads(out)
    assert rc == 0
    assert result["schema"] == "medchain.evaluate.beat.records/1"
    assert set(result["per_record"]) == {"208", "100r"}
    assert result["per_record"]["100r"]["fs"] == 250.0
    assert result["per_record"]["208"]["lead"] == "MLII"
    assert result["detection"]["se"] > 0.99 and result["detection"]["ppv"] > 0.99
    gross = np.array(result["gross"]["confusion"])
    per = sum(np.array(r["confusion"]) for r in result["per_record"].values())
    np.testing.assert_array_equal(gross, per)
    assert gross[2, 2] > 0.8 * gross[2].sum()  # 208's VEBs
    not_scored = result["not_scored"]
    assert "flat line" in not_scored["flat"]
    assert "do not match" in not_scored["swap"]
    assert "outside" in not_scored["long"]
    assert "sampling rate 60 Hz is outside [100, 10000] Hz" in not_scored["low"]
    ci = result["bootstrap"]["ci95"]
    se_v = result["gross"]["per_class"]["V"]["se"]
    assert ci["se_V"][0] - 1e-4 <= se_v <= ci["se_V"][1] + 1e-4  # CI rounded to 4 digits
    assert result["carried_by"]["V"]["record"] == "208"  # 100 has one VEB
    assert any("208" in n for n in result["notes"])


@pytest.fixture(scope="module")
def af_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 6 minutes of MIT-BIH 201 (atrial fibrillation throughout) and the first 10 of
    203 (AF, ventricular runs, noise)."""
    from tests.support.datasets import require_data

    mitdb = require_data("mitdb") / "mitdb"
    out = tmp_path_factory.mktemp("af")
    for name, minutes in (("201", 6.0), ("203", 10.0)):
        sig, fs, leads, ann = _excerpt(mitdb, name, minutes)
        _write(out, name, sig, fs, leads)
        _write_ann(out, name, ann.sample, ann.symbol, fs)
    return out


@pytest.mark.datasets("mitdb")
def test_same_beats_and_classes_as_the_edge_agent(af_folder: Path) -> None:
    from bench.edge_common import run_record
    from edge_agent.inference import OnnxBeatClassifier
    from models.record_eval import RecordRequest, stream_record
    from models.record_gate import rhythm_scorer

    clf = OnnxBeatClassifier(PRETRAINED / "beat.onnx")
    # 203: AF with ventricular runs and noise, so both of the gate's rules act
    for as_n in (False, True):
        request = RecordRequest(s_in_af_as_n=as_n)
        scorer = rhythm_scorer(True, None, clf.classes, as_n)
        stream, _ = stream_record(af_folder / "203", "MLII", clf, request, scorer)
        agent = run_record(af_folder / "203", PRETRAINED / "beat.onnx", s_in_af_as_n=as_n)
        np.testing.assert_array_equal(stream.samples, agent.samples)
        assert [clf.classes[i] for i in stream.predicted] == agent.labels
        assert len(stream.judgements) == 60  # every 10 s judged, as on the device
        assert stream.gated_beats["unreadable"] > 10  # noise reported as Q
        assert (stream.gated_beats["s_in_af"] > 50) is as_n


@pytest.mark.datasets("mitdb")
def test_the_edges_quality_gate_and_its_s_in_af_rule(
    af_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {}
    for name, flags in {
        "default": [],
        "as_n": ["--s-in-af-as-n"],
        "none": ["--rhythm-model", "none"],
    }.items():
        rc, out, _ = _run(
            capsys,
            "--records",
            str(af_folder),
            "--only",
            "201",
            "--json",
            "--bootstrap",
            "50",
            *flags,
        )
        assert rc == 0
        runs[name] = json.loads(out)
    called_s = {k: int(np.array(r["gross"]["confusion"])[:, 1].sum()) for k, r in runs.items()}
    assert runs["none"]["rhythm_model_version"] is None
    assert runs["none"]["gated_beats"] == {"unreadable": 0, "s_in_af": 0}
    assert runs["default"]["rhythm_model_version"].startswith("rhythm-v2")
    assert runs["default"]["gated_beats"]["s_in_af"] == 0 and not runs["default"]["s_in_af_as_n"]
    assert called_s["default"] == called_s["none"] > 50  # AF's irregular beats called premature
    moved = runs["as_n"]["gated_beats"]["s_in_af"]
    assert moved > 0.8 * called_s["none"] and called_s["as_n"] < 0.2 * called_s["none"]
    rc, _, err = _run(
        capsys, "--records", str(af_folder), "--s-in-af-as-n", "--rhythm-model", "none"
    )
    assert rc != 0 and "--s-in-af-as-n needs the rhythm model" in err


@pytest.mark.datasets("mitdb")
def test_a_rhythm_model_without_the_noisy_class_is_refused(
    af_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = PRETRAINED / "rhythm_softmax.onnx"
    rc, _, err = _run(capsys, "--records", str(af_folder), "--rhythm-model", str(v1))
    assert rc != 0 and "no 'noisy' class" in err and "Traceback" not in err


@pytest.mark.datasets("mitdb")
def test_personalise_runs_the_devices_protocol(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = _run(
        capsys, "--records", str(folder), "--only", "208", "--personalise", "5", "--json"
    )
    p = json.loads(out)["personalised"]
    assert rc == 0 and p["records"] == 1 and p["scored_from_min"] == 5
    rec = p["per_record"]["208"]
    assert rec["labelled_beats"] > 300 and rec["labelled_by_class"]["V"] > 2
    assert rec["v_gate"]
    scored = np.array(p["personal"]["gross"]["confusion"]).sum()
    assert 0 < scored == np.array(p["global"]["gross"]["confusion"]).sum()


@pytest.mark.datasets("mitdb")
def test_the_labelled_minutes_decide_s_in_af_for_the_patient(
    af_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 201 is in AF from its start: its labelled beats in stretches called AF are N
    runs = {}
    for name, flags in {"patient": [], "off": ["--no-patient-s-in-af"]}.items():
        rc, out, _ = _run(
            capsys, "--records", str(af_folder), "--only", "201", "--personalise", "5",
            "--json", "--bootstrap", "20", *flags,
        )  # fmt: skip
        assert rc == 0
        runs[name] = json.loads(out)
    rec = {k: r["personalised"]["per_record"]["201"] for k, r in runs.items()}
    in_af, s_in_af = rec["patient"]["labelled_in_af"]
    assert in_af >= 20 and s_in_af < 0.05 * in_af
    assert rec["patient"]["patient_s_in_af_as_n"] and not rec["off"]["patient_s_in_af_as_n"]
    assert runs["patient"]["patient_s_in_af"] and not runs["off"]["patient_s_in_af"]
    called_s = {k: np.array(r["confusion_personal"])[:, 1].sum() for k, r in rec.items()}
    assert called_s["patient"] <= called_s["off"]


@pytest.mark.datasets("mitdb")
def test_the_devices_labelled_beats_carry_the_af_calls_the_evaluator_counts(
    af_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from edge_agent.app import build_agent, load_classifier, replay_labeler
    from edge_agent.config import EdgeSettings
    from edge_agent.quality_gate import s_in_af_confirmed
    from firmware_bridge.sources import open_source

    # Prepare: the agent replays 201's first 6 min, its annotations labelling every beat
    settings = EdgeSettings(client_id="d", buffer_path=tmp_path / "b.sqlite")
    clf = load_classifier(settings)

    async def replay() -> tuple[list[str], list[bool]]:
        src = open_source(f"replay:{af_folder / '201'}?channel=MLII", speed="max")
        async with src:
            agent = build_agent(settings, clf, labeler=replay_labeler(src))  # as `medchain edge`
            await agent.run(src)
            kept = agent.buffer.labels.beats()
            agent.close()
        return kept.labels, kept.in_af.tolist()

    # Execute
    labels, in_af = asyncio.run(replay())
    rc, out, _ = _run(
        capsys, "--records", str(af_folder), "--only", "201", "--personalise", "5",
        "--json", "--bootstrap", "20",
    )  # fmt: skip
    counted = json.loads(out)["personalised"]["per_record"]["201"]["labelled_in_af"]
    # Assert: the device marks the same AF calls (6 min there, the first 5 in the evaluator)
    assert rc == 0 and len(labels) > 300
    assert counted[0] <= sum(in_af) <= counted[0] * 6 / 5 + 20
    assert s_in_af_confirmed(labels, in_af)


@pytest.mark.datasets("mitdb")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lead", "V9"], "no lead V9"),
        (["--only", "flat,swap"], "could be scored"),
        (["--only", "nothere"], "record(s) nothere"),
        (["--personalise", "-1"], "minutes must be in"),
    ],
)
def test_bad_input_is_one_error_line(
    folder: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _run(capsys, "--records", str(folder), "--json", *argv)
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.datasets("mitdb")
def test_clipping_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.datasets import require_data

    mitdb = require_data("mitdb") / "mitdb"
    sig, fs, leads, ann = _excerpt(mitdb, "100", 3.0)
    clipped = np.clip(sig, -0.3, 0.6)  # an amplifier saturating on every R wave
    _write(tmp_path, "clip", clipped, fs, leads)
    _write_ann(tmp_path, "clip", ann.sample, ann.symbol, fs)
    rc, out, _ = _run(capsys, "--records", str(tmp_path), "--json", "--lead", "MLII")
    result = json.loads(out)
    assert rc == 0
    assert result["flagged"]["clip"]["clipping"] > 0.001
