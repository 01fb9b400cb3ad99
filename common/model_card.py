"""Model card: the JSON file beside every ONNX model, with the full input contract.

Pure (no torch, no onnxruntime). A card says what a model expects and how good it is, so a third
party can feed it correctly with their own code:

- ``task`` and ``classes`` (index order of the ``probs`` output);
- ``input_contract``: sampling rate (Hz), window around the R peak (samples before/after),
  alignment, lead, units, filter, normalisation, extra features (name, unit, how computed) and how
  to bring other sampling rates to the model rate; ``parameters`` holds the machine-readable
  preprocessing parameters (e.g. ``common.signals`` ``BeatSpec`` fields);
- ``onnx``: input/output tensor names, shapes (``"N"`` = batch) and dtypes;
- ``head``: where the fp32 linear head ``probs = softmax(embedding @ W.T + b)`` is stored (an
  ``.npz`` beside the card) so a device can retrain only the head;
- ``training``: data, split, seed and the command that reproduced the model;
- ``metrics``: per variant (``"fp32"``, ``"int8"``) a dict with at least ``per_class``;
- ``artifact``: file name, size in bytes, sha256, quantization.

``load_card`` validates and returns a frozen :class:`ModelCard`; ``validate_card`` lists every
problem of a raw dict (empty list = valid).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import CorruptInputError, DataNotFoundError

SCHEMA_VERSION = 1
# An int8 artifact must give the same probabilities with onnxruntime's fused integer kernels as
# with the same QDQ graph unoptimized (its reference arithmetic), to this tolerance: rounding
# reached 0.008 on DS2 for the beat model with 7-bit weights; int16 saturation (8-bit weights on
# x86 without VNNI) 0.83 (models.weight_range, edge_agent.kernel_check).
FUSED_INT8_GAP_LIMIT = 0.05


@dataclass(frozen=True)
class FeatureSpec:
    """One extra (non-waveform) input feature, e.g. an RR interval ratio."""

    name: str
    unit: str
    description: str


@dataclass(frozen=True)
class InputContract:
    """Everything needed to turn raw signal into model inputs."""

    sampling_rate_hz: float
    window_before: int  # samples before the alignment point (R peak), model rate
    window_after: int  # samples from the alignment point on (inclusive), model rate
    alignment: str
    lead: str
    units: str
    filter: str
    normalisation: str
    resampling: str
    features: tuple[FeatureSpec, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def window_samples(self) -> int:
        """Total window length in samples."""
        return self.window_before + self.window_after


@dataclass(frozen=True)
class TensorSpec:
    """An ONNX graph input or output: name, shape (``"N"`` = batch) and dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class OnnxIO:
    """The graph's inputs and outputs, in order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class HeadInfo:
    """Location and shape of the fp32 classifier head ``logits = embedding @ W.T + b``."""

    file: str  # relative to the card's folder
    weight_key: str
    bias_key: str
    embedding_dim: int
    n_classes: int
    activation: str = "softmax"


@dataclass(frozen=True)
class TrainingInfo:
    """Provenance: data, split, seed and the exact command."""

    data: str
    split: str
    seed: int
    command: str
    class_counts: dict[str, int] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class Artifact:
    """The model file the card describes."""

    file: str
    size_bytes: int
    sha256: str
    quantization: str  # "fp32" or e.g. "int8 static QDQ per-channel (head fp32)"


@dataclass(frozen=True)
class ModelCard:
    """A validated model card (see module docstring)."""

    task: str
    classes: tuple[str, ...]
    description: str
    input_contract: InputContract
    onnx: OnnxIO
    head: HeadInfo | None
    training: TrainingInfo
    metrics: dict[str, dict[str, Any]]
    artifact: Artifact
    version: str = ""
    schema_version: int = SCHEMA_VERSION


_REQUIRED: dict[str, tuple[str, ...]] = {
    "": ("task", "classes", "description", "input_contract", "onnx", "training", "metrics"),
    "input_contract": (
        "sampling_rate_hz",
        "window_before",
        "window_after",
        "alignment",
        "lead",
        "units",
        "filter",
        "normalisation",
        "resampling",
    ),
    "onnx": ("inputs", "outputs"),
    "training": ("data", "split", "seed", "command"),
    "artifact": ("file", "size_bytes", "sha256", "quantization"),
}


def validate_card(raw: Any) -> list[str]:
    """Every problem of a raw card dict, as readable strings (empty list when valid)."""
    if not isinstance(raw, dict):
        return ["card is not a JSON object"]
    problems: list[str] = []
    for section, keys in _REQUIRED.items():
        obj = raw if not section else raw.get(section)
        if section and not isinstance(obj, dict):
            problems.append(f"missing section {section!r}")
            continue
        assert isinstance(obj, dict)
        for key in keys:
            if obj.get(key) in (None, "", [], {}):
                problems.append(f"missing {section + '.' if section else ''}{key}")
    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.append(f"unsupported schema_version {raw.get('schema_version')!r}")
    classes = raw.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
    ):
        problems.append("classes must be a list of strings")
    contract = raw.get("input_contract")
    if isinstance(contract, dict):
        rate = contract.get("sampling_rate_hz")
        if not isinstance(rate, int | float) or rate <= 0:
            problems.append("input_contract.sampling_rate_hz must be a positive number")
        for key in ("window_before", "window_after"):
            if not isinstance(contract.get(key), int) or contract[key] < 0:
                problems.append(f"input_contract.{key} must be a non-negative integer")
        for feat in contract.get("features", []):
            if not isinstance(feat, dict) or not all(
                feat.get(k) for k in ("name", "unit", "description")
            ):
                problems.append("each input_contract.features entry needs name, unit, description")
    onnx = raw.get("onnx")
    if isinstance(onnx, dict):
        for kind in ("inputs", "outputs"):
            for spec in onnx.get(kind) or []:
                if not isinstance(spec, dict) or not spec.get("name") or not spec.get("shape"):
                    problems.append(f"each onnx.{kind} entry needs name and shape")
        names = {s.get("name") for s in onnx.get("outputs") or [] if isinstance(s, dict)}
        if "probs" not in names:
            problems.append("onnx.outputs must include 'probs'")
    metrics = raw.get("metrics")
    if isinstance(metrics, dict):
        for variant, values in metrics.items():
            if not isinstance(values, dict) or "per_class" not in values:
                problems.append(f"metrics.{variant} needs per_class")
    head = raw.get("head")
    if head is not None and (
        not isinstance(head, dict)
        or not all(head.get(k) for k in ("file", "weight_key", "bias_key", "embedding_dim"))
    ):
        problems.append("head needs file, weight_key, bias_key, embedding_dim")
    return problems


def card_from_dict(raw: dict[str, Any]) -> ModelCard:
    """Build a :class:`ModelCard` from a validated dict.

    Raises
    ------
    CorruptInputError
        If the dict fails :func:`validate_card`.
    """
    problems = validate_card(raw)
    if problems:
        raise CorruptInputError("invalid model card: " + "; ".join(problems))
    ic = dict(raw["input_contract"])
    ic["features"] = tuple(FeatureSpec(**f) for f in ic.get("features", []))
    ic["sampling_rate_hz"] = float(ic["sampling_rate_hz"])
    ic.pop("window_samples", None)

    def tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(s["name"], tuple(s["shape"]), s.get("dtype", "float32")) for s in items
        )

    head = raw.get("head")
    return ModelCard(
        task=raw["task"],
        classes=tuple(raw["classes"]),
        description=raw["description"],
        input_contract=InputContract(**ic),
        onnx=OnnxIO(tensors(raw["onnx"]["inputs"]), tensors(raw["onnx"]["outputs"])),
        head=HeadInfo(**head) if head else None,
        training=TrainingInfo(**raw["training"]),
        metrics=dict(raw["metrics"]),
        artifact=Artifact(**raw["artifact"]),
        version=str(raw.get("version", "")),
        schema_version=int(raw.get("schema_version", SCHEMA_VERSION)),
    )


def card_to_dict(card: ModelCard) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists; ``window_samples`` added for readers)."""
    raw = dataclasses.asdict(card)
    raw["input_contract"]["window_samples"] = card.input_contract.window_samples
    return json.loads(json.dumps(raw))  # type: ignore[no-any-return]


def load_card(path: Path | str) -> ModelCard:
    """Read and validate a card JSON file.

    Raises
    ------
    DataNotFoundError
        If the file does not exist.
    CorruptInputError
        If it is not JSON or misses required fields.
    """
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"model card {p.name!r}", str(p.parent))
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptInputError(f"model card {p} is not valid JSON: {exc}") from exc
    return card_from_dict(raw)


def save_card(card: ModelCard, path: Path | str) -> None:
    """Write a card as indented JSON (validated first)."""
    raw = card_to_dict(card)
    problems = validate_card(raw)
    if problems:
        raise CorruptInputError("refusing to save an invalid model card: " + "; ".join(problems))
    Path(path).write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def card_path_for(model_path: Path | str) -> Path:
    """The card's path beside a model: ``beat.onnx`` -> ``beat.card.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
