"""The house rules, checked: imports point down the layers and never circle; files stay short;
the hook reference is complete and its "Used by" lists match the registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "golfplan"
# core <- plugins <- registry <- check <- planner <- cli (golfplan/__init__ and __main__ sit on top)
LAYERS = {"core": 0, "plugins": 1, "registry": 2, "check": 3, "planner": 4, "cli": 5}
MAX_LINES = 450


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "golfplan":
        return None
    if len(parts) == 1:
        return -1  # golfplan/__init__.py holds only the version: every layer may read it
    if parts[1] == "__main__":
        return 99
    return LAYERS.get(parts[1])


def imports_of(path: Path) -> set[str]:
    """Every golfplan module ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("golfplan")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("golfplan"):
                continue
            for a in node.names:  # `from golfplan.core.data import corpus` imports the module golfplan.core.data.corpus
                sub = f"{base}.{a.name}"
                out.add(sub if (PKG.parent / Path(*sub.split("."))).with_suffix(".py").exists() else base)
    out.discard(here)
    return out


GRAPH = {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def test_every_import_points_down_the_layers():
    upward = []
    for mod, deps in GRAPH.items():
        for dep in deps:
            a, b = layer(mod), layer(dep)
            if a is not None and b is not None and b > a:
                upward.append(f"{mod} -> {dep}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = {m: {d for d in deps if d in GRAPH} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_plugins_import_only_core_and_the_planner_no_plugin():
    for mod, deps in GRAPH.items():
        if mod.startswith("golfplan.plugins."):
            assert all(d.startswith("golfplan.core") for d in deps), (mod, deps)
        if mod.startswith(("golfplan.planner", "golfplan.check", "golfplan.registry")):
            assert not any(d.startswith("golfplan.plugins.") for d in deps), (mod, deps)


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_files_stay_short_or_say_why(path):
    lines = path.read_text().splitlines()
    if len(lines) <= MAX_LINES:
        return
    opening = "\n".join(lines[:15]).lower()
    assert "long file:" in opening, (
        f"{path.relative_to(PKG)} has {len(lines)} lines (> {MAX_LINES}); split it or give the reason in its "
        f"opening comment ('Long file: ...')")


def test_every_hook_is_documented_and_its_used_by_list_matches_the_registry(registry):
    from golfplan.cli.catalog import implementers
    from golfplan.core.hooks import hook_reference

    builtin = {n for n in registry.names() if registry.origins[n] == "builtin"}
    users = implementers(registry)
    for h in hook_reference():
        assert h.phase and h.summary, f"hook {h.name} needs a section and a docstring"
        real = sorted(u for u in users[h.name] if u in builtin)
        assert sorted(h.used_by) == real, (
            f"hookspecs.{h.name}: the docstring says 'Used by: {', '.join(h.used_by) or '(none)'}', "
            f"the registry's plugins implementing it are {', '.join(real) or '(none)'}")


def test_the_readme_covers_every_hook():
    from golfplan.core.hooks import hook_reference

    readme = (PKG.parent / "README.md").read_text()
    missing = [h.name for h in hook_reference() if not re.search(rf"`{h.name}\b", readme)]
    assert not missing, f"README does not document hook(s): {', '.join(missing)}"
