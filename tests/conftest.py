"""Shared fixtures: a session-wide dataset cache, tiny configs, one-call training, and the command
line in this process.

The suite runs under pytest-xdist (``-n auto``, one process a core): everything a test writes goes
under its ``tmp_path``, the dataset cache is built atomically (``golfplan.core.data.corpus.build``), and
tests that must not share the machine with each other (a kill -9, torchrun's processes, waits on
wall time) are marked ``@pytest.mark.xdist_group("alone")`` and run one after another on one worker
(``--dist loadgroup``).
"""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

# Every test (and every subprocess a test starts) shares one embedded-dataset cache.
_CACHE = os.environ.setdefault("GOLFPLAN_CACHE", str(Path(tempfile.gettempdir()) / "golfplan-test-cache"))
# One thread per process: tiny models gain nothing from more, and on a shared 2-core machine OpenMP
# threads spinning against other processes made a forward pass hundreds of times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core this process may run on (its affinity mask, as golfplan counts
    cores), never psutil's physical-core count (1 on a VM whose 2 vCPUs are one core's two threads)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # no affinity masks (macOS)
        return os.cpu_count() or 1
SHARED_TOKENIZERS = REPO.parent / "shared" / "data" / "tokenizers"


def tiny_config(**overrides):
    """The cpu profile shrunk for tests (4 layers, width 64, 30 steps, no time cap)."""
    from golfplan.core.config import load_spec, shrink

    return shrink(load_spec("cpu").config).replace(**overrides) if overrides else shrink(load_spec("cpu").config)


def run_tiny(plugins=None, techniques=None, **overrides):
    """Train the tiny config with ``plugins`` ({name: params}) or ready ``techniques``; returns the RunResult."""
    from golfplan.core.train.trainer import train
    from golfplan.registry import Registry

    if techniques is None:
        techniques = Registry().instantiate(plugins or {})
    return train(tiny_config(**overrides), techniques, log=lambda m: None)


@dataclass
class CliResult:
    """What ``golfplan ARGS`` ended with (the fields of ``subprocess.CompletedProcess`` the tests read)."""

    returncode: int
    stdout: str
    stderr: str


def golfplan_in_process(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> CliResult:
    """``golfplan ARGS`` through ``golfplan.cli.main`` in this process, its output captured: an error
    path costs no interpreter start and no torch import. The environment and the working directory are
    restored afterwards. One test per command still runs the real ``python -m golfplan`` process."""
    from golfplan.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors and --help
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def dataset():
    """The embedded dataset at vocab 1024 (built once per cache)."""
    from golfplan.core.data import corpus

    return corpus.build(1024, log=lambda m: None)


@pytest.fixture(scope="session")
def registry():
    from golfplan.registry import Registry

    return Registry()


@pytest.fixture
def sp1024_model():
    path = SHARED_TOKENIZERS / "fineweb_1024_bpe.model"
    if not path.is_file():
        pytest.skip("../shared/data/tokenizers not present")
    return path
