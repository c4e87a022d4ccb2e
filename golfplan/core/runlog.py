"""A run's two logs: ``train.log`` in the challenge's text format, for people and their scripts,
and ``events.jsonl``, one JSON object per event, for programs (the planner follows it).

Events (every one has ``event`` and ``t``, seconds since the run started):

    start      versions (python, torch, numpy, ... and golfplan's git revision: what ``golfplan
               export`` writes into submission.json), plugins, world_size, threads, device,
               compile, params
    train      step, train_loss, train_time_ms
    val        step, val_loss, val_bpb, train_time_ms, final (true for the last one before export)
    stop       step, train_time_ms, capped_by (steps | wallclock)
    calibration seconds, train_plus_calibration_s (the calibrate hooks, charged to the training clock)
    export     format, model_bytes, code_bytes, artifact_bytes
    result     the whole RunResult (status, failure kind, reason, val_bpb, ...), always last
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from golfplan.core.export.pack import PACKED

EVENTS_FILE = "events.jsonl"
TEXT_LOG = "train.log"


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Every complete event line of an ``events.jsonl`` (a half-written last line is skipped)."""
    out = []
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunLog:
    """Rank 0's logs: ``train.log``, ``events.jsonl``, and the console (above the progress bar) or a
    callback. Other ranks log nothing."""

    def __init__(self, master: bool, run_dir: Path | None, sink: Callable[[str], None] | None,
                 stream: Any = None) -> None:
        self.master, self.sink, self.bar = master, sink, None
        self.stream = stream  # the console: standard output unless given (``--json`` gives standard error)
        self.t0 = time.perf_counter()
        self.versions: dict[str, str] = {}  # set by write_header; the start event carries them
        write = master and run_dir is not None
        self.file = open(run_dir / TEXT_LOG, "a") if write else None
        self.events = open(run_dir / EVENTS_FILE, "a") if write else None

    def __call__(self, msg: str) -> None:
        if not self.master:
            return
        if self.file:
            self.file.write(msg + "\n")
            self.file.flush()
        if self.sink is not None:
            self.sink(msg)
        elif self.bar is not None:
            self.bar.write(msg, file=self.stream or sys.stdout)
        else:
            print(msg, file=self.stream or sys.stdout, flush=True)

    def event(self, name: str, **fields: Any) -> None:
        if not self.events:
            return
        record = {"event": name, "t": round(time.perf_counter() - self.t0, 3), **fields}
        self.events.write(json.dumps(record, default=str) + "\n")
        self.events.flush()

    def close(self) -> None:
        for f in (self.file, self.events):
            if f:
                f.close()
        self.file = self.events = None


def versions() -> dict[str, str]:
    """The run's library versions (and golfplan's git revision, outside a packed file)."""
    import numpy
    import pluggy
    import sentencepiece
    import torch

    import golfplan

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "sentencepiece": sentencepiece.__version__, "pluggy": pluggy.__version__, "golfplan": golfplan.__version__}
    if PACKED:  # a packed train_gpt.py is not in a checkout
        return out
    try:
        where = Path(golfplan.__file__).parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=where, capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            out["git"] = rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def write_header(log: RunLog, config: Any, techniques: Sequence[Any], world_size: int, eager: bool) -> None:
    """``train.log``'s header; keeps the versions on ``log`` for the start event."""
    import yaml

    log.versions = versions()
    log("# golfplan run")
    log("# versions: " + json.dumps(log.versions))
    log("# plugins: " + (", ".join(repr(t) for t in techniques) or "(none: the baseline)"))
    if eager:
        log("# mode: eager (compile-unsafe plugins allowed with --allow-eager)")
    log(f"# world_size: {world_size}")
    log("# config:\n" + "\n".join("#   " + line for line in yaml.safe_dump(config.to_dict(), sort_keys=False).splitlines()))
