"""An edge-only install (``pip install medchain[edge]``) works without the libraries it leaves
out: the agent runs with scipy, pandas, matplotlib, wfdb, rich and tqdm made unimportable, and a
WFDB replay there is one line saying which extra to install (tests/test_import_rules.py checks
the same statically)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from medchain.synthetic_ecg import simulate_ecg

NOT_ON_THE_EDGE = ("scipy", "pandas", "matplotlib", "wfdb", "rich", "tqdm")
# Runs the medchain CLI with those libraries unimportable, as in an edge-only venv.
WITHOUT = f"""
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_ON_THE_EDGE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Missing())
from medchain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_without_edge_extras(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", WITHOUT, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)  # noqa: S603


def test_edge_agent_runs_without_the_libraries_the_edge_extra_leaves_out(tmp_path: Path) -> None:
    # Prepare: two minutes of simulated ECG (µV) as a CSV replay
    rec = simulate_ecg(duration_s=120.0, fs=250.0, seed=3)
    t = np.arange(rec.signal.size) / rec.fs
    np.savetxt(tmp_path / "ecg.csv", np.column_stack([t, rec.signal]), delimiter=",",
               header="time_s,ecg", comments="", fmt="%.6f")  # fmt: skip
    # Execute
    res = run_without_edge_extras(
        ["edge", "--source", f"replay:{tmp_path / 'ecg.csv'}", "--speed", "max",
         "--out", "beats.jsonl", "--buffer", "buffer.sqlite"], tmp_path,
    )  # fmt: skip
    # Assert: beats were classified (about one per second)
    assert res.returncode == 0, res.stderr[-3000:]
    beats = [json.loads(line) for line in (tmp_path / "beats.jsonl").read_text().splitlines()]
    assert len(beats) > 100


def test_wfdb_replay_without_wfdb_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    # Prepare: a WFDB header (the record is never read: wfdb is missing)
    (tmp_path / "rec.hea").write_text("rec 1 360 3600\nrec.dat 212 200 11 1024 0 0 0 MLII\n")
    (tmp_path / "rec.dat").write_bytes(bytes(5400))
    # Execute
    res = run_without_edge_extras(
        ["edge", "--source", f"replay:{tmp_path / 'rec'}", "--speed", "max", "--buffer", "b.db"],
        tmp_path,
    )
    # Assert
    assert res.returncode == 2, res.stderr[-3000:]
    assert "pip install 'medchain[wfdb]'" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
