"""Shared fixtures: a session-wide dataset cache, tiny configs, and one-call training."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Every test (and every subprocess a test starts) shares one embedded-dataset cache.
_CACHE = os.environ.setdefault("GOLFPLAN_CACHE", str(Path(tempfile.gettempdir()) / "golfplan-test-cache"))
# One thread per process: tiny models gain nothing from more, and on a shared 2-core machine OpenMP
# threads spinning against other processes made a forward pass hundreds of times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_TOKENIZERS = REPO.parent / "shared" / "data" / "tokenizers"


def tiny_config(**overrides):
    """The cpu profile shrunk for tests (4 layers, width 64, 30 steps, no time cap)."""
    from golfplan.core.config import load_spec, shrink

    return shrink(load_spec("cpu").config).replace(**overrides) if overrides else shrink(load_spec("cpu").config)


def run_tiny(plugins=None, techniques=None, **overrides):
    """Train the tiny config with ``plugins`` ({name: params}) or ready ``techniques``; returns the RunResult."""
    from golfplan.core.trainer import train
    from golfplan.registry import Registry

    if techniques is None:
        techniques = Registry().instantiate(plugins or {})
    return train(tiny_config(**overrides), techniques, log=lambda m: None)


@pytest.fixture(scope="session")
def dataset():
    """The embedded dataset at vocab 1024 (built once per cache)."""
    from golfplan.core import corpus

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
