"""The operator's training config: which keys a run may set, their types and ranges.

The web's "start training" form (and its advanced JSON) writes ``TrainingControl.config``; the
aggregator reads it to open every round. Both check it here, so a value the form would refuse
(``"deadline_s": "soon"``, ``"min_clients": -3``) can neither be saved nor, if it reached the
store some other way, crash the aggregator: it stops the run with the reason instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from common.errors import ConfigError

# name -> (type, lo, hi): client selection and quorum, the deadline (s), and the fields of
# common.fl_round.RoundConfig that travel to the devices.
NUMERIC_FIELDS: dict[str, tuple[type, float, float]] = {
    "fraction": (float, 1e-6, 1.0),
    "min_clients": (int, 1, 1_000_000),
    "quorum_fraction": (float, 1e-6, 1.0),
    "min_quorum": (int, 1, 1_000_000),
    "deadline_s": (float, 1, 86_400),
    "max_attempts": (int, 1, 1000),
    "overselect": (float, 0.0, 2.0),
    "grace_fraction": (float, 0.0, 10.0),
    "local_epochs": (int, 1, 100),
    "lr": (float, 1e-6, 10.0),
    "batch_size": (int, 1, 4096),
    "mu": (float, 0.0, 10.0),
    "clip_norm": (float, 0.0, 1e6),
    "max_examples": (int, 1, 10_000_000),
    # aggregator side: devices weight classes by count^-class_balance of the labels the
    # run's devices reported (0 or absent: each device by its own counts)
    "class_balance": (float, 0.0, 2.0),
}
CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "mode": ("head", "full"),
    "compression": ("int8", "none"),
    "optimizer": ("adam", "sgd"),
    "norm": ("batch", "frozen"),
}
MAX_STRATEGY_PARAMS = 16
_PARAM = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_training_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every known key type-checked and in range.

    Integers given as whole floats (``3.0``) become ints; ``strategy_params`` must map short
    lower-case names to finite numbers (the strategy itself refuses unknown names). Keys this
    module does not know are refused, so a typo does not silently do nothing.

    Raises
    ------
    ConfigError
        Naming the first offending key and what it must be.
    """
    out: dict[str, Any] = {}
    for key, val in config.items():
        if key in NUMERIC_FIELDS:
            out[key] = _number(key, val, *NUMERIC_FIELDS[key])
        elif key in CHOICE_FIELDS:
            if val not in CHOICE_FIELDS[key]:
                raise ConfigError(f"{key!r} must be one of {', '.join(CHOICE_FIELDS[key])}")
            out[key] = val
        elif key == "strategy_params":
            out[key] = _strategy_params(val)
        else:
            known = ", ".join([*NUMERIC_FIELDS, *CHOICE_FIELDS, "strategy_params"])
            raise ConfigError(f"unknown training setting {str(key)[:40]!r}; known: {known}")
    return out


def _number(key: str, val: object, typ: type, lo: float, hi: float) -> int | float:
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise ConfigError(f"{key!r} must be a number between {lo:g} and {hi:g}, got {val!r}")
    if not (math.isfinite(val) and lo <= val <= hi):
        raise ConfigError(f"{key!r} must be between {lo:g} and {hi:g}, got {val!r}")
    if typ is int:
        if val != int(val):
            raise ConfigError(f"{key!r} must be a whole number, got {val!r}")
        return int(val)
    return float(val)


def _strategy_params(val: object) -> dict[str, float]:
    if not isinstance(val, dict) or len(val) > MAX_STRATEGY_PARAMS:
        raise ConfigError(
            f"'strategy_params' must be an object of at most {MAX_STRATEGY_PARAMS} numbers"
        )
    out: dict[str, float] = {}
    for name, v in val.items():
        if not isinstance(name, str) or not _PARAM.match(name):
            raise ConfigError(f"strategy parameter name {str(name)[:40]!r} is not a short name")
        out[name] = float(_number(f"strategy_params.{name}", v, float, -1e6, 1e6))
    return out
