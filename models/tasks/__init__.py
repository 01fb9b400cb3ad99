"""Task registry: one module per task, each defining ``TASK: Task``.

A task bundles everything the generic pipeline (train -> distil -> export -> quantize ->
evaluate -> card) needs: the class names, a loader that returns a :class:`TaskData` for a named
split, the input contract for the model card, and the teacher/student network and training
specs. To add a task ``foo`` write ``models/tasks/foo.py`` with a module-level ``TASK`` and it is
available as ``medchain train --task foo`` (see docs/models.md).
"""

from __future__ import annotations

import importlib
import pkgutil

from common.errors import MedchainError
from models.tasks.base import (
    BlindSplitError,
    LoadOptions,
    NetSpec,
    Task,
    TaskData,
    TrainSpec,
    patient_wise_split,
    require_labels,
)

__all__ = [
    "BlindSplitError",
    "LoadOptions",
    "NetSpec",
    "Task",
    "TaskData",
    "TrainSpec",
    "UnknownTaskError",
    "available_tasks",
    "get_task",
    "patient_wise_split",
    "require_labels",
]

_INTERNAL = {"base"}


class UnknownTaskError(MedchainError):
    """No module ``models.tasks.<name>`` defines a ``TASK``."""


def available_tasks() -> list[str]:
    """Names of the task modules in this package (not imported)."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if m.name not in _INTERNAL and not m.ispkg
    )


def get_task(name: str) -> Task:
    """Import ``models.tasks.<name>`` and return its ``TASK``.

    Raises
    ------
    UnknownTaskError
        If there is no such task module or it defines no ``TASK``.
    """
    if name not in available_tasks():
        raise UnknownTaskError(
            f"unknown task {name!r}; available: {', '.join(available_tasks()) or 'none'}"
        )
    module = importlib.import_module(f"models.tasks.{name}")
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise UnknownTaskError(f"models.tasks.{name} defines no TASK")
    return task
