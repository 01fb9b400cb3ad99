"""The results registry: every number MedChain reports, as JSON with when, where and how.

A bench run with ``--record [NAME]`` writes ``docs/results/NAME.json``: its result plus the UTC
date, the CPU (model and int8 dot-product flags), cores, library versions, the git commit and
the command line that reproduces it. ``docs/results.md`` is generated from those files, never
edited by hand::

    python -m bench.results                          # regenerate docs/results.md
    python -m bench.results --out /tmp/results.md    # write it elsewhere (the up-to-date test)
    python -m bench.results record aft_loo -- python -m models.tasks.aft --loo
                                                     # run a command printing one JSON object
                                                     # and record its output

Rows of docs/results.md come from the renderers of ``bench/results_render.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python bench/x.py`` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from bench.timing import INT8_DOT_FLAGS  # noqa: E402

RESULTS_DIR = ROOT / "docs" / "results"
RESULTS_MD = ROOT / "docs" / "results.md"
LIBRARIES = ("numpy", "onnxruntime", "torch")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")


def cpu_info(cpuinfo: str) -> dict[str, str]:
    """The CPU model and its int8 dot-product flags, from the text of ``/proc/cpuinfo``.

    Parameters
    ----------
    cpuinfo : str
        The file's text (x86: ``model name`` and ``flags``; ARM: ``Features``, and a model
        line only on some kernels).

    Returns
    -------
    dict
        ``model`` (``platform.machine()`` when the file names none) and ``int8_dot_product``:
        the flags of :data:`bench.timing.INT8_DOT_FLAGS` present, comma-separated, or ``none``.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    model = next(
        (fields[k] for k in ("model name", "hardware", "cpu model", "processor") if fields.get(k)),
        "",
    )
    if not model or model.isdigit():  # ARM lists "processor : 0"
        model = platform.machine() or "unknown"
    flags = set((fields.get("flags", "") + " " + fields.get("features", "")).split())
    found = [f for f in INT8_DOT_FLAGS if f in flags]
    return {"model": model, "int8_dot_product": ", ".join(found) or "none"}


def git_version(root: Path = ROOT) -> str:
    """Short commit of the working tree at ``root``, ``+dirty`` when it has changes other than
    the registry's own files (docs/results*: recording one result must not taint the next);
    ``unknown`` without git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", ".", ":(exclude)docs/results*")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Python's version and those of the installed :data:`LIBRARIES`."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def command_line(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """The shell command that reproduces a run, from the repository root.

    ``argv[0]`` (a script path, or the module file when run with ``python -m``) becomes a path
    relative to the root, or ``-m module`` when ``__main__`` was started as a module; thread
    variables (:data:`THREAD_VARIABLES`) set in ``env`` go in front.
    """
    env = dict(os.environ) if env is None else env
    script = Path(argv[0]).resolve()
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.origin and Path(spec.origin).resolve() == script:
        head = ["python", "-m", spec.name]
    else:
        head = ["python", str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else argv[0]]
    prefix = [f"{k}={env[k]}" for k in THREAD_VARIABLES if k in env]
    return " ".join([*prefix, shlex.join([*head, *argv[1:]])])


def metadata(command: str) -> dict[str, Any]:
    """Where and when a result is measured: date (UTC), CPU, cores, the load average over the
    last 15 minutes as the bench ends (other work on the machine), versions, git, command."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return {
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "cpu": cpu_info(text),
        "cores": os.cpu_count() or 0,
        "load_15min": round(os.getloadavg()[2], 1),
        "versions": versions(),
        "git": git_version(),
        "command": command,
    }


def write_record(name: str, result: dict[str, Any], command: str, folder: Path) -> Path:
    """Write ``folder/NAME.json``: :func:`metadata` and ``result``; returns the path."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"result name {name!r}: lower-case letters, digits and _")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    entry = {"name": name, **metadata(command), "result": result}
    path.write_text(json.dumps(entry, indent=1, ensure_ascii=False) + "\n")
    print(f"recorded {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
          file=sys.stderr)  # fmt: skip
    return path


def record(
    name: str, result: dict[str, Any], argv: Sequence[str], folder: Path = RESULTS_DIR
) -> Path:
    """Record a bench's ``result`` (the JSON it prints) as ``docs/results/NAME.json``.

    Parameters
    ----------
    name : str
        File stem; also selects the renderer of docs/results.md.
    result : dict
        What the bench printed.
    argv : sequence of str
        The bench's ``sys.argv`` (becomes the reproducing command, see :func:`command_line`).
    folder : Path
        Where to write (default ``docs/results``).
    """
    return write_record(name, result, command_line(argv), folder)


def add_record_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """The benches' ``--record [NAME]`` flag (NAME defaults to the bench's own name)."""
    parser.add_argument(
        "--record",
        nargs="?",
        const=name,
        metavar="NAME",
        help=f"also write the result to docs/results/NAME.json (default {name}) with the date, "
        "CPU, versions, commit and this command (python -m bench.results renders them)",
    )


def record_command(name: str, command: list[str], folder: Path = RESULTS_DIR) -> int:
    """Run ``command`` (it prints one JSON object on stdout) and record its output."""
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        print(f"bench.results: {command[0]} exited with {proc.returncode}", file=sys.stderr)
        return proc.returncode
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        print(f"bench.results: the output is not one JSON object ({exc})", file=sys.stderr)
        return 2
    if not isinstance(result, dict):
        print("bench.results: the output is not a JSON object", file=sys.stderr)
        return 2
    write_record(name, result, shlex.join(command), folder)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from bench.results_render import render

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["record"]:
        ap = argparse.ArgumentParser(prog="python -m bench.results record")
        ap.add_argument("name")
        ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
        ap.add_argument("--results", type=Path, default=RESULTS_DIR)
        rec = ap.parse_args(args[1:])
        command = rec.command[1:] if rec.command[:1] == ["--"] else rec.command
        if not command:
            ap.error("a command to run is required")
        return record_command(rec.name, command, rec.results)
    ap = argparse.ArgumentParser(prog="python -m bench.results", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of the JSON files")
    ap.add_argument("--out", type=Path, default=RESULTS_MD, help="markdown file to write")
    opts = ap.parse_args(args)
    opts.out.write_text(render(opts.results))
    print(f"wrote {opts.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
