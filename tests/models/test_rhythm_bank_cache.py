"""The rhythm window cache when two processes build the same bank at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import rhythm_data
from models.rhythm_data import WindowBank, cached_bank


def _bank() -> WindowBank:
    return WindowBank(np.arange(6, dtype=np.float32), np.array([0, 3, 6]),
                      np.zeros((2, 2), np.float32), np.array([0, 1]), np.array(["a", "b"]),
                      np.array([False, False]), np.zeros(2, np.int64))  # fmt: skip


def test_a_second_writer_finishing_first_does_not_break_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: while the first writer saves, a second one builds and caches the same key
    # (what two parallel runs on a fresh cache do)
    real_savez = np.savez
    calls: list[int] = []

    def savez(file: Any, **arrays: Any) -> None:
        real_savez(file, **arrays)
        if not calls:
            calls.append(1)
            cached_bank(tmp_path, "k", _bank)

    monkeypatch.setattr(rhythm_data.np, "savez", savez)
    # Execute
    bank = cached_bank(tmp_path, "k", _bank)
    again = cached_bank(tmp_path, "k", lambda: pytest.fail("read from the cache"))
    # Assert: both finished, one cache file, no temporary left
    assert len(bank) == len(again) == 2
    assert [p.name for p in (tmp_path / "rhythm_v2").iterdir()] == ["k.npz"]
