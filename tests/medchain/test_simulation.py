"""The round engine in one process (InMemoryGrid) with the edge's real participants: the same
engine as production, rounds that close at their target, drop-outs that do not stall a round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.grid_memory import InMemoryGrid
from cloud_aggregator.releases import RELEASE_FORMAT, stored_blob
from cloud_aggregator.simulate import SimulationPlan, run_on_grid
from medchain.cli import main as medchain_main
from medchain.simulation import memory_devices
from store import open_store
from tests.cloud_aggregator.fl_support import initial_release, write_client_data


def _run(tmp_path: Path, n: int, drop: float, rounds: int = 3) -> tuple[dict, InMemoryGrid]:
    ids = write_client_data(tmp_path / "data", n)
    store = open_store(f"sqlite:///{tmp_path / 'sim.db'}")
    store.put_model(stored_blob(initial_release(), {}), format=RELEASE_FORMAT)
    devices = memory_devices(tmp_path / "data", tmp_path / "work")
    grid = InMemoryGrid(devices, drop=drop, seed=1)
    plan = SimulationPlan(tuple(ids), rounds, client_config={"deadline_s": 60.0, "lr": 0.05,
                                                               "min_clients": 2, "fraction": 0.5})  # fmt: skip
    settings = AggregatorSettings(worker="agg-sim", poll_s=0.01)
    try:
        return run_on_grid(store, settings, plan, grid, dict.fromkeys(ids, 300), {}), grid
    finally:
        store.close()


def test_rounds_close_at_their_target_in_one_process(tmp_path: Path) -> None:
    # Execute: 10 devices, each round asks for half of them and invites 30 % more
    result, grid = _run(tmp_path, 10, drop=0.0)
    # Assert: every round closed with at least its target of 5 updates (the over-selected ones
    # that arrived before the close count too), well before the deadline
    assert result["rounds_closed"] == 3 and result["rounds_failed"] == 0
    assert all(5.0 <= h["received"] <= 7.0 for h in result["rounds"])
    assert [h["selected"] for h in result["rounds"]] == [7.0, 7.0, 7.0]
    assert all(h["round_s"] < 30 for h in result["rounds"])
    assert grid.stats.up_messages > 15 and grid.stats.up_bytes > 0


def test_drop_outs_do_not_stall_a_round(tmp_path: Path) -> None:
    # Execute: a third of the invited devices drop out of each round
    result, grid = _run(tmp_path, 12, drop=0.35, rounds=4)
    # Assert: rounds close on the quorum (the drop-outs' Last Will), never at the deadline
    assert grid.stats.dropped_rounds > 0
    assert result["rounds_closed"] == 4
    assert all(h["round_s"] < 30 for h in result["rounds"] if h["state"] == "closed")
    assert sum(h["failures"] for h in result["rounds"]) == grid.stats.dropped_rounds


@pytest.mark.datasets("mitdb")
def test_simulate_cli_in_memory_on_mitdb(tmp_path: Path, data_root: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Prepare
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    # Execute
    rc = medchain_main(["simulate", "--grid", "memory", "--clients", "101,106,119,208",
                        "--rounds", "2", "--eval", "", "--drop", "0", "--json",
                        "--store", f"sqlite:///{tmp_path / 's.db'}",
                        "--initial-model", "models/pretrained/beat.onnx"])  # fmt: skip
    # Assert
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["rounds_closed"] == 2 and out["clients"] == 4
    assert 0 < out["uplink_bytes_per_client_round"] < 2000
    assert out["downlink_bytes_per_round"] > 0


@pytest.mark.integration
@pytest.mark.datasets("mitdb")
def test_simulate_cli_over_a_real_broker(tmp_path: Path, data_root: Path, mosquitto: object,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Prepare
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(tmp_path / "cache"))
    url = mosquitto.url  # type: ignore[attr-defined]
    # Execute: the same engine, devices in a child process over MQTT
    rc = medchain_main(["simulate", "--grid", "mqtt", "--broker", url, "--clients", "101,106",
                        "--rounds", "2", "--eval", "", "--drop", "0", "--slow", "0", "--json",
                        "--store", f"sqlite:///{tmp_path / 's.db'}", "--max-seconds", "240",
                        "--initial-model", "models/pretrained/beat.onnx"])  # fmt: skip
    # Assert
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["rounds_closed"] == 2 and out["round_s_median"] < 60


@pytest.mark.datasets("mitdb")
def test_whole_model_rounds_with_a_mixed_cohort(tmp_path: Path, data_root: Path) -> None:
    # Prepare: three devices with torch, one without; a random student as version 1
    from cloud_aggregator.full_release import full_builder, initial_release
    from cloud_aggregator.releases import is_whole_model, load_stored
    from cloud_aggregator.simulate import write_client_npz

    env = {"MEDCHAIN_DATA": str(data_root)}
    cache = tmp_path / "cache"
    records = ("101", "119", "208", "203")
    counts = write_client_npz(records, tmp_path / "data", env, cache)
    store = open_store(f"sqlite:///{tmp_path / 'full.db'}")
    store.put_model(stored_blob(initial_release(["106"], env, cache), {}), format=RELEASE_FORMAT)
    devices = memory_devices(tmp_path / "data", tmp_path / "work", frozenset({"mitdb-203"}))
    plan = SimulationPlan(records, 2, client_config={"mode": "full", "lr": 0.003,
                                                     "local_epochs": 1, "max_examples": 1500,
                                                     "min_clients": 4}, eval_records=("209",))  # fmt: skip
    settings = AggregatorSettings(worker="agg-full", poll_s=0.01, gate_margin=1.0,
                                  gate_class_margin=1.0)  # fmt: skip
    # Execute
    try:
        out = run_on_grid(store, settings, plan, InMemoryGrid(devices), counts, env, cache=cache,
                          builder=full_builder(["106"], env, cache))  # fmt: skip
        versions = sorted(m.version for m in store.list_models())
        first, _ = load_stored(store.get_model_bytes(versions[0]))
        last, _ = load_stored(store.get_model_bytes(versions[-1]))
    finally:
        store.close()
    # Assert: both rounds released a new int8 network; the head-only device took part
    assert out["rounds_closed"] == 2 and all(h["received"] == 4 for h in out["rounds"])
    assert is_whole_model(last) and len(last.tensors) > 2
    assert last.metrics["backbone_sha256"] != first.metrics["backbone_sha256"]
    assert last.files["model.onnx"] != first.files["model.onnx"]
    assert all("device_macro_f1" in h and "macro_f1" in h for h in out["rounds"])


@pytest.mark.datasets("mitdb")
def test_downlink_carries_only_what_changed(tmp_path: Path, data_root: Path) -> None:
    # Prepare: four devices on the shipped beat model, head rounds
    from cloud_aggregator.simulate import write_client_npz

    env = {"MEDCHAIN_DATA": str(data_root)}
    records = ("101", "106", "119", "208")
    counts = write_client_npz(records, tmp_path / "data", env, tmp_path / "cache")
    store = open_store(f"sqlite:///{tmp_path / 'dl.db'}")
    settings = AggregatorSettings(worker="agg-dl", poll_s=0.01,
                                  initial_model=Path("models/pretrained/beat.onnx"))  # fmt: skip
    devices = memory_devices(tmp_path / "data", tmp_path / "work")
    grid = InMemoryGrid(devices)
    # Execute
    try:
        out = run_on_grid(store, settings, SimulationPlan(records, 4, client_config={
            "min_clients": 4}), grid, counts, env)  # fmt: skip
    finally:
        store.close()
    # Assert: the first round sends the model to each new device; later rounds a patch of the
    # head (with the round's announcement) of at most 2 KB + 0.6 KB per device
    per_device = {r: n / len(devices) for r, n in grid.stats.per_round_down.items()}
    assert out["rounds_closed"] == 4
    assert per_device["1"] > 50_000
    assert all(per_device[r] < 2_600 for r in ("2", "3", "4")), per_device
    assert all(d.stats.bad_messages == 0 for d in devices)
    assert all(len(d.subscriptions()) == 3 for d in devices)  # one full release ever asked for


@pytest.fixture(scope="module")
def rhythm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One preprocessing cache for the rhythm runs of this module (the server's MIT-BIH and
    AFTDB windows are built once, not per test)."""
    return tmp_path_factory.mktemp("rhythm-cache")


@pytest.mark.datasets("cinc2017_training", "mitdb", "aftdb")
def test_simulate_cli_rhythm_on_cinc_recordings(tmp_path: Path, data_root: Path, rhythm_cache: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Prepare
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(rhythm_cache))
    store = f"sqlite:///{tmp_path / 's.db'}"
    # Execute: 12 CinC recordings as devices, 20 of fold 0 as the server's validation
    rc = medchain_main(["simulate", "--task", "rhythm", "--clients", "cinc2017:12",
                        "--eval-max", "20", "--grid", "memory", "--mode", "full", "--rounds", "2",
                        "--drop", "0", "--gate-margin", "1", "--gate-class-margin", "1",
                        "--pretrain-epochs", "1", "--set", "min_clients=6", "--set", "norm=frozen",
                        "--set", "optimizer=sgd", "--set", "class_balance=0.5", "--json",
                        "--store", store])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    # Assert: whole-model rounds closed, scored per recording with the CinC score
    assert rc == 0 and out["clients"] == 12 and out["rounds_closed"] == 2
    assert all(h["recordings"] == 20 and 0 <= h["af_f1"] <= 1 for h in out["rounds"])
    assert all(h["macro_f1"] == h["cinc_mean_f1"] for h in out["rounds"])
    assert all(k.startswith("cinc-") for k in out["beats_per_client"])
    assert out["uplink_bytes_per_client_round"] > 10_000  # every weight, int8
    assert 0 <= out["initial"]["macro_f1"] <= 1 and out["initial"]["recordings"] == 20


@pytest.mark.integration
@pytest.mark.datasets("cinc2017_training", "mitdb", "aftdb")
def test_simulate_cli_rhythm_over_a_real_broker(tmp_path: Path, data_root: Path, mosquitto: object,
                                                rhythm_cache: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Prepare
    monkeypatch.setenv("MEDCHAIN_DATA", str(data_root))
    monkeypatch.setenv("MEDCHAIN_CACHE", str(rhythm_cache))
    url = mosquitto.url  # type: ignore[attr-defined]
    # Execute: 6 CinC devices in child processes, each on its own MQTT connection
    rc = medchain_main(["simulate", "--task", "rhythm", "--clients", "cinc2017:6", "--eval-max",
                        "10", "--grid", "mqtt", "--broker", url, "--mode", "full", "--rounds", "1",
                        "--drop", "0", "--slow", "0", "--gate-margin", "1",
                        "--gate-class-margin", "1", "--set", "min_clients=4", "--json",
                        "--store", f"sqlite:///{tmp_path / 's.db'}", "--max-seconds", "240"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    # Assert: the round closed; the fleet's stats came back (whole-model updates, int8)
    assert rc == 0 and out["rounds_closed"] == 1 and out["final"]["recordings"] == 10
    assert out["uplink_bytes_per_client_round"] > 10_000


def test_simulate_cli_rhythm_needs_whole_model_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    rc = medchain_main(
        ["simulate", "--task", "rhythm", "--clients", "cinc2017:5", "--mode", "head"]
    )
    # Assert: one clear line, no traceback
    err = capsys.readouterr().err
    assert rc != 0 and "--mode full" in err and "Traceback" not in err


def test_rhythm_runs_take_the_chosen_recipe_unless_set_otherwise() -> None:
    # Prepare
    from medchain.simulation_rhythm import RECIPE, SERVER_STEP, client_config

    # Execute
    default = client_config({})
    mine = client_config({"lr": 0.05, "mu": 0.01, "strategy_params": {"server_lr": 1.0}})
    central = client_config({}, "fedavg", central=True)
    adam = client_config({}, "fedadam")
    # Assert: SGD on the device at the lr chosen on fold 1, server momentum for FedAvg only;
    # --set wins, key by key; the centralised baseline trains plainly
    assert default == RECIPE | {"strategy_params": SERVER_STEP} and default["lr"] == 0.002
    assert mine["lr"] == 0.05 and mine["mu"] == 0.01 and mine["norm"] == "frozen"
    assert mine["strategy_params"] == {"server_lr": 1.0}
    assert central == RECIPE and adam == RECIPE
