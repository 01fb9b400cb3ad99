"""The round engine's state and its models: what every part of the engine shares.

:class:`EngineBase` holds the store, the grid, the settings, the evaluator and distiller, the
clock, the online view, the reject counts and history, the retained state on the broker and a
cache of decoded releases. The parts of a round's life are mixins over it (opening
:mod:`~cloud_aggregator.engine_open`, intake :mod:`~cloud_aggregator.engine_intake`, closing
:mod:`~cloud_aggregator.engine_close`), joined in :class:`~cloud_aggregator.engine.RoundEngine`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cloud_aggregator.closing import Builder, Distiller, Evaluator
from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.grid import Grid
from cloud_aggregator.publisher import RetainedState
from cloud_aggregator.releases import (
    RELEASE_FORMAT,
    load_stored,
    release_from_model_dir,
    stored_blob,
    version_name,
)
from cloud_aggregator.update_cache import DecodedUpdates
from cloud_aggregator.validation import RejectCounter
from common import fl_protocol as fl
from common.errors import ConfigError
from store import Round, Store

_LOGGER = logging.getLogger(__name__)


class EngineBase:
    """State shared by the parts of the round engine (see :class:`RoundEngine`)."""

    def __init__(
        self,
        store: Store,
        grid: Grid,
        settings: AggregatorSettings,
        *,
        evaluator: Evaluator | None = None,
        distiller: Distiller | None = None,
        builder: Builder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.grid, self.s = store, grid, settings
        self.evaluator, self.distiller, self.clock = evaluator, distiller, clock
        self.builder = builder  # whole-model releases (export + int8), needs the train extra
        self.worker = settings.worker_name
        self.online: dict[str, bool] = {}  # last status per device (fed by ingestion)
        self._waiting_said_at = float("-inf")  # last "round waits for devices" log (clock s)
        self.rejects = RejectCounter()
        self.history: list[dict[str, Any]] = []  # closed/failed rounds of this process
        self.retained = RetainedState(grid, settings.chunk_bytes)
        self.republish = threading.Event()  # set on a broker reconnect: re-publish retained
        self.republish.set()
        self._rng = np.random.default_rng(settings.seed)
        self._releases: dict[int, tuple[fl.ModelRelease, fl.Tensors]] = {}
        self._open: dict[int, Round] = {}  # the open round as last seen (saves a query/update)
        self._selected_sets: dict[int, frozenset[str]] = {}  # its invited clients, as a set
        self._decoded = DecodedUpdates()  # the open round's valid updates, decoded at intake
        # the open round and the clients whose update was screened in here (a resent one: once)
        self._screened_in: tuple[int, set[str]] = (0, set())
        self._hinted = 0  # the round completes_round last said was complete
        # a closing round's candidates -> the int8 deltas their tensors came from (patches)
        self._downlink: dict[int, tuple[fl.ModelRelease, dict[str, Any]]] = {}

    def ensure_initial_model(self) -> int:
        """The latest release version, seeding ``initial_model`` into an empty store."""
        latest = self.store.latest_model(format=RELEASE_FORMAT)
        if latest is not None:
            return latest.version
        if self.s.initial_model is None:
            raise ConfigError("the store holds no model: pass --initial-model path/to/beat.onnx")
        rel = release_from_model_dir(self.s.initial_model)
        mv = self.store.put_model(
            stored_blob(rel, {}),
            format=RELEASE_FORMAT,
            metrics={"source": str(self.s.initial_model)},
        )
        _LOGGER.info("seeded model %s from %s", version_name(mv.version), self.s.initial_model)
        return mv.version

    def release(self, version: int) -> tuple[fl.ModelRelease, fl.Tensors]:
        """Decoded release and server state of a stored version (the last four cached)."""
        if version not in self._releases:
            self._releases[version] = load_stored(self.store.get_model_bytes(version))
            while len(self._releases) > 4:
                self._releases.pop(next(iter(self._releases)))
        return self._releases[version]
