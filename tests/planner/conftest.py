"""Planner test helpers: a tiny real config, a synthetic runner with known effects, planners on
a SQLite file in ``tmp_path``."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import pytest

from golfplan.planner.definition import StudyDef

REPO = Path(__file__).resolve().parents[2]

# a model that trains in well under a second a run on 2 cores (real training tests)
TINY = dict(num_layers=2, model_dim=64, train_seq_len=64, train_batch_tokens=1024,
            val_max_tokens=2048, val_batch_size=1024, iterations=40, warmdown_iters=8, warmup_steps=0,
            train_log_every=0, muon_momentum_warmup_steps=10)
TINY_SETS = [f"{k}={v}" for k, v in TINY.items()]


class Sim:
    """A runner with known effects: val_bpb = base + sum(effects of the plugins on) + N(0, noise),
    seeded by the job's seed, so repeats differ like real seeds and reruns are identical."""

    def __init__(self, effects=None, noise=0.001, base=2.5, artifact=None, sleep=0.0, fail=None, interactions=None):
        self.effects = effects or {}
        self.interactions = interactions or {}  # frozenset of plugins -> extra effect when all are on
        self.noise, self.base, self.sleep = noise, base, sleep
        self.artifact = artifact or {}  # plugin -> artifact bytes when it is on
        self.fail = fail or {}  # plugin -> failure reason
        self.calls = []

    def __call__(self, job):
        self.calls.append(job)
        if self.sleep:
            time.sleep(self.sleep)
        for p, reason in self.fail.items():
            if p in job.plugins:
                return {"status": "failed", "reason": reason}
        rng = random.Random(job.seed * 1_000_003 + sum(map(ord, "+".join(sorted(job.plugins)))))
        bpb = self.base + sum(v for p, v in self.effects.items() if p in job.plugins) + rng.gauss(0.0, self.noise)
        bpb += sum(v for s, v in self.interactions.items() if s <= set(job.plugins))
        size = max([1_000_000] + [v for p, v in self.artifact.items() if p in job.plugins])
        return {"status": "complete", "val_bpb": bpb, "val_loss": bpb * 0.69, "steps": 100, "ms_per_step": 10.0,
                "artifact_bytes": size}


def make_def(name="t", **kw) -> StudyDef:
    kw.setdefault("profile", "cpu")
    kw.setdefault("config", dict(TINY))
    kw.setdefault("checks", "none")
    return StudyDef(name=name, **kw)


_REGISTRIES: dict[tuple[str, ...], object] = {}


def registry_of(d: StudyDef):
    """The registry of ``d``'s plugins (built once per plugin path)."""
    from golfplan.registry import Registry

    key = tuple(d.plugin_path)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = Registry(plugin_paths=list(key))
    return _REGISTRIES[key]


def new_planner(d: StudyDef, storage, **kw):
    """A Planner as every caller builds one: the study's base RunSpec resolved once, its registry."""
    from golfplan.planner.resume import base_spec
    from golfplan.planner.study import Planner

    kw.setdefault("say", lambda m: None)
    return Planner(d, base_spec(d), registry_of(d), storage=storage, **kw)


@pytest.fixture
def make_planner(tmp_path):
    lines: list[str] = []

    def make(d: StudyDef, runner=None, storage=None, **kw):
        p = new_planner(d, storage or f"sqlite:///{tmp_path / 'golfplan.db'}", runner=runner,
                        out_dir=tmp_path / "runs", say=lines.append, **kw)
        p.open()
        return p

    make.lines = lines
    return make


def golfplan_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "golfplan", *args]


# A runner module for planner subprocesses (``--runner FILE:run``): known effects, a sleep taken
# from SIM_SLEEP, and one "start"/"end" line per run appended to SIM_LOG (pid, trial, seed).
SIM_RUNNER = '''
import os, random, time

EFFECTS = {"parallel": -0.05, "tidal": -0.02, "gqa": -0.01, "z_loss": 0.02}


def log(event, job):
    path = os.environ.get("SIM_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{event} {os.getpid()} {job.study} {job.trial} {job.seed}\\n")


def run(job):
    log("start", job)
    time.sleep(float(os.environ.get("SIM_SLEEP", "0")))
    rng = random.Random(job.seed * 1_000_003 + sum(map(ord, "+".join(sorted(job.plugins)))))
    bpb = 2.5 + sum(v for p, v in EFFECTS.items() if p in job.plugins) + rng.gauss(0.0, 0.001)
    if "tidal" in job.plugins:
        bpb += (job.plugins["tidal"]["warmup_frac"] - 0.3) ** 2
    log("end", job)
    return {"status": "complete", "val_bpb": bpb, "steps": 100, "ms_per_step": 10.0, "artifact_bytes": 1_000_000}
'''


@pytest.fixture
def sim_file(tmp_path):
    f = tmp_path / "sim_runner.py"
    f.write_text(SIM_RUNNER)
    return f


def log_events(path):
    """[(event, pid, study, trial, seed)] from a SIM_LOG file."""
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        event, pid, study, trial, seed = line.split()
        out.append((event, int(pid), study, int(trial), int(seed)))
    return out
