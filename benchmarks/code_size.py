"""What each module of a packed ``train_gpt.py`` costs, in bytes of the file.

The challenge counts the packed file (golfplan.core.export.packer: the modules a run reaches, shaken,
minified, ZPAQ-compressed, base-93-wrapped). For a configuration (default: ``studies/frontier.yaml`` on
``8xh100``, the record's) this prints the file's size and, per packed module, its source bytes,
its bytes after shaking and minifying, and its share of the file: how much smaller the file gets
without it (the file written with and without that module's entry).
Shares overlap (a module compresses better beside the others), so they sum to more than the file.

    python benchmarks/code_size.py [--profile 8xh100] [--config studies/frontier.yaml] [--plugins A,B]

With ``--timing`` it times the packer instead, in one process (so the ratios compare like with
like): a cold pack of the configuration's plugin set (empty caches, in the process and on disk), a
warm pack of each of ``--sets`` new sets whose modules the cold pack saw (the set with one plugin
left out, as a study's leave-one-out trial; the last from the disk cache alone, as a new process
packs), and repeats of the last one (in the process, and from the disk cache alone).

It also runs on an older checkout (``PYTHONPATH=OLD_CHECKOUT python benchmarks/code_size.py``):
where the packer has no shaker it packs whole modules, with that packer's own compressor.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="8xh100")
    ap.add_argument("--config", default=str(REPO / "studies" / "frontier.yaml"))
    ap.add_argument("--plugins", default="", help="plugins added to the config's (comma-separated)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--timing", action="store_true", help="time cold, warm and repeated packs instead")
    ap.add_argument("--sets", type=int, default=5, help="--timing: how many new (leave-one-out) sets to pack warm")
    args = ap.parse_args()

    try:  # the layout by pipeline stage
        from golfplan.core.export import packer, wrapper
    except ImportError:  # a checkout from before it (8148314), where the packer wrapped its program itself
        from golfplan.core import packer
        wrapper = packer
    from golfplan.core.config import load_spec
    from golfplan.core.hooks import apply_configure, resolve
    from golfplan.registry import Registry

    spec = load_spec(args.profile, args.config or None, plugins=args.plugins or None, sets=args.set)

    def configured(plugins: dict) -> tuple:
        techniques = Registry(plugin_paths=spec.plugin_paths).instantiate(plugins)
        return apply_configure(resolve(techniques), spec.config, spec.explicit), techniques

    if args.timing:
        names = list(spec.plugins)
        left_out = names[:: max(1, len(names) // max(args.sets, 1))][: args.sets]
        return timing(configured(spec.plugins), [(n, configured({k: v for k, v in spec.plugins.items() if k != n}))
                                                 for n in left_out])
    config, techniques = configured(spec.plugins)
    t0 = time.perf_counter()
    packed = packer.pack(config, techniques)
    pack_s = time.perf_counter() - t0
    program = wrapper.unpack(packed.code)
    roots = list(packer.ROOTS) + packer.technique_modules(techniques)
    modules, _ = packer.closure(roots)
    if hasattr(packer, "shaken_program"):
        sources, keep = packer.shaken_program(modules, roots, techniques)
        how = "shaken, minified, zpaq-5, base-93"
        table = {n: packer.minify(sources[n], modules[n].path, keep.get(n)) for n in sorted(sources)}
    else:
        sources = {n: m.source for n, m in modules.items()}
        how = "whole modules, minified, brotli-11, base85"
        table = {n: packer.minify(sources[n], modules[n].path) for n in sorted(sources)}

    def squeeze(text: str) -> int:
        data = text.encode("utf-8")
        if hasattr(wrapper, "wrap"):
            return len(wrapper.wrap(packer.compress_program(data)))
        import brotli

        return len(base64.b85encode(brotli.compress(data, quality=11)))

    def program_without(name: str) -> str:
        rest = {n: s for n, s in table.items() if n != name}
        packages = "{" + ",".join(repr(n) for n in sorted(rest) if modules[n].package) + "}"
        return packer.STUB.format(modules=repr(rest), packages=packages, baked=repr(packer.json.dumps(
            packed.baked, sort_keys=True, separators=(",", ":"))))

    full = squeeze(program_without(""))
    rows = []
    for name in table:
        rows.append((full - squeeze(program_without(name)), len(modules[name].source.encode()),
                     len(table[name].encode()), name))
    rows.sort(reverse=True)
    baked = len(packer.json.dumps(packed.baked, sort_keys=True, separators=(",", ":")))
    print(f"{args.config} on {args.profile}{' + ' + args.plugins if args.plugins else ''}: train_gpt.py "
          f"{len(packed.code):,} B ({how}; program {len(program):,} B; {len(table)} modules, "
          f"{sum(r[1] for r in rows):,} B of source; baked config + plugins {baked:,} B; packed in {pack_s:.1f}s)")
    print(f"third-party imports (requirements.txt): {', '.join(packed.third_party)}")
    if hasattr(packer, "compress_program"):
        import brotli

        z, b = len(packer.compress_program(program.encode())), len(brotli.compress(program.encode(), quality=11))
        print(f"the program compressed: zpaq-5 {z:,} B, brotli-11 {b:,} B (zpaq / brotli {z / b:.3f})")
    print(f"\n{'share of the file':>17} {'source':>8} {'minified':>9}  module")
    for share, src, mini, name in rows:
        print(f"{share:17,} {src:8,} {mini:9,}  {name}")
    core = sum(r[0] for r in rows if r[3].startswith("golfplan.core"))
    plugins = sum(r[0] for r in rows if r[3].startswith("golfplan.plugins"))
    print(f"\nshares: core modules {core:,} B, plugin modules {plugins:,} B (overlapping; the file is {full:,} B "
          f"measured here, {len(packed.code):,} B as packed)")
    return 0


def timing(full: tuple, new_sets: list[tuple[str, tuple]]) -> int:
    """Seconds of a cold pack of ``full``, then warm packs of ``new_sets`` (``(plugin left out,
    (config, techniques))``): all but the last from the process's caches, the last from the disk
    cache alone (as a new process packs), then repeats of the last. An empty cache folder of its own."""
    import os
    import tempfile

    from golfplan.core.export import packer

    def timed(config_techniques: tuple) -> tuple[float, int]:
        t0 = time.perf_counter()
        packed = packer.pack(*config_techniques)
        return time.perf_counter() - t0, len(packed.code)

    saved = os.environ.get("GOLFPLAN_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GOLFPLAN_CACHE"] = cache
        packer.clear_cache()
        try:
            cold, size = timed(full)
            print(f"cold pack (empty caches), {len(full[1])} plugins: {cold:.3f} s ({size:,} B)")
            warm = []
            for i, (name, config_techniques) in enumerate(new_sets):
                last = i == len(new_sets) - 1
                if last:
                    packer.clear_cache()
                seconds, size = timed(config_techniques)
                warm.append(seconds)
                print(f"warm pack of a new set (without {name}{', from the disk cache alone' if last else ''}): "
                      f"{seconds:.3f} s ({size:,} B)")
            again, _ = timed(new_sets[-1][1])
            packer.clear_cache()
            disk, _ = timed(new_sets[-1][1])
        finally:
            packer.clear_cache()
            os.environ.pop("GOLFPLAN_CACHE") if saved is None else os.environ.update(GOLFPLAN_CACHE=saved)
    print(f"repeat pack of the last set: {again:.4f} s in the process, {disk:.4f} s from the disk cache alone")
    print(f"warm / cold: {sum(warm) / len(warm) / cold:.3f} (mean of {len(warm)} new sets; the slowest "
          f"{max(warm) / cold:.3f}); repeat / cold: {again / cold:.4f} in the process, {disk / cold:.4f} from disk")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO)) if str(REPO) not in sys.path else None
    raise SystemExit(main())
