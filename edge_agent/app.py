"""Wiring: build the agent from ``EdgeSettings`` with the real adapters and run it.

This is the only place that knows every concrete class: onnxruntime classifier, the
``common.signals`` QRS detector, SQLite buffer, paho uplink, ``firmware_bridge`` sources, the
``--out`` file and replay annotations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import ConfigError, CorruptInputError, DataNotFoundError
from common.model_card import ModelCard
from common.protocol import Channel, client_topic
from common.signals.beats import BeatSpec
from common.signals.peaks import QRSDetector
from common.types import StreamKind
from edge_agent.agent import AgentStats, EdgeAgent
from edge_agent.annotations import AnnotationLabeler
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import EdgeSettings
from edge_agent.events import BeatEventDetector
from edge_agent.featurize import CHANNELS, StreamingBeatFeaturizer
from edge_agent.inference import OnnxBeatClassifier
from edge_agent.output import JsonlSink
from edge_agent.pipeline import EcgPipeline
from edge_agent.ports import ChunkSource, Participant, Uplink
from edge_agent.progress import ProgressSource, ReplayProgress
from edge_agent.quality_gate import JudgementSink, QualityGate
from edge_agent.rhythm import OnnxRhythmScorer, RhythmMonitor
from edge_agent.rhythm_verdict import UNREADABLE, WindowScorer
from edge_agent.spot_check import SpotCheckService
from edge_agent.wrist import WristMonitor

if TYPE_CHECKING:
    from edge_agent.uplink import MqttUplink

_LOGGER = logging.getLogger(__name__)

# The packaged beat model (MODELS ships it beside its card); a path, never an import of models.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "pretrained" / "beat.onnx"
DEFAULT_RHYTHM = DEFAULT_MODEL.with_name("rhythm.onnx")  # v2: N / AF / O / noisy
LEGACY_RHYTHM = DEFAULT_MODEL.with_name("rhythm_softmax.onnx")  # v1 feature softmax
NOMINAL_FS = 130.0  # Hz; the featurizer re-reads the rate from the first chunk


def beat_spec_from_card(card: ModelCard) -> BeatSpec:
    """The model's ``BeatSpec`` from its card (``input_contract.parameters.beat_spec``).

    Raises
    ------
    ConfigError
        If the card lacks it or it does not match the card's window.
    """
    params = card.input_contract.parameters
    raw = params.get("beat_spec", params if "sampling_rate_hz" in params else None)
    if not isinstance(raw, dict):
        raise ConfigError("model card has no input_contract.parameters.beat_spec")
    if "align_window_s" not in raw:
        # Cards written before BeatSpec had R-peak alignment describe models trained without
        # it; BeatSpec.from_dict would default to 0.05 s, which is not what the model saw.
        raw = {**raw, "align_window_s": 0.0}
    try:
        spec = BeatSpec.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"model card beat_spec is invalid: {exc}") from exc
    ic = card.input_contract
    if (spec.before_samples, spec.after_samples) != (ic.window_before, ic.window_after):
        raise ConfigError("model card beat_spec disagrees with input_contract window")
    return spec


def channels_from_card(card: ModelCard) -> tuple[tuple[str, ...], int]:
    """Input channels and template length the card asks for (one z-scored beat by default)."""
    params = card.input_contract.parameters
    channels = tuple(params.get("channels", ("beat_zscore",)))
    if any(c not in CHANNELS for c in channels):
        raise ConfigError(f"model card asks for unknown input channels {channels}")
    return channels, int(params.get("template_beats", 16))


def make_featurizer(card: ModelCard, spec: BeatSpec | None = None) -> StreamingBeatFeaturizer:
    """The streaming front end for a model card."""
    channels, template_beats = channels_from_card(card)
    return StreamingBeatFeaturizer(
        spec or beat_spec_from_card(card), QRSDetector, NOMINAL_FS, channels, template_beats
    )


def load_classifier(settings: EdgeSettings) -> OnnxBeatClassifier:
    """The beat model named in the settings; with ``--federated`` and no ``--model``, the last
    global model installed in the workdir (if intact), else the packaged one."""
    if settings.federated and settings.model_path is None:
        from edge_agent.model_update import installed_model

        model = installed_model(settings.federated_dir)
        if model is not None:
            try:
                return OnnxBeatClassifier(
                    model.path,
                    settings.intra_op_threads,
                    verify_sha256=False,
                    release=model.release,
                )
            except Exception as exc:  # onnxruntime errors are plain Exceptions
                _LOGGER.error("installed model %s unusable (%s): packaged model", model.path, exc)
    path = settings.model_path or DEFAULT_MODEL
    if not Path(path).is_file():
        raise DataNotFoundError(
            f"beat model {Path(path).name}", str(Path(path).parent), "pass --model PATH"
        )
    return OnnxBeatClassifier(path, settings.intra_op_threads)


def build_agent(
    settings: EdgeSettings,
    classifier: OnnxBeatClassifier,
    *,
    uplink: Uplink | None = None,
    labeler: AnnotationLabeler | None = None,
    participant: Participant | None = None,
    buffer_path: Path | str | None = None,
    spec: BeatSpec | None = None,
) -> EdgeAgent:
    """An agent with the real pipeline around ``classifier`` (``spec`` overrides the card's
    beat spec, for experiments only)."""
    loaded = load_rhythm(settings)
    rhythm, gate = loaded if loaded is not None else (None, None)
    spot = None
    if rhythm is not None:
        spot = SpotCheckService(
            settings.client_id, rhythm.scorer, rhythm.scorer.version, _spot_publisher(uplink)
        )
    featurizer = make_featurizer(classifier.card, spec)
    pipeline = EcgPipeline(settings.client_id, featurizer, classifier)
    detector = BeatEventDetector(
        settings.client_id,
        vt_min_beats=settings.vt_min_beats,
        brady_bpm=settings.brady_bpm,
        tachy_bpm=settings.tachy_bpm,
        hysteresis_bpm=settings.hr_hysteresis_bpm,
        af_window_beats=settings.af_window_beats,
        rr_af=rhythm is None,
    )
    buffer = SqliteBuffer(
        buffer_path or settings.buffer_file,
        settings.client_id,
        keep_labelled=settings.keep_labelled_beats,
    )
    sink = JsonlSink(settings.out_path) if settings.out_path else None
    aux = WristMonitor(
        settings.client_id,
        brady_bpm=settings.brady_bpm,
        tachy_bpm=settings.tachy_bpm,
        hysteresis_bpm=settings.hr_hysteresis_bpm,
    )
    return EdgeAgent(
        settings,
        pipeline,
        detector,
        buffer,
        uplink,
        sink=sink,
        labeler=labeler,
        aux=aux,
        participant=participant,
        rhythm=rhythm,
        gate=gate,
        spot=spot,
    )


def _spot_publisher(uplink: Uplink | None) -> Callable[[str, bytes], None] | None:
    """``publish(topic, payload)`` of spot-check results (QoS 1; the event is the durable copy)."""
    if uplink is None:
        return None

    def publish(topic: str, payload: bytes) -> None:
        if not uplink.publish_reliable(topic, payload, lambda ok: None):
            _LOGGER.info("spot check result not sent (offline): it goes out as an event")

    return publish


def activate_classifier(agent: EdgeAgent, clf: OnnxBeatClassifier) -> None:
    """Put a loaded classifier into a running agent: a new input contract (another
    ``BeatSpec`` or channels) brings a new featurizer, otherwise the stream continues without
    a break. Raises ``ConfigError`` (agent untouched) if the card's contract is unusable."""
    new = make_featurizer(clf.card)
    old = agent.pipeline.featurizer
    same = (getattr(old, "spec", None), getattr(old, "channels", None)) == (new.spec, new.channels)
    agent.pipeline.set_classifier(clf, None if same else new)


def swap_model(agent: EdgeAgent, model_path: Path, intra_op_threads: int = 1) -> OnnxBeatClassifier:
    """Load a new beat model (ONNX + card) into a running agent.

    Raises like :class:`OnnxBeatClassifier` on a bad model, leaving the agent on its old model.
    Federated releases go through :class:`edge_agent.model_update.ReleaseInstaller` instead.
    """
    clf = OnnxBeatClassifier(model_path, intra_op_threads)
    activate_classifier(agent, clf)
    _LOGGER.info("now using beat model %s (%s)", clf.version, model_path)
    return clf


def rhythm_model_path(settings: EdgeSettings) -> Path | None:
    """``rhythm_model_path``, else the packaged v2 model, else the packaged v1 softmax."""
    if settings.rhythm_model_path is not None:
        return Path(settings.rhythm_model_path)
    return next((p for p in (DEFAULT_RHYTHM, LEGACY_RHYTHM) if p.is_file()), None)


def load_rhythm(settings: EdgeSettings) -> tuple[RhythmMonitor, QualityGate | None] | None:
    """The rhythm model's monitor and the quality gate it judges for (when the model has a
    noisy class); None (AF from RR irregularity) when there is no model."""
    path = rhythm_model_path(settings)
    if path is None:
        return None
    scorer = OnnxRhythmScorer(path)
    gate = (
        QualityGate(settings.client_id, s_in_af_as_n=settings.s_in_af_as_n)
        if judges_quality(scorer)
        else None
    )
    return rhythm_monitor(settings.client_id, scorer, gate), gate


def judges_quality(scorer: WindowScorer) -> bool:
    """True if the rhythm model has the noisy class the quality gate needs (v2; not v1)."""
    return UNREADABLE in scorer.classes


def rhythm_monitor(
    client_id: str, scorer: OnnxRhythmScorer, sink: JudgementSink | None
) -> RhythmMonitor:
    """The edge's rhythm monitor of a scorer, telling ``sink`` its judgements."""
    return RhythmMonitor(client_id, scorer, scorer.window_s, gate=sink)


def replay_labeler(source: Any) -> AnnotationLabeler | None:
    """Reference labels from a WFDB replay's ``.atr`` file, if it has one."""
    annotations = getattr(source, "annotations", None)
    if annotations is None or getattr(source, "kind", StreamKind.ECG) != StreamKind.ECG:
        return None
    try:
        samples, symbols = annotations()
    except DataNotFoundError:
        return None
    except CorruptInputError as exc:  # the signal is still usable without reference labels
        _LOGGER.warning("replay annotations unreadable, replaying without them: %s", exc)
        return None
    labeler = AnnotationLabeler(samples, symbols, float(source.fs))
    _LOGGER.info("replay annotations: %d labelled beats available for training", len(labeler))
    return labeler


ParticipantFactory = Callable[[EdgeAgent, Uplink], Participant]


async def run_edge(
    settings: EdgeSettings,
    *,
    participant_factory: ParticipantFactory | None = None,
    connect_timeout_s: float = 5.0,
    drain_timeout_s: float = 10.0,
    stop: asyncio.Event | None = None,
    progress: ReplayProgress | None = None,
) -> AgentStats:
    """Run the agent on ``settings.source`` until the source ends or ``stop`` is set (then it
    flushes, stores and sends like at a normal end, and publishes its offline status).
    ``progress`` is shown the seconds of signal processed (``medchain edge`` on a replay).

    Raises
    ------
    ConfigError
        Bad source spec or broker URL.
    DataNotFoundError
        Missing model or replay file.
    """
    from firmware_bridge.sources import open_source

    if not settings.source:
        raise ConfigError("no source: pass --source ble:ADDRESS|replay:PATH|mqtt:CLIENT_ID")
    classifier = load_classifier(settings)
    speed = 1.0 if settings.speed == "realtime" else "max"
    options: dict[str, Any] = {"speed": speed}
    if settings.broker_url:
        options["broker"] = settings.broker_url
    source = open_source(settings.source, **options)
    cid = settings.client_id

    def status(online: bool, detail: str, session: int, seq: int) -> bytes:
        # the agent's (its model version follows releases); the uplink starts after it exists
        return agent.status_payload(online, detail or source.name, session, seq)

    async with source:
        uplink: MqttUplink | None = None
        if settings.broker_url:
            # paho only when there is a broker: an offline agent spares its ~2 MB
            from edge_agent.uplink import MqttUplink

            subs = [
                client_topic(Channel.LABEL, cid),
                client_topic(Channel.PRED_ACK, cid),
                client_topic(Channel.CONTROL, cid),  # spot-check requests
            ]
            uplink = MqttUplink(
                settings.broker_url,
                cid,
                client_topic(Channel.STATUS, cid),
                status,
                subs,
                asyncio.get_running_loop(),
            )
        buffer_file = settings.buffer_file
        if str(buffer_file) != ":memory:":
            buffer_file.parent.mkdir(parents=True, exist_ok=True)
        agent = build_agent(settings, classifier, uplink=uplink, labeler=replay_labeler(source))
        agent.stats.source_name = source.name
        if participant_factory is None and settings.federated:
            from edge_agent.participation import federated_participant

            participant_factory = federated_participant(settings, classifier)
        if uplink is not None:
            if participant_factory is not None:
                agent.participant = participant_factory(agent, uplink)
                uplink.add_subscriptions(agent.participant.subscriptions())
            uplink.start()
            if not await uplink.wait_connected(connect_timeout_s):
                _LOGGER.info("broker %s not reachable yet: buffering", settings.broker_url)
        shown: ChunkSource = source
        if progress is not None:
            progress.start(source.name, getattr(source, "length_s", None))
            shown = ProgressSource(source, progress, lambda: agent.stats.beats)
        try:
            stats = await agent.run(shown, drain_timeout_s if uplink else 0.0, stop)
        finally:
            if progress is not None:
                progress.close()
            if uplink is not None:
                await asyncio.to_thread(uplink.stop, "stopped")
            agent.close()
        stats.source = source.stats.as_dict()  # rejected = bad raw payloads / frames
        _LOGGER.info("source %s: %s", source.name, stats.source)
        return stats
