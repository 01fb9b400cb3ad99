"""The inference path never loads torch (an edge-only install has none)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "edge_agent.agent",
    "edge_agent.app",
    "edge_agent.cli",
    "edge_agent.inference",
    "edge_agent.pipeline",
    "edge_agent.featurize",
    "edge_agent.events",
    "edge_agent.buffer",
    "edge_agent.uplink",
    "edge_agent.live",
    "edge_agent.wrist",
    "edge_agent.examples",
    "edge_agent.annotations",
    "edge_agent.output",
    "firmware_bridge.sources",
]


def test_importing_the_agent_leaves_torch_unloaded() -> None:
    # Prepare
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "from edge_agent.app import DEFAULT_MODEL, load_classifier\n"
        + "from edge_agent.config import EdgeSettings\n"
        + "load_classifier(EdgeSettings())\n"
        + "print('torch' in sys.modules, 'models' in sys.modules)\n"
    )
    # Execute
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    # Assert
    assert out.stdout.split() == ["False", "False"], out.stderr
