"""The cpu profile end to end: data build time (fresh cache), one `golfplan run` of the baseline,
and its ms/step, steps and val_bpb against an untrained model's.

    python benchmarks/cpu_run.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def main() -> int:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, GOLFPLAN_CACHE=cache)
        t0 = time.perf_counter()
        b = subprocess.run([sys.executable, "-m", "golfplan", "data", "build"], env=env, capture_output=True, text=True)
        build_wall = time.perf_counter() - t0
        meta = json.loads(b.stdout[b.stdout.index("{"):])
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "golfplan", "run", "--profile", "cpu", "--json", "--out", out,
                            "--set", "progress_bar=false"], env=env, capture_output=True, text=True)
        run_wall = time.perf_counter() - t0
        res = json.loads(r.stdout[r.stdout.index("{\n"):])
    print(f"data build: {meta['build_seconds']:.1f}s inside, {build_wall:.1f}s wall "
          f"({meta['text_bytes'] / 1e6:.2f} MB text -> {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens)")
    print(f"cpu run:    {run_wall:.1f}s wall incl. preflight; {res['steps']} steps at {res['ms_per_step']} ms/step "
          f"({res['tokens_per_s']:.0f} tokens/s)")
    print(f"val_bpb:    {res['val_bpb']:.4f} after the round trip (untrained {res['untrained_val_bpb']:.4f}); "
          f"artifact {res['artifact_bytes']:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
