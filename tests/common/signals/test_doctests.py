"""The docstring examples of common.signals run and stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["resample", "filters", "beats", "rr", "ecg", "peaks", "matching", "align", "template"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    # Prepare
    module = importlib.import_module(f"common.signals.{name}")
    # Execute
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    # Assert
    assert result.failed == 0
    assert result.attempted > 0
