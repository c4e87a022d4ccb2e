#!/usr/bin/env bash
# The README's main job, timed end to end in a scratch folder (fresh study, warm data cache):
#   golfplan study --plugins tidal,parallel,gqa --trials 20
# Prints the study's own summary and the wall time. Target: under 10 minutes on 2 CPU cores.
set -euo pipefail
work=$(mktemp -d)
cd "$work"
start=$(date +%s.%N)
golfplan study --plugins tidal,parallel,gqa --trials 20 "$@" 2>&1 | tail -n 40
end=$(date +%s.%N)
python3 -c "print(f'main job wall time: {($end - $start):.0f} s')"
echo "(study, runs and reports left in $work)"
