"""``medchain edge --source replay:FILE --spot-check``: one rhythm verdict for a recording.

The first ``--spot-seconds`` (30 by default) of the source's ECG go through the same
:class:`~edge_agent.spot_check.SpotCheckRecorder` and rhythm model as a device's spot check
(``edge_agent.spot_check``), as fast as the source delivers them; the verdict is printed as
one JSON object: ``class``, ``probabilities``, ``quality`` flags, ``decided``, ``duration_s``,
``windows``, ``heart_rate_bpm``, plus ``source`` and ``model``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from common.errors import ConfigError, DataNotFoundError
from common.types import StreamKind
from edge_agent.config import EdgeSettings
from edge_agent.rhythm import OnnxRhythmScorer
from edge_agent.spot_check import SpotCheckRecorder

_LOGGER = logging.getLogger(__name__)


async def spot_check_source(settings: EdgeSettings, seconds: float) -> dict[str, Any]:
    """The verdict of the first ``seconds`` of ``settings.source`` (module docstring).

    Raises
    ------
    ConfigError
        No source.
    DataNotFoundError
        No rhythm model, or a missing replay file.
    """
    from edge_agent.app import rhythm_model_path
    from firmware_bridge.sources import open_source

    if not settings.source:
        raise ConfigError("no source: pass --source replay:PATH (or ble:ADDRESS, mqtt:CLIENT_ID)")
    path = rhythm_model_path(settings)
    if path is None:
        raise DataNotFoundError("rhythm model rhythm.onnx", "models/pretrained")
    scorer = OnnxRhythmScorer(path)
    recorder = SpotCheckRecorder(seconds)
    options: dict[str, Any] = {"speed": 1.0 if settings.speed == "realtime" else "max"}
    if settings.broker_url:
        options["broker"] = settings.broker_url
    async with open_source(settings.source, **options) as source:
        async for chunk in source.chunks():
            if chunk.kind == StreamKind.ECG and recorder.push(chunk):
                break
        name = source.name
    verdict = recorder.verdict(scorer)
    return {
        "source": name,
        "client_id": settings.client_id,
        "model": scorer.version,
        **verdict.to_json(),
    }


def run_spot_check(settings: EdgeSettings, seconds: float) -> dict[str, Any]:
    """Synchronous :func:`spot_check_source`."""
    return asyncio.run(spot_check_source(settings, seconds))
