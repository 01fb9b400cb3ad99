"""The results registry (bench/results.py): records carry date, CPU, versions, commit and
command; docs/results.md is what ``python -m bench.results`` makes of docs/results/*.json."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench import results as registry
from bench.results_models import DS2, edge_vt_runs, models_cv, models_rr_gate, rhythm_softmax
from bench.results_render import RENDERERS, render
from models.data.mitdb import DS2 as MITDB_DS2

ROOT = Path(__file__).resolve().parent.parent
X86_VNNI = (
    "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
)
X86_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n"
ARM_DOT = (
    "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd aes crc32 asimddp\nCPU part\t: 0xd0c\n"
)
# benches that print results but are not this registry's: helpers, and those owned elsewhere
# that have not taken the flag yet
HELPERS = {"edge_common", "fl_data", "timing", "results", "results_render", "results_models"}
NOT_YET = {"models_cv", "fl_personalised", "edge_beat_e2e", "fl_federated_vs_central",
           "fl_full_model", "fl_distill"}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "model", "flags"),
    [
        (X86_VNNI, "AMD EPYC 9R14", "avx512_vnni"),
        (X86_AVX2, "AMD EPYC 7B13", "none"),
        (ARM_DOT, None, "asimddp"),
        ("", None, "none"),
    ],
)
def test_cpu_info_names_the_model_and_int8_dot_product(
    text: str, model: str | None, flags: str
) -> None:
    info = registry.cpu_info(text)
    assert info["int8_dot_product"] == flags
    if model is not None:
        assert info["model"] == model
    else:  # no model line (ARM) or no file: the machine type, never the processor number
        assert info["model"] and not info["model"].isdigit()


def test_record_writes_the_result_with_its_metadata(tmp_path: Path) -> None:
    # Prepare
    argv = [str(ROOT / "bench" / "ppg_hr.py"), "--record"]
    # Act
    path = registry.record("ppg_hr", {"mae": 1.5}, argv, folder=tmp_path)
    # Assert
    entry = json.loads(path.read_text())
    assert path == tmp_path / "ppg_hr.json"
    assert entry["result"] == {"mae": 1.5}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", entry["date"])
    assert set(entry["cpu"]) == {"model", "int8_dot_product"}
    assert entry["cores"] >= 1
    assert {"python", "numpy"} <= set(entry["versions"])
    assert re.fullmatch(r"[0-9a-f]{7,}(\+dirty)?", entry["git"])
    assert entry["command"].endswith("python bench/ppg_hr.py --record")


def test_git_version_is_dirty_for_changes_but_not_for_the_registrys_own_files(
    tmp_path: Path,
) -> None:
    # Prepare: a repository with one commit
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)  # fmt: skip

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "one")
    # Act / Assert: a new record and docs/results.md keep it clean, a code change does not
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "qrs.json").write_text("{}")
    (tmp_path / "docs" / "results.md").write_text("# Results\n")
    clean = registry.git_version(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert re.fullmatch(r"[0-9a-f]{7,}", clean)
    assert registry.git_version(tmp_path) == clean + "+dirty"


def test_command_line_keeps_thread_settings_and_quotes_arguments() -> None:
    argv = [str(ROOT / "bench" / "fault_run.py"), "--records", "208,119", "--workdir", "a b"]
    command = registry.command_line(argv, env={"OPENBLAS_NUM_THREADS": "1", "HOME": "/x"})
    assert (
        command
        == "OPENBLAS_NUM_THREADS=1 python bench/fault_run.py --records 208,119 --workdir 'a b'"
    )


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="result name"):
        registry.record("../x", {}, ["bench/x.py"], folder=tmp_path)


def test_record_command_records_a_commands_json(tmp_path: Path) -> None:
    code = "import json; print(json.dumps({'n': 3}))"
    assert registry.main(["record", "--results", str(tmp_path), "probe", "--",
                          sys.executable, "-c", code]) == 0  # fmt: skip
    entry = json.loads((tmp_path / "probe.json").read_text())
    assert entry["result"] == {"n": 3}
    assert entry["command"] == shlex.join([sys.executable, "-c", code])


def test_record_command_refuses_output_that_is_not_one_json_object(tmp_path: Path) -> None:
    rc = registry.main(["record", "--results", str(tmp_path), "probe", "--",
                        sys.executable, "-c", "print('{}'); print('x')"])  # fmt: skip
    assert rc == 2
    assert not list(tmp_path.iterdir())


def _entry(name: str, result: dict[str, object]) -> dict[str, object]:
    return {"name": name, "date": "2026-12-06", "git": "abc1234",
            "cpu": {"model": "Test CPU", "int8_dot_product": "none"}, "cores": 2,
            "versions": {"python": "3.11"}, "command": f"python bench/{name}.py --record",
            "result": result}  # fmt: skip


def test_render_rows_carry_date_cpu_and_command(tmp_path: Path) -> None:
    # Prepare: one bench with a renderer, one without, and no record of a timing bench
    fl = {"head_mode_bytes": 798, "head_mode_compression": "int8", "full_mode_parameters": 23000,
          "full_mode_int8_bytes": 26800, "full_mode_float32_bytes": 96000,
          "target_head_bytes": 100_000}  # fmt: skip
    (tmp_path / "fl_uplink.json").write_text(json.dumps(_entry("fl_uplink", fl)))
    (tmp_path / "mystery.json").write_text(json.dumps(_entry("mystery", {"x": 0.5, "s": "t"})))
    # Act
    text = render(tmp_path)
    # Assert
    row = next(line for line in text.splitlines() if "head mode 798 B" in line)
    assert "2026-12-06, `abc1234`" in row and "Test CPU, int8 dot: none, 2 cores" in row
    assert "`python bench/fl_uplink.py --record`" in row
    assert "`mystery` (no renderer" in text and "x 0.5" in text
    assert "to be re-measured" in next(line for line in text.splitlines() if "web_sse" in line)


def test_a_recorded_bench_is_no_longer_listed_as_to_be_measured(tmp_path: Path) -> None:
    web = {"dispatch_viewed": {"msgs_per_s": 18000},
           "sse": {"clients": 20, "messages": 250, "delivered": 5000, "expected": 5000,
                   "latency_ms_p50": 1.9, "latency_ms_p95": 6.7}}  # fmt: skip
    (tmp_path / "web_sse.json").write_text(json.dumps(_entry("web_sse", web)))
    text = render(tmp_path)
    rows = [line for line in text.splitlines() if "web_sse" in line]
    assert len(rows) == 1 and "5,000/5,000 delivered" in rows[0]


def test_every_recorded_result_renders() -> None:
    for path in sorted((ROOT / "docs" / "results").glob("*.json")):
        entry = json.loads(path.read_text())
        assert entry["name"] == path.stem
        area, fn = RENDERERS.get(path.stem, ("other", None))
        if fn is not None:
            assert fn(entry["result"]), path.name


def test_results_md_is_generated_from_the_json(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    subprocess.run([sys.executable, "-m", "bench.results", "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    assert (ROOT / "docs" / "results.md").read_text() == out.read_text(), (
        "docs/results.md is stale: run `python -m bench.results`"
    )


def test_every_bench_can_record() -> None:
    benches = {p.stem for p in (ROOT / "bench").glob("*.py")} - HELPERS - NOT_YET
    missing = [
        b
        for b in sorted(benches)
        if "registry.add_record_argument(" not in (ROOT / "bench" / f"{b}.py").read_text()
    ]
    assert not missing, (
        f"{missing}: give every bench `--record` (registry.add_record_argument and "
        "registry.record from bench/results.py) so its numbers can reach docs/results.md"
    )


def _vt_record(false_alarms: int, missed: int) -> dict:
    per = {"200": {"annotated_runs": 3, "caught": 3 - missed, "events": 3,
                   "false_alarms": false_alarms, "false_alarms_on_couplet": 0}}  # fmt: skip
    totals = dict(per["200"])
    return {"records": list(DS2), "tolerance_s": 1.0,
            "models": {"m": {"totals": totals, "per_record": per}}}  # fmt: skip


def test_vt_runs_row_names_missed_runs_and_false_alarms_by_record() -> None:
    # Execute
    clean = edge_vt_runs(_vt_record(false_alarms=0, missed=0))[0]
    worse = edge_vt_runs(_vt_record(false_alarms=2, missed=1))[0]
    # Assert
    assert "MIT-BIH DS2" in clean[0] and "missed: none" in clean[1] and "0 false (none)" in clean[1]
    assert "2 of 3 runs caught (missed: 200: 1)" in worse[1] and "2 false (200: 2)" in worse[1]


def test_rhythm_softmax_row_takes_both_flags_or_one() -> None:
    # Prepare: the shape of models.rhythm_softmax.evaluate_ds2 / evaluate_cv
    one = {"af_f1": 0.8, "overall": {"n": 1320, "per_class": {"AF": {"se": 0.75, "ppv": 0.85}}}}
    # Execute
    both = rhythm_softmax({"evaluate": one, "cv": one})[0][1]
    bare = rhythm_softmax(one)[0][1]
    # Assert
    assert both.startswith("DS1 (+ AFTDB) -> DS2: AF F1 0.800 (Se 75.0 / +P 85.0, 1,320 windows)")
    assert "record-wise 4-fold CV: AF F1 0.800" in both
    assert bare == "AF F1 0.800 (Se 75.0 / +P 85.0, 1,320 windows)"


def test_renderers_ds2_is_the_data_readers_ds2() -> None:
    assert DS2 == tuple(MITDB_DS2)


def test_beat_cv_row_gives_each_served_form() -> None:
    # Prepare: the shape of `python -m models.beat_cv_cli --kd --gate --veto 0.5 --seed 0`
    form = {"jk": 0.7, "macro_f1": 0.433, "se_ppv": {"S": [0.673, 0.269], "V": [0.771, 0.874]}}
    r = {"kd": True, "gate": True, "veto": 0.5, "views": 0, "seed": 0,
         "clean": {"net": form, "gate": form, "served": form}}  # fmt: skip
    # Execute
    what, result, _ = models_cv(r)[0]
    # Assert
    assert "KD, RR gate, template veto 0.5" in what and "seed 0" in what
    assert result.startswith("served: macro-F1 43.3, jk 0.700, SVEB Se/+P 67.3 / 26.9, VEB 77.1")
    assert "; gate: " in result and "; net: " in result


def test_gate_and_veto_row_lists_every_form() -> None:
    # Prepare
    form = {"jk": 0.677, "se_ppv": {"S": [0.647, 0.255], "V": [0.75, 0.838]}}
    r = {"seed": 0, "clean": {"net": form, "gate": form, "veto_0.5": form}}
    # Execute
    result = models_rr_gate(r)[0][1]
    # Assert
    assert result.split("; ")[2] == "veto_0.5: jk 0.677 (SVEB 65 / 26, VEB 75 / 84)"
    assert result.startswith("net: ") and len(result.split("; ")) == 3
