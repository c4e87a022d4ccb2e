"""Every registered technique, parametrized: it builds, trains a few steps with finite falling
loss, and its ``compile_safe`` declaration agrees with a real fullgraph trace. A new plugin is
covered automatically; a builtin plugin without a focused test in tests/plugins fails the suite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from golfplan.core.config import shrink
from golfplan.core.hooks import apply_configure, resolve
from golfplan.core.train.trainer import train
from golfplan.check import CheckFailed, trace_techniques
from golfplan.registry import Registry, combination_problems
from tests.conftest import run_tiny, tiny_config

REGISTRY = Registry()
NAMES = REGISTRY.names()
PLUGIN_TESTS = Path(__file__).parent / "plugins"


def plugins_for(name: str) -> dict[str, dict]:
    cls = REGISTRY.get(name)
    return {**{req: {} for req in cls.requires}, name: {}}


@pytest.mark.parametrize("name", NAMES)
def test_plugin_trains_and_its_compile_declaration_matches_a_trace(name, dataset):
    cls = REGISTRY.get(name)
    techniques = REGISTRY.instantiate(plugins_for(name))
    # configure as a run does, then shrink as the preflight does (width=640 trains at test size)
    config = shrink(apply_configure(resolve(techniques), tiny_config(allow_eager=True)), steps=15)
    try:
        trace_techniques(config, techniques)
        traced, why = True, ""
    except CheckFailed as e:
        traced, why = False, str(e)
    assert traced == cls.compile_safe, (
        f"{name} declares compile_safe={cls.compile_safe} but the trace {'passed' if traced else 'failed: ' + why}")
    result = train(config, techniques, log=lambda m: None, configure=False)
    assert result.status == "complete", f"{name}: {result.reason}"
    assert result.last_train_loss < result.first_train_loss


@pytest.mark.parametrize("name", NAMES)
def test_plugin_metadata_is_complete(name):
    cls = REGISTRY.get(name)
    assert cls.summary and (cls.seed_refs or cls.source), (
        f"{name} needs a summary and the seed IDs it reproduces or the source (record) it comes from")
    assert not cls.source or cls.source_result, f"{name} names its source: say what was measured there"
    assert cls.compile_safe or cls.unsafe_reason, f"{name} is not compile-safe: say why (unsafe_reason)"
    for req in (*cls.requires, *cls.conflicts):
        assert req in NAMES, f"{name} names unknown plugin '{req}'"
    for pname, p in cls.params.items():
        assert p.validate(pname, p.default) == p.default


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY.origins[n] == "builtin"])
def test_every_builtin_plugin_has_a_focused_test(name):
    text = "\n".join(f.read_text() for f in PLUGIN_TESTS.glob("test_*.py"))
    cls = REGISTRY.get(name)
    assert re.search(rf"\b{name}\b", text) or re.search(rf"\b{cls.__name__}\b", text), (
        f"no focused test in tests/plugins mentions plugin '{name}' or its class {cls.__name__}")


def test_two_plugins_in_one_slot_are_refused_naming_both():
    by_slot: dict[str, list[str]] = {}
    for n in NAMES:
        for s in REGISTRY.get(n).slots():
            by_slot.setdefault(s, []).append(n)
    shared = {s: ns for s, ns in by_slot.items() if len(ns) > 1}
    assert "lr_schedule" in shared
    for slot, names in shared.items():
        a, b = names[:2]
        problems = combination_problems(REGISTRY.classes([a, b]))
        assert any(a in p and b in p and slot in p for p in problems), (slot, problems)


def test_plugins_from_different_slots_combine(dataset):
    combo = {"tidal": {}, "parallel": {}, "gqa": {}}
    assert not combination_problems(REGISTRY.classes(combo))
    assert run_tiny(plugins=combo, iterations=10).status == "complete"


def test_plugins_json_lists_every_technique():
    out = subprocess.run([sys.executable, "-m", "golfplan", "plugins", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    assert set(listed) == set(NAMES)
    assert listed["tidal"]["slot"] == ["lr_schedule"] and listed["tidal"]["params"]["warmup_frac"]["default"] == 0.382
