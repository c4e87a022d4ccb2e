"""The packed ``train_gpt.py``'s entry point: train the configuration baked into it.

:func:`run_packed` reads the challenge's environment variables into the baked configuration
(:func:`golfplan.core.export.pack.env_overrides`: ``DATA_PATH``, ``TOKENIZER_PATH``, ``SEED``, ``RUN_ID``
and every config key under its upper-case name) and trains exactly as ``golfplan run --spec``
would, logging in the challenge's format (to the console and to ``logs/$RUN_ID.txt``) and writing
the run's files (the artifact ``final_model.<format>.ptz``, ``train.log``, ``events.jsonl``,
``result.json``) in the working directory, where the baseline writes its artifact. Under
``torchrun`` it trains data-parallel, as ``golfplan run`` does.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import uuid
from pathlib import Path

from golfplan.core.export import pack


def run_packed(baked: str, path: str) -> int:
    """The packed file's ``main``: train the baked configuration; exit status 0 when complete."""
    pack.PACKED_FILE = os.path.abspath(path)  # code_size: this file's own length
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the ``golfplan`` command does
    data = json.loads(baked)
    from golfplan.core.config import Config
    from golfplan.core.train.runtime import is_rank0, leave_distributed, torchrun_env
    from golfplan.core.train.trainer import train

    config = pack.default_data(Config(**data["config"]).replace(**pack.env_overrides()))
    techniques = [getattr(importlib.import_module(module), cls)(**params) for module, cls, params in data["plugins"]]
    logfile = Path("logs") / f"{os.environ.get('RUN_ID') or uuid.uuid4()}.txt"
    if is_rank0():
        logfile.parent.mkdir(parents=True, exist_ok=True)
        print(logfile, flush=True)

    def log(msg: str) -> None:  # called on rank 0 only
        print(msg, flush=True)
        with open(logfile, "a", encoding="utf-8") as f:
            print(msg, file=f)

    # configure=False: the baked config is the one the plugins' ``configure`` hooks already made
    result = train(config, techniques, run_dir=Path("."), configure=False, log=log)
    if result.status != "complete" and is_rank0():
        print(f"run {result.status}: {result.reason}", file=sys.stderr)
    code = 0 if result.status == "complete" else 1
    if torchrun_env() is not None:
        leave_distributed(code)
    return code
