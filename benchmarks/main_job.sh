#!/usr/bin/env bash
# The README's main job as a new user meets it, timed: a fresh clone, then the README's first
# command exactly as written there (read from the clone's README.md: venv, torch, the project, the
# 20-trial study), each of its `&&` parts timed, then the total.
#
#   bash benchmarks/main_job.sh [--from REPO] [--warm] [--install-only] [--serial-too] [-- STUDY_ARGS...]
#
#   --from REPO   what to clone (default: this checkout: its committed HEAD, as a fresh clone has it)
#   --warm        keep this machine's pip cache and embedded-dataset cache (default: empty ones in the
#                 scratch folder, as on a new machine; packages still come from the configured index)
#   --install-only  stop before the study (time the clone, venv and installs alone)
#   --serial-too  then run the same study again with `--jobs 1` in a folder beside it, time it, and
#                 compare the two studies trial by trial (params and val_bpb must be identical)
#   STUDY_ARGS    appended to the study command (e.g. `--jobs 1` to time the trials one at a time)
#
# Target (issue 18): at most 6 minutes on CI's kind (2 cores, no GPU). Run it on a quiet machine: a
# busy one measures the other load. Everything is left in the scratch folder it prints.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
warm=0
install_only=0
serial_too=0
study_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --from) src="$2"; shift 2 ;;
    --warm) warm=1; shift ;;
    --install-only) install_only=1; shift ;;
    --serial-too) serial_too=1; shift ;;
    --) shift; study_args=("$@"); break ;;
    *) echo "main_job.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
if [ "$warm" = 0 ]; then
  export PIP_CACHE_DIR="$work/pip-cache" GOLFPLAN_CACHE="$work/golfplan-cache"
fi
now() { date +%s.%N; }
report=()
timed() {  # timed LABEL COMMAND: run COMMAND in this shell (an activated venv stays active), note its time
  local label="$1" t0 t1
  shift
  echo "+ $*" >&2
  t0=$(now)
  eval "$@"
  t1=$(now)
  report+=("$(python3 -c "print(f'{$t1 - $t0:8.1f} s  $label')")")
}

start=$(now)
timed "git clone" git clone -q "\"$src\"" "\"$work/golfplan\""
cd "$work/golfplan"

# The README's first command, split at its `&&` (its first ```bash block; tests/test_readme.py keeps
# it there), STUDY_ARGS appended to its last part, the study.
mapfile -t parts < <(python3 - <<'PY'
import re
block = re.findall(r"```bash\n(.*?)```", open("README.md").read(), re.S)[0]
command = " ".join(line.strip() for line in block.strip().splitlines())
for part in command.split(" && "):
    print(part.strip())
PY
)
last=$((${#parts[@]} - 1))
for i in "${!parts[@]}"; do
  part="${parts[$i]}"
  if [ "$i" = "$last" ]; then
    [ "$install_only" = 1 ] && break
    [ ${#study_args[@]} -gt 0 ] && part="$part ${study_args[*]}"
  fi
  timed "$part" "$part"
done
end=$(now)
if [ "$serial_too" = 1 ] && [ "$install_only" = 0 ]; then
  mkdir -p "$work/serial" && cd "$work/serial"
  timed "the same study, --jobs 1" "${parts[$last]} ${study_args[*]:-} --jobs 1"
  cd "$work/golfplan"
  python3 - "$work/golfplan/golfplan.db" "$work/serial/golfplan.db" <<'PY'
import sys
import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
side, serial = ([t for t in optuna.load_study(study_name=None, storage=f"sqlite:///{db}").trials] for db in sys.argv[1:])
same = 0
for a, b in zip(side, serial):
    ok = a.params == b.params and a.value == b.value
    same += ok
    print(f"  trial {a.number:2d}: side by side {a.value}  one at a time {b.value}  {'same' if ok else 'DIFFERENT'} "
          f"{a.user_attrs.get('label', '')}")
print(f"{same} of {len(side)} trials identical (params and val_bpb); {len(side)} and {len(serial)} trials")
PY
fi

echo
echo "main job from a fresh clone ($( [ "$warm" = 1 ] && echo "warm caches" || echo "empty pip and data caches" )):"
printf '%s\n' "${report[@]}"
python3 -c "print(f'{$end - $start:8.1f} s  total ({($end - $start) / 60:.1f} min)')"
echo "(clone, venv, study, runs and reports left in $work)"
