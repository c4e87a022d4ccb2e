"""The packer's tree shaker: what a run cannot reach is left out of the packed file, and nothing it
can reach is."""

from __future__ import annotations

import ast

from golfplan.core.export.packer import CATALOGUE
from golfplan.core.export.shake import kept_names, shake

CORE = '''
from dataclasses import dataclass
from golfplan.core.export.pack import PACKED

LIMIT = 3
UNUSED_CONSTANT = 4
print("module-level code always runs")


def used(x):
    return helper(x) + LIMIT


def helper(x):
    return x


def unused(x):
    return x


@dataclass
class Box:
    a: int
    b: int = 0

    def area(self):
        return self.a * self.b

    def perimeter(self):
        return 2 * (self.a + self.b)

    def __repr__(self):
        return "Box"


def build(configure, run_dir):
    if configure and not PACKED:
        configure_everything()
    if PACKED:
        label = "packed"
    else:
        label = "library"
    path = run_dir or ""
    return Box(1, 2).area(), label, path


def configure_everything():
    from pkg.heavy import slow

    return slow()


def needs_data(path):
    if not path:
        if PACKED:
            raise ValueError("no data")
        from pkg.heavy import build_data

        return build_data()
    return path
'''

HEAVY = '''
def slow():
    return 1


def build_data():
    return 2
'''

PLUGIN = '''
from torch import nn
from pkg.core import used, build, needs_data
from pkg.technique import Float, Technique, hookimpl


class Layer(nn.Module):
    def forward(self, x):
        return x

    def unused_helper(self):
        return 0


class Thing(Technique):
    name = "thing"
    summary = "a catalogue line"
    source_result = "what a record measured"
    params = {"rate": Float(0.5, 0.0, 1.0, help="a help text")}

    @hookimpl
    def on_step(self, model):
        return Layer(), used(build(True, None)) + needs_data("x")

    @hookimpl
    def configure(self, config):
        return {}
'''

TECHNIQUE = '''
def hookimpl(f):
    return f


def Float(default, low, high, help=""):
    return default


class Technique:
    name = ""
    summary = ""
'''

RUNNER = '''
from pkg.plugin import Thing


def run(hooks):
    hooks.pm.hook.on_step(model=None)
    t = Thing()
    return t.name, t.params
'''


def shaken(**extra):
    sources = {"pkg": ("", True), "pkg.core": (CORE, False), "pkg.heavy": (HEAVY, False),
               "pkg.plugin": (PLUGIN, False), "pkg.technique": (TECHNIQUE, False), "pkg.runner": (RUNNER, False)}
    return shake(sources, {"run", "Thing"}, ["pkg.runner", "pkg.plugin"], **extra)


def names(source: str) -> set[str]:
    tree = ast.parse(source)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def test_unreached_definitions_go_and_reached_ones_stay():
    out = shaken()
    core = names(out["pkg.core"])
    assert {"used", "helper", "LIMIT", "Box", "area", "__repr__", "build", "needs_data"} <= core
    assert not core & {"unused", "UNUSED_CONSTANT", "perimeter", "configure_everything"}
    assert "module-level code always runs" in out["pkg.core"]
    assert {"a", "b"} <= {n.target.id for n in ast.walk(ast.parse(out["pkg.core"])) if isinstance(n, ast.AnnAssign)}


def test_torch_calls_forward_and_pluggy_calls_only_hooks_someone_calls():
    plugin = names(shaken()["pkg.plugin"])
    assert {"Layer", "forward", "Thing", "on_step"} <= plugin  # on_step: the runner calls its hook
    assert not plugin & {"unused_helper", "configure"}  # nobody calls configure's hook here


def test_packed_is_true_inside_the_packed_file():
    core = shaken()["pkg.core"]
    assert "configure_everything" not in core and "'library'" not in core and "label = 'packed'" in core
    assert "run_dir or ''" in core  # a constant only decides a value where it leads: x or "" is not x
    assert "raise ValueError('no data')" in core and "build_data" not in core  # nothing after the raise


def test_a_module_only_dropped_code_imports_is_not_packed():
    assert "pkg.heavy" not in shaken()


def test_the_catalogue_is_left_out():
    plugin = shaken(catalogue=CATALOGUE)["pkg.plugin"]
    assert "a catalogue line" not in plugin and "what a record measured" not in plugin and "a help text" not in plugin
    assert "rate" in plugin and "name = 'thing'" in plugin
    technique = shaken(catalogue=CATALOGUE)["pkg.technique"]
    assert "summary" not in technique  # the base's default: nothing reads it any more


def test_kept_names_are_what_other_modules_and_strings_use():
    out = {k: v for k, v in shaken().items() if v}
    keep = kept_names(out, {"run"})
    assert {"used", "build", "needs_data", "Box"} <= keep["pkg.core"] and "run" in keep["pkg.runner"]
    assert "helper" not in keep["pkg.core"]  # only pkg.core reads it: the minifier may shorten it
    assert {"Layer", "Thing", "nn"} <= keep["pkg.plugin"]  # classes and imported names keep theirs


def test_a_packed_program_runs_with_its_module_names_shortened():
    """The shaken, minified modules (module-private names renamed) still import each other and run."""
    import sys
    import types

    from golfplan.core.export.packer import minify

    out = {k: v for k, v in shaken().items() if v and k != "pkg.plugin"}
    out["pkg.runner"] = "from pkg.core import used, build\ndef run():\n    return used(2), build(False, None)\n"
    keep = kept_names(out, {"run"})
    assert "def helper" not in minify(out["pkg.core"], "core.py", keep["pkg.core"])  # renamed
    saved = dict(sys.modules)
    try:
        for name in ("pkg", "pkg.technique", "pkg.core", "pkg.runner"):
            mod = sys.modules[name] = types.ModuleType(name)
            if name == "pkg":
                mod.__path__ = []
            else:
                exec(minify(out[name], name, keep[name]), mod.__dict__)
        assert sys.modules["pkg.runner"].run() == (5, (2, "packed", ""))
    finally:
        sys.modules.clear()
        sys.modules.update(saved)


def test_a_shake_over_cached_summaries_is_a_fresh_one_and_parses_only_what_it_has_not_seen(monkeypatch):
    """With a memo (values through JSON, as the packer's disk cache keeps them), a first shake parses
    each module once; a shake of a new set parses only the new module and the one whose kept part
    grew, and writes what a shake without a cache writes."""
    import json

    from golfplan.core.export import shake as shaker

    store: dict[str, str] = {}

    def memo(key, compute):
        if key not in store:
            store[key] = json.dumps(compute())
        return json.loads(store[key])

    parsed: list[str] = []
    real = shaker._parsed
    monkeypatch.setattr(shaker, "_parsed", lambda source: parsed.append(source) or real(source))
    sources = {"pkg": ("", True), "pkg.core": (CORE, False), "pkg.heavy": (HEAVY, False),
               "pkg.plugin": (PLUGIN, False), "pkg.technique": (TECHNIQUE, False), "pkg.runner": (RUNNER, False)}
    first = shake(sources, {"run", "Thing"}, ["pkg.runner", "pkg.plugin"], CATALOGUE, memo)
    assert len(parsed) == len(sources) and first == shake(sources, {"run", "Thing"}, ["pkg.runner", "pkg.plugin"],
                                                          CATALOGUE)
    extra = "from pkg.core import unused\n\n\ndef extra():\n    return unused(1)\n"
    sources["pkg.extra"] = (extra, False)
    parsed.clear()
    second = shake(sources, {"run", "Thing", "extra"}, ["pkg.runner", "pkg.plugin", "pkg.extra"], CATALOGUE, memo)
    assert sorted(parsed) == sorted([extra, CORE])  # the new module, and pkg.core: `unused` stays now
    assert "def unused" in second["pkg.core"] and second["pkg.plugin"] == first["pkg.plugin"]
    parsed.clear()
    assert second == shake(sources, {"run", "Thing", "extra"}, ["pkg.runner", "pkg.plugin", "pkg.extra"], CATALOGUE)
