"""Timing helpers shared by the speed benches: interleaved rounds, medians and paired ratios,
the heap setting torch needs for a fair baseline, and the CPU's int8 capability.

Used by ``bench/models_speed.py`` (int8 onnxruntime vs torch fp32 eager); see its docstring for
how the numbers are read.
"""

from __future__ import annotations

import ctypes
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BLOCK_MS = 2.0  # a timed block repeats the call until the fastest contender needs ~2 ms


def _calls_per_block(fn: Callable[[], object]) -> int:
    """How many calls of ``fn`` take about :data:`BLOCK_MS` (timer and scheduler noise on one
    50 µs call are as large as the call)."""
    start = time.perf_counter()
    for _ in range(3):
        fn()
    one_ms = (time.perf_counter() - start) * 1000 / 3
    return max(1, int(BLOCK_MS / max(one_ms, 1e-3)))


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 5
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call wall and CPU ms of every contender in ``rounds`` interleaved rounds.

    Parameters
    ----------
    fns : dict
        ``{name: zero-argument callable}`` doing the same work.
    rounds : int
        Timed rounds; each round times one block of every contender.
    warmup : int
        Untimed calls of every contender first (allocations, kernel selection, caches); every
        timed block also starts with one untimed call (warm caches for everybody).

    Returns
    -------
    wall, cpu : dict
        ``{name: [ms per call, one value per round]}``: wall-clock time, and this thread's CPU
        time (every contender computes in the calling thread with one thread, so CPU time
        leaves out the time other processes hold the core).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    calls = min(_calls_per_block(fn) for fn in fns.values())
    names = list(fns)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        # a seeded shuffle, not a rotation: with a rotation the same contender always ran
        # right after torch (whose block evicts the caches) and was measured slower
        order = random.Random(r).sample(names, len(names))
        for name in order:
            fn = fns[name]
            # one untimed call first: the previous block (torch above all) has evicted this
            # contender's weights from the caches; without it the contender timed right after
            # torch ran 15-25 % slower than an identical session timed later in the round
            fn()
            start, start_cpu = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                fn()
            cpu[name].append((time.thread_time() - start_cpu) * 1000 / calls)
            wall[name].append((time.perf_counter() - start) * 1000 / calls)
    return wall, cpu


def summarise(times: dict[str, list[float]], baseline: str) -> dict[str, Any]:
    """Median ms per contender and speed-ups ``baseline / contender`` (median, paired p10)."""
    row: dict[str, Any] = {f"{n}_ms": statistics.median(t) for n, t in times.items()}
    for name, t in times.items():
        if name == baseline:
            continue
        paired = np.asarray(times[baseline]) / np.asarray(t)
        row[f"speedup_{name}"] = statistics.median(times[baseline]) / statistics.median(t)
        row[f"speedup_{name}_p10"] = float(np.percentile(paired, 10))
    return row


INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")  # x86 VNNI, ARM dot product


def cpu_int8() -> str:
    """The CPU's int8 dot-product instructions, as /proc/cpuinfo lists them (Linux).

    onnxruntime's int8 kernels are about 4x fp32 per instruction with them and at most about
    2.7x without (x86 AVX2: ``vpmaddubsw`` + ``vpmaddwd``): the speed-up depends on it."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    found = [f for f in INT8_DOT_FLAGS if f in flags]
    if found:
        return "int8 dot product: " + ", ".join(found)
    return "no int8 dot product" + (" (AVX2)" if "avx2" in flags else "")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def heap_allocations() -> str:
    """Serve large allocations from the heap instead of one mmap/munmap per call (glibc).

    Torch eager allocates its intermediate tensors on every call; above glibc's mmap threshold
    (128 kB, raised dynamically after large frees, at most 32 MB) each one is a fresh mmap whose
    pages fault in again on every call. Measured here: torch at 256 beats took 6.1-7.9 ms per
    call in a fresh process and 3.9 ms with the threshold at 32 MB; at 2048 beats 52 vs 32 ms;
    onnxruntime (its own arena) did not change. Whether an earlier large free had raised the
    threshold decided torch's speed, so the bench fixes it at the fast setting: the baseline is
    torch at its best. Returns what was done (for the JSON).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):
        return "default (not glibc)"
    return (
        "heap: mallopt mmap threshold 32 MiB, trim 256 MiB" if ok else "default (mallopt refused)"
    )
