"""Reference commands: ``golfplan plugins`` (the techniques), ``golfplan hooks`` (the hooks a
technique can implement) and ``golfplan config`` (every config key, resolved for a profile)."""

from __future__ import annotations

import argparse
import json
import sys

from golfplan.cli.options import EXIT_OK, add_plugin_path, add_spec_options, spec_from_args
from golfplan.core.errors import GolfplanError


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_plugins_parser(sub)
    h = sub.add_parser("hooks", help="every hook a technique can implement: phase, arguments, who uses it",
                       description="The hooks of golfplan/core/hookspecs.py, with the plugins that implement them.")
    h.add_argument("name", nargs="?", help="one hook in full")
    h.add_argument("--json", action="store_true", help="machine-readable output")
    add_plugin_path(h)
    h.set_defaults(func=cmd_hooks)
    c = sub.add_parser("config", help="every config key with its value for a profile (and --config/--set)",
                       description="The resolved config: every key, its value and the baseline's default.")
    add_spec_options(c)
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_config)


def add_plugins_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list the techniques", description="List the registered techniques.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="with 'show': the plugin to describe")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_plugin_path(p)
    p.set_defaults(func=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    from golfplan.registry import Registry

    reg = Registry(plugin_paths=args.plugin_path)
    if args.action == "show":
        if not args.name:
            raise GolfplanError("plugins show needs a NAME")
        cls = reg.get(args.name)
        info = cls.info() | {"origin": reg.origins[cls.name], "doc": (sys.modules[cls.__module__].__doc__ or "").strip()}
        if args.json:
            print(json.dumps(info, indent=2))
            return EXIT_OK
        print(f"{info['name']}: {info['summary']}")
        print(f"  slot:          {', '.join(info['slot']) or '-'}")
        print(f"  compile-safe:  {'yes' if info['compile_safe'] else 'no: ' + (info['unsafe_reason'] or '')}")
        if info["conflicts"]:
            print(f"  conflicts:     {', '.join(info['conflicts'])}")
        if info["requires"]:
            print(f"  requires:      {', '.join(info['requires'])}")
        print("  params:" + ("" if cls.params else "        (none)"))
        for k, v in cls.params.items():
            print(f"    {k} = {v.describe()}" + (f"  {v.help}" if v.help else ""))
        if info["seed_refs"] or not info["source"]:
            print(f"  seed refs:     {', '.join(info['seed_refs']) or '-'}")
            print(f"  seed result:   {info['seed_result'] or '-'}")
        if info["source"]:
            print(f"  source:        {info['source']}")
            print(f"  measured there: {info['source_result'] or '-'}")
        print(f"  origin:        {info['origin']} ({info['module']})")
        if info["doc"]:
            print()
            print("\n".join("  " + line for line in info["doc"].splitlines()))
        return EXIT_OK
    infos = [reg.get(n).info() | {"origin": reg.origins[n]} for n in reg.names()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return EXIT_OK
    rows = [(i["name"], ",".join(i["slot"]) or "-", "yes" if i["compile_safe"] else "NO",
             ", ".join(f"{k}={v['default']}" for k, v in i["params"].items()) or "-", i["summary"]) for i in infos]
    heads = ("name", "slot", "compile", "params", "summary")
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h) for c, h in enumerate(heads)]
    widths[3] = min(widths[3], 36)
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip())
    for r in rows:
        cells = list(r)
        if len(cells[3]) > widths[3]:
            cells[3] = cells[3][: widths[3] - 1] + "…"
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    print(f"\n{len(rows)} plugins. `golfplan plugins show NAME` for one in full.")
    return EXIT_OK


# ---- golfplan data ----------------------------------------------------------------


def implementers(registry) -> dict[str, list[str]]:
    """{hook name: plugins whose class implements it}, from the registry."""
    from golfplan.core.hooks import hook_reference

    names = {h.name for h in hook_reference()}
    out: dict[str, list[str]] = {n: [] for n in names}
    for pname in registry.names():
        cls = registry.get(pname)
        for attr in dir(cls):
            fn = getattr(cls, attr, None)
            if attr in names and getattr(fn, "golfplan_impl", None) is not None:
                out[attr].append(pname)
    return out


def cmd_hooks(args: argparse.Namespace) -> int:
    from golfplan.core.errors import closest
    from golfplan.core.hooks import hook_reference
    from golfplan.registry import Registry

    hooks = hook_reference()
    users = implementers(Registry(plugin_paths=args.plugin_path))
    if args.name:
        match = [h for h in hooks if h.name == args.name]
        if not match:
            raise GolfplanError(f"unknown hook '{args.name}'{closest(args.name, [h.name for h in hooks])}")
        hooks = match
    if args.json:
        print(json.dumps([{"name": h.name, "phase": h.phase, "args": h.args, "firstresult": h.firstresult,
                           "summary": h.summary, "doc": h.doc, "implemented_by": users.get(h.name, [])}
                          for h in hooks], indent=2))
        return EXIT_OK
    if args.name:
        h = hooks[0]
        print(f"{h.signature()}{'   (first result wins)' if h.firstresult else ''}")
        print(f"  phase:          {h.phase}")
        print(f"  implemented by: {', '.join(users.get(h.name, [])) or '-'}")
        print()
        print("\n".join("  " + line for line in h.doc.splitlines()))
        return EXIT_OK
    phase = None
    for h in hooks:
        if h.phase != phase:
            phase = h.phase
            print(f"\n{phase}:")
        first = " [first result]" if h.firstresult else ""
        print(f"  {h.signature()}{first}")
        print(f"      {h.summary}")
        print(f"      implemented by: {', '.join(users.get(h.name, [])) or '-'}")
    print(f"\n{len(hooks)} hooks. `golfplan hooks NAME` for one in full; golfplan/core/hookspecs.py is the source.")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from golfplan.core.config import Config

    spec = spec_from_args(args)
    base = Config()
    rows = [(k, v, getattr(base, k)) for k, v in spec.config.to_dict().items()]
    if args.json:
        print(json.dumps({"profile": spec.profile, "plugins": spec.plugins,
                          "config": {k: v for k, v, _ in rows}}, indent=2))
        return EXIT_OK
    print(f"profile {spec.profile}" + (f", plugins {', '.join(spec.plugins)}" if spec.plugins else ""))
    width = max(len(k) for k, _, _ in rows)
    for key, value, default in rows:
        note = "" if value == default else f"   (baseline: {default!r})"
        print(f"  {key:<{width}}  {value!r}{note}")
    return EXIT_OK
