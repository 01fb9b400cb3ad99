"""The dependency rules of STYLE.md, checked on the source (every import, also inside functions).

- ``common`` imports nothing of ours and no I/O library.
- ``transport`` (the one MQTT adapter) imports nothing of ours but ``common``; only the edge,
  the aggregator, the web app and the firmware bridge import it, and no module outside it
  imports paho (only its adapter modules do).
- ``edge_agent`` and ``cloud_aggregator`` never import each other.
- Pure core modules (decoders, DSP, aggregation, round state machines) import no adapter library.
- The edge inference path (``edge_agent``, ``firmware_bridge``) never imports torch or ``models``,
  except the torch training mode of the trainer.
- Nothing the edge imports (``edge_agent``, ``firmware_bridge`` and every module of ours they
  import) imports a library the ``edge`` extra leaves out (scipy, pandas, matplotlib, wfdb,
  rich, tqdm), except the few lazy imports listed with the reason an edge never runs them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "common",
    "store",
    "firmware_bridge",
    "edge_agent",
    "cloud_aggregator",
    "models",
    "web",
    "medchain",
    "transport",
}
ADAPTER_LIBS = {
    "bleak",
    "bleak_retry_connector",
    "paho",
    "psycopg",
    "psycopg_pool",
    "flask",
    "torch",
    "onnxruntime",
    "amqtt",
}

# Pure modules per package (glob patterns relative to the repo root).
PURE = [
    "common/**/*.py",
    "firmware_bridge/decode*.py",
    "firmware_bridge/frames.py",
    "firmware_bridge/pmd*.py",
    "firmware_bridge/hrs.py",
    "firmware_bridge/gatt.py",
    "firmware_bridge/seq_check.py",
    "firmware_bridge/ble_policy.py",
    "firmware_bridge/capture.py",
    "firmware_bridge/transport.py",
    "firmware_bridge/array_replay.py",
    "cloud_aggregator/aggregation*.py",
    "cloud_aggregator/strategies/*.py",
    "cloud_aggregator/rounds.py",
    "store/base.py",
    "store/base_federation.py",
    "store/base_edge_web.py",
    "store/records.py",
    "store/errors.py",
    "store/migrate.py",
    "store/retry.py",
    "store/sql_base.py",
    "store/sql_models.py",
    "store/sql_rounds.py",
    "store/sql_updates.py",
    "store/sql_edge.py",
    "store/sql_labels.py",
    "store/sql_admin.py",
    "store/sql_store.py",
    "cloud_aggregator/validation.py",
    "cloud_aggregator/privacy.py",
    "cloud_aggregator/round_aggregation.py",
    "cloud_aggregator/publisher.py",
    "cloud_aggregator/round_config.py",
    "cloud_aggregator/closing.py",
    "cloud_aggregator/engine.py",
    "cloud_aggregator/engine_base.py",
    "cloud_aggregator/engine_open.py",
    "cloud_aggregator/engine_intake.py",
    "cloud_aggregator/engine_close.py",
    "cloud_aggregator/grid.py",
    "cloud_aggregator/robust.py",
    "cloud_aggregator/release_gate.py",
    "cloud_aggregator/ingest.py",
    "firmware_bridge/ble_control.py",
    "transport/settings.py",
    "transport/acks.py",
    "transport/inbox.py",
    "web/live/ring.py",
    "web/live/state.py",
    "web/live/hub.py",
    "web/live/fanout.py",
    "web/live/sse.py",
    "web/live/dispatch.py",
    "web/delivery.py",
    "models/metrics.py",
    "models/tasks/base.py",
    "models/data/__init__.py",
    "edge_agent/pipeline.py",
    "edge_agent/events.py",
    "edge_agent/featurize.py",
    "edge_agent/live.py",
    "edge_agent/annotations.py",
    "edge_agent/wrist.py",
    "edge_agent/examples.py",
    "edge_agent/agent.py",
    "edge_agent/agent_ports.py",
    "edge_agent/agent_status.py",
    "edge_agent/beat_recorder.py",
    "edge_agent/inbound_router.py",
    "edge_agent/outbox.py",
    "edge_agent/live_sender.py",
    "edge_agent/clinician_labels.py",
    "edge_agent/label_receipts.py",
]
# Modules of the edge allowed to import torch (the optional full-training mode).
EDGE_TORCH_ALLOWED = {"edge_agent/trainer_torch.py"}
# Libraries an edge-only install (`pip install medchain[edge]`) does not have.
NOT_ON_THE_EDGE = {"scipy", "pandas", "matplotlib", "wfdb", "rich", "tqdm"}
# Lazy imports of those on the edge path that an edge install never runs: (module, library).
EDGE_LAZY_ALLOWED = {
    ("common/signals/iir.py", "scipy"),  # odd-order low/high-pass designs: no model card has one
    ("common/signals/filters.py", "scipy"),  # power-line notch: no model card asks for one
    ("firmware_bridge/replay.py", "wfdb"),  # WFDB replay: the `wfdb` extra, one-line error without
    ("edge_agent/progress.py", "tqdm"),  # replay progress bar where tqdm is; plain lines without
    ("edge_agent/cli.py", "tqdm"),  # log lines above that bar (same condition)
}


def imports_of(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def module_imports(path: Path) -> set[str]:
    """Dotted names ``path`` imports anywhere (``from a.b import c`` gives a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def module_file(dotted: str) -> Path | None:
    """Our source file of a dotted module name (None: not ours, or a name inside a module)."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def edge_modules() -> list[Path]:
    """``edge_agent`` and ``firmware_bridge`` and every module of ours they import, transitively
    (with the packages' ``__init__`` files, which importing a submodule runs)."""
    todo = [
        p
        for pkg in ("edge_agent", "firmware_bridge")
        for p in files(f"{pkg}/**/*.py")
        if rel(p) not in EDGE_TORCH_ALLOWED
    ]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in module_imports(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:i]))
                # the torch trainer is imported lazily, only where torch is installed
                if found is not None and found not in seen and rel(found) not in EDGE_TORCH_ALLOWED:
                    todo.append(found)
    return sorted(seen)


def files(pattern: str) -> list[Path]:
    return sorted(ROOT.glob(pattern))


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", files("common/**/*.py"), ids=rel)
def test_common_imports_nothing_of_ours(path: Path) -> None:
    bad = imports_of(path) & (OURS - {"common"})
    assert not bad, f"{rel(path)} imports {bad}"


@pytest.mark.parametrize("path", files("transport/**/*.py"), ids=rel)
def test_transport_imports_nothing_of_ours_but_common(path: Path) -> None:
    bad = imports_of(path) & (OURS - {"common", "transport"})
    assert not bad, f"{rel(path)} imports {bad}"


def test_only_the_edge_aggregator_web_and_bridge_import_transport() -> None:
    allowed = {"edge_agent", "cloud_aggregator", "web", "firmware_bridge", "transport"}
    offenders = [
        rel(p)
        for pkg in sorted(OURS - allowed)
        for p in files(f"{pkg}/**/*.py")
        if "transport" in imports_of(p)
    ]
    assert not offenders, f"{offenders} import transport"


PAHO_ALLOWED = {"transport/mqtt.py", "transport/paho_client.py", "transport/subscriptions.py"}


def test_paho_only_in_the_transport_adapter() -> None:
    offenders = [
        rel(p)
        for pkg in sorted(OURS)
        for p in files(f"{pkg}/**/*.py")
        if "paho" in imports_of(p) and rel(p) not in PAHO_ALLOWED
    ]
    assert not offenders, f"{offenders} import paho: use transport.mqtt.MqttConnection"


@pytest.mark.parametrize("path", [p for pat in PURE for p in files(pat)], ids=rel)
def test_pure_modules_import_no_adapter_library(path: Path) -> None:
    bad = imports_of(path) & ADAPTER_LIBS
    assert not bad, f"pure module {rel(path)} imports {bad}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("edge_agent", "cloud_aggregator"),
        ("cloud_aggregator", "edge_agent"),
        ("firmware_bridge", "edge_agent"),
        ("store", "cloud_aggregator"),
        ("store", "web"),
        ("store", "edge_agent"),
    ],
)
def test_edge_and_aggregator_never_import_each_other(package: str, forbidden: str) -> None:
    offenders = [rel(p) for p in files(f"{package}/**/*.py") if forbidden in imports_of(p)]
    assert not offenders, f"{offenders} import {forbidden}"


def test_edge_inference_path_never_imports_torch() -> None:
    offenders = [
        rel(p)
        for pkg in ("edge_agent", "firmware_bridge")
        for p in files(f"{pkg}/**/*.py")
        if rel(p) not in EDGE_TORCH_ALLOWED and imports_of(p) & {"torch", "models"}
    ]
    assert not offenders, f"{offenders} import torch/models on the edge"


def test_edge_imports_no_library_the_edge_extra_leaves_out() -> None:
    modules = edge_modules()
    offenders = sorted(
        (rel(p), lib)
        for p in modules
        for lib in imports_of(p) & NOT_ON_THE_EDGE
        if (rel(p), lib) not in EDGE_LAZY_ALLOWED
    )
    assert "common/signals/ppg.py" in map(rel, modules)  # the walk reaches common's modules
    assert not offenders, f"the edge would import {offenders}: not in `pip install medchain[edge]`"
