"""One interface for every signal source, and a factory that opens one from a spec string.

A *source* is an async context manager; inside it, ``chunks()`` yields
:class:`common.types.SignalChunk` values (ECG in µV, ACC in mg, PPG in a.u., HR in bpm, t0 in
Unix ns, ``seq`` = index of the first sample in its stream)::

    async with open_source("replay:/data/mitdb/100", speed=None) as source:
        async for chunk in source.chunks():
            ...
        print(source.stats)

Spec strings (``open_source``):

==========================  =================================================================
``ble:ADDRESS_OR_NAME``     a Polar H10 / Verity Sense (or any Heart Rate Service device)
``ble:fake?capture=PATH``   a simulated device streaming a capture (no hardware needed)
``replay:PATH``             by suffix: ``.bin`` (H10 ECG container), ``.jsonl`` (our capture),
                            ``.csv`` (CSV columns), otherwise a WFDB record (``.hea`` optional)
``wfdb:PATH`` ``csv:PATH``  force the replay format; ``capture:PATH`` a BLE log (.bin/.jsonl)
``mqtt:CLIENT_ID``          raw samples published on ``medchain/v1/raw/{CLIENT_ID}``
==========================  =================================================================

Options travel as a query string (``replay:/x/100?channel=MLII&speed=max``,
``ble:AA:BB:CC:DD:EE:FF?streams=ecg,acc``, ``mqtt:dev1?broker=mqtt://127.0.0.1:1883``) or as
keyword arguments of :func:`open_source`; the query string wins.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import parse_qsl

from common.errors import ConfigError, CorruptInputError
from common.types import SignalChunk, StreamKind, rate_problem

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class SourceStats:
    """Counters every source keeps; rejected input is counted here, never raised mid-stream.

    Attributes
    ----------
    chunks, samples : int
        Chunks and samples (rows) yielded.
    frames : int
        Device frames / notifications / messages accepted.
    rejected : int
        Frames or payloads that failed to decode (logged with their hex and skipped).
    truncated : int
        Records cut off at the end of a capture file (tolerated).
    gaps, missing_samples : int
        Discontinuities detected from timestamps or ``seq``, and samples estimated lost.
    duplicates : int
        Chunks dropped because their ``seq`` had already been delivered.
    no_contact : int
        Heart-rate values dropped because the strap reported no skin contact.
    reconnects : int
        Successful reconnections after a dropped link.
    """

    chunks: int = 0
    samples: int = 0
    frames: int = 0
    rejected: int = 0
    truncated: int = 0
    gaps: int = 0
    missing_samples: int = 0
    duplicates: int = 0
    no_contact: int = 0
    reconnects: int = 0

    def count_chunk(self, chunk: SignalChunk) -> None:
        """Record one yielded chunk."""
        self.chunks += 1
        self.samples += chunk.n_samples

    def as_dict(self) -> dict[str, int]:
        """Plain dict (for logs and JSON)."""
        return asdict(self)


@runtime_checkable
class Source(Protocol):
    """What the edge agent consumes: an async context manager that yields signal chunks.

    ``chunks()`` is an async generator; it ends when the source is exhausted (replay) or the
    context exits (live sources). Malformed input never ends it: it is counted in ``stats``.
    """

    @property
    def name(self) -> str:
        """Human-readable description (``wfdb:100 ch MLII @ 360 Hz``)."""
        ...

    @property
    def stats(self) -> SourceStats:
        """Live counters."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def chunks(self) -> AsyncIterator[SignalChunk]:
        """Yield chunks in time order (per stream)."""
        ...


def parse_speed(value: str | float | None) -> float | None:
    """Parse a replay speed: ``max``/``0``/None = as fast as possible, ``realtime`` = 1.0, else
    a factor > 0 (``2``, ``2.5``, ``10x``).

    Raises
    ------
    ConfigError
        If the value is not ``max`` or a positive finite number.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("max", "inf", "0", ""):
            return None
        if text in ("realtime", "real-time", "rt"):
            return 1.0
        try:
            value = float(text.removesuffix("x"))
        except ValueError as exc:
            raise ConfigError(f"replay speed {value!r} is not 'max' or a number") from exc
    if value == 0 or math.isinf(value):
        return None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"replay speed must be > 0 or 'max', got {value!r}")
    return float(value)


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split ``scheme:target?k=v&...`` into (scheme, target, options).

    Raises
    ------
    ConfigError
        If there is no ``scheme:`` prefix.
    """
    scheme, sep, rest = spec.partition(":")
    if not sep or not scheme:
        raise ConfigError(
            f"source spec {spec!r} lacks a scheme: use ble:, replay:, wfdb:, csv:, capture:, mqtt:"
        )
    target, _, query = rest.partition("?")
    return scheme.lower(), target, dict(parse_qsl(query, keep_blank_values=True))


def check_rate(kind: StreamKind, fs: float, what: str) -> float:
    """``fs`` (Hz) if it is a plausible sampling rate for ``kind``
    (:data:`common.types.RATE_RANGES`).

    Raises
    ------
    CorruptInputError
        With ``what`` (the file) and the rate, e.g. fs 0, -360, 1e10, NaN or an ECG at 60 Hz.
    """
    problem = rate_problem(kind, fs)
    if problem:
        raise CorruptInputError(f"{what}: {problem}")
    return fs


def _number(opts: Mapping[str, Any], key: str, default: float | None, lo: float, hi: float) -> Any:
    """Option ``key`` as a float in ``[lo, hi]`` (its unit), ``default`` when absent."""
    raw = opts.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"source option {key}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"source option {key}={raw!r} is outside [{lo:g}, {hi:g}]")
    return value


def _kind(value: str | StreamKind) -> StreamKind:
    try:
        return StreamKind(str(value).lower())
    except ValueError as exc:
        raise ConfigError(f"unknown stream kind {value!r}: use ecg, acc, ppg, hr") from exc


def open_source(spec: str, **options: Any) -> Source:
    """Build (not yet enter) a source from a spec string.

    Parameters
    ----------
    spec : str
        ``ble:ADDRESS``, ``replay:PATH``, ``wfdb:PATH``, ``csv:PATH``, ``capture:PATH``,
        ``mqtt:CLIENT_ID`` with optional ``?key=value&...`` options.
    **options
        Defaults for the options; the spec's query string overrides them. Common ones:
        ``speed`` (float factor, ``"max"`` or None = as fast as possible; replays default to
        real time 1.0), ``channel`` / ``channels`` (WFDB/CSV column names or indices, comma
        separated), ``chunk_s`` (replay chunk length, s), ``start_s`` / ``duration_s``
        (replay segment, s), ``kind`` (``ecg`` ...), ``fs`` (Hz,
        CSV without a time column), ``streams`` (BLE: ``ecg,acc,ppg,hr``), ``broker``
        (MQTT URL), ``idle_timeout`` (MQTT: end after this many idle s), ``transport`` (BLE: an injected :class:`firmware_bridge.transport.Transport`
        factory for tests).

    Returns
    -------
    Source
        Use it with ``async with``.

    Raises
    ------
    ConfigError
        Unknown scheme or bad option values.
    """
    scheme, target, query = split_spec(spec)
    opts: dict[str, Any] = {**options, **query}
    if not target:
        raise ConfigError(f"source spec {spec!r} has an empty target")
    if scheme in ("replay", "wfdb", "csv", "capture"):
        return _open_replay(scheme, target, opts)
    if scheme == "ble":
        from firmware_bridge.ble_source import BleSource

        return BleSource.from_options(target, opts)
    if scheme == "mqtt":
        from firmware_bridge.mqtt_replay import MqttReplaySource

        return MqttReplaySource.from_options(target, opts)
    raise ConfigError(f"unknown source scheme {scheme!r} in {spec!r}")


def _channels(opts: Mapping[str, Any]) -> list[str | int] | None:
    raw = opts.get("channels", opts.get("channel"))
    if raw is None or raw == "":
        return None
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [int(c) if isinstance(c, str) and c.strip().isdigit() else c for c in items]


def _open_replay(scheme: str, target: str, opts: dict[str, Any]) -> Source:
    path = Path(target).expanduser()
    suffix = path.suffix.lower()
    speed = parse_speed(opts.get("speed", 1.0))
    if scheme == "capture" or (scheme == "replay" and suffix in (".bin", ".jsonl")):
        from firmware_bridge.capture_replay import CaptureReplaySource

        return CaptureReplaySource(path, speed=speed)
    day = 86_400.0
    chunk_s = _number(opts, "chunk_s", 1.0, 1e-3, 3600.0)
    segment: dict[str, Any] = {"start_s": _number(opts, "start_s", 0.0, 0.0, 366 * day)}
    segment["duration_s"] = _number(opts, "duration_s", None, 1e-3, 366 * day)
    t0 = _number(opts, "t0_ns", None, 0.0, 2.0**62)
    if t0 is not None:
        segment["t0_ns"] = int(t0)
    kind = _kind(opts.get("kind", StreamKind.ECG))
    if scheme == "csv" or (scheme == "replay" and suffix == ".csv"):
        from firmware_bridge.csv_replay import CsvReplaySource

        fs = _number(opts, "fs", None, 1e-3, 1e6)  # the stream kind's range is checked on load
        return CsvReplaySource(
            path,
            fs=fs,
            kind=kind,
            columns=_channels(opts),
            scale=_number(opts, "scale", 1.0, -1e9, 1e9),
            speed=speed,
            chunk_s=chunk_s,
            **segment,
        )
    from firmware_bridge.replay import WfdbReplaySource

    return WfdbReplaySource(
        path, channels=_channels(opts), kind=kind, speed=speed, chunk_s=chunk_s, **segment
    )
