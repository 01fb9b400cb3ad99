"""The edge agent's one frozen settings object.

Filled by :func:`common.config.load_settings` from defaults, an optional TOML table ``[edge]``
and ``MEDCHAIN_EDGE_*`` environment variables (read only in the CLI), then CLI flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.payloads import MIN_LIVE_FS

BUFFER_FILE = "edge_buffer.sqlite"
FEDERATED_DIR = "federated"
_SHA256_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Settings of one edge agent (one patient, one device).

    Attributes
    ----------
    client_id : str
        Device id; a topic level, so ``[A-Za-z0-9_.-]{1,64}``.
    source : str
        Signal source spec for ``firmware_bridge.sources.open_source`` (``ble:ADDR``,
        ``replay:PATH``, ``mqtt:CLIENT_ID``).
    speed : str
        Replay pacing, ``realtime`` or ``max``.
    broker_url : str
        MQTT broker (``mqtt://host:port``); empty runs offline (buffer only).
    model_path : Path | None
        Beat model ONNX file (its card beside it); None uses the packaged pretrained model.
    rhythm_model_path : Path | None
        Optional rhythm (AF) model ONNX file.
    state_dir : Path, optional
        Folder of this device's state: the buffer and the federated folder go there unless
        ``buffer_path`` / ``workdir`` say otherwise. The CLI defaults it to
        :func:`default_state_dir` (``~/.local/state/medchain/edge/<client_id>``); None
        (library use) means ``./edge_state``.
    buffer_path : Path, optional
        SQLite buffer file (predictions/events outbox, labelled beats); default
        ``state_dir/edge_buffer.sqlite`` (:attr:`buffer_file`).
    out_path : Path | None
        JSON-lines file receiving every beat and event.
    live_fs : float
        Rate of the downsampled live ECG for the web page, Hz.
    live_batch_s : float
        Duration of one live payload, s (0.04 s = 25 payloads/s, 5 samples each at 125 Hz).
    pred_batch_max : int
        Most beats/events sent in one ``pred`` payload.
    flush_interval_s : float
        How often buffered rows are pushed to the broker, s.
    resend_after_s : float
        A batch the broker acknowledged but the store never confirmed (``predack``) is sent
        again after this many seconds (a broker restart or an ingestion outage lost it).
    status_interval_s : float
        How often the retained status is refreshed with the current state (heart rate,
        activity, backlog), s.
    brady_bpm, tachy_bpm : float
        Heart-rate thresholds entering bradycardia / tachycardia, bpm.
    hr_hysteresis_bpm : float
        Margin the rate must recover by before an episode ends, bpm.
    vt_min_beats : int
        Consecutive ventricular beats that make a VT run (3 is the clinical definition).
    af_window_beats : int
        RR intervals per AF irregularity window.
    intra_op_threads : int
        onnxruntime threads (1 on a Pi so the BLE loop keeps a core).
    keep_labelled_beats : int
        Most labelled beats kept for local training (oldest dropped first).
    s_in_af_as_n : bool
        Report a beat the model calls S inside a stretch the rhythm model calls AF as N (for a
        patient in permanent AF, whose irregular beats the RR evidence calls premature). Off by
        default: on MIT-BIH DS2 it lost half the SVEBs of a patient with frequent ectopy whose
        stretches the rhythm model called AF (docs/models.md, "No SVEB inside atrial
        fibrillation").
    patient_s_in_af : bool
        Let the personal head decide ``s_in_af_as_n`` for this patient from the labelled beats
        in stretches called AF (docs/models.md, "The S-in-AF rule decided per patient").
    federated : bool
        Take part in federated rounds (needs a broker): head training on the labelled beats.
    workdir : Path, optional
        Folder of the federated participant (installed global models, personal head);
        default ``state_dir/federated`` (:attr:`federated_dir`).
    pinned_releases : tuple of str
        sha256 (hex) of global-model release payloads this device installs without a round
        announcement naming them (releases are otherwise installed only when announced).
    """

    client_id: str = "edge-1"
    source: str = ""
    speed: str = "realtime"
    broker_url: str = ""
    model_path: Path | None = None
    rhythm_model_path: Path | None = None
    state_dir: Path | None = None
    buffer_path: Path | None = None
    out_path: Path | None = None
    live_fs: float = 125.0
    live_batch_s: float = 0.04
    pred_batch_max: int = 200
    flush_interval_s: float = 1.0
    resend_after_s: float = 60.0
    status_interval_s: float = 60.0
    brady_bpm: float = 50.0
    tachy_bpm: float = 100.0
    hr_hysteresis_bpm: float = 5.0
    vt_min_beats: int = 3
    af_window_beats: int = 30
    intra_op_threads: int = 1
    keep_labelled_beats: int = 20000
    s_in_af_as_n: bool = False
    patient_s_in_af: bool = True
    federated: bool = False
    workdir: Path | None = None
    pinned_releases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.speed not in ("realtime", "max"):
            raise ValueError(f"speed must be 'realtime' or 'max', got {self.speed!r}")
        if min(self.live_batch_s, self.flush_interval_s, self.resend_after_s) <= 0:
            raise ValueError("live_batch_s, flush_interval_s and resend_after_s must be positive")
        if not MIN_LIVE_FS <= self.live_fs <= 10_000:  # the web refuses other live rates
            raise ValueError(f"live_fs must be {MIN_LIVE_FS:g}-10000 Hz, got {self.live_fs!r}")
        if not 0 < self.brady_bpm < self.tachy_bpm:
            raise ValueError("need 0 < brady_bpm < tachy_bpm")
        if self.vt_min_beats < 2 or self.af_window_beats < 8:
            raise ValueError("vt_min_beats must be >= 2 and af_window_beats >= 8")
        for sha in self.pinned_releases:
            if len(sha) != 64 or not set(sha) <= _SHA256_CHARS:
                raise ValueError(f"pinned_releases: {sha!r} is not a lower-case sha256 hex digest")

    @property
    def buffer_file(self) -> Path:
        """The SQLite buffer: ``buffer_path``, else ``edge_buffer.sqlite`` in the state folder."""
        return self.buffer_path or (self.state_dir or Path("edge_state")) / BUFFER_FILE

    @property
    def federated_dir(self) -> Path:
        """The federated participant's folder: ``workdir``, else ``federated`` in the state
        folder."""
        return self.workdir or (self.state_dir or Path("edge_state")) / FEDERATED_DIR


def default_state_dir(env: Mapping[str, str], client_id: str) -> Path:
    """This device's state folder, ``<base>/edge/<client_id>``.

    ``<base>`` is systemd's ``$STATE_DIRECTORY`` when the service sets one (``StateDirectory=``),
    else ``$XDG_STATE_HOME/medchain``, else ``~/.local/state/medchain`` (XDG Base Directory
    specification: a relative ``XDG_STATE_HOME`` is ignored).
    """
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    xdg = env.get("XDG_STATE_HOME", "")
    if systemd and Path(systemd).is_absolute():
        base = Path(systemd)
    elif xdg and Path(xdg).is_absolute():
        base = Path(xdg) / "medchain"
    else:
        base = Path.home() / ".local" / "state" / "medchain"
    return base / "edge" / client_id
