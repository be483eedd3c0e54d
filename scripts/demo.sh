#!/usr/bin/env bash
# Set everything up and run QuecPython's echo demo (examples/test.py), then a multi-file QuecPython
# project (examples/quecpython_project, through `python -m umqtt run`), against a private broker.
#
#   ./scripts/demo.sh                      # runs examples/test.py and examples/quecpython_project
#   ./scripts/demo.sh examples/*.py        # runs the given scripts, one after the other
#   ./scripts/demo.sh examples/quecpython_project   # a folder: its main.py, as the device runs it
#
# Steps: install mosquitto from Debian's packages if missing, create .venv, build and install umqtt
# into it (maturin develop --release), start mosquitto on 127.0.0.1:18830, run the script(s) with a
# 30 s timeout each, stop the broker (also on failure or Ctrl-C). Safe to run again.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

PORT=18830
TIMEOUT=30

case "${1:-}" in
    -h | --help)
        sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac

# Scripts to run, as absolute paths (relative ones are taken from the current directory). A folder
# is a device project: its main.py runs under `python -m umqtt run`, as the device runs it.
scripts=()
if [ "$#" -eq 0 ]; then
    scripts=("$UMQTT_ROOT/examples/test.py" "$UMQTT_ROOT/examples/quecpython_project")
else
    for arg in "$@"; do
        case "$arg" in
            /*) path="${arg%/}" ;;
            *) path="$PWD/${arg%/}" ;;
        esac
        [ -f "$path" ] || [ -f "$path/main.py" ] || umqtt_die "no such script or project: $arg"
        scripts+=("$path")
    done
fi

cd "$UMQTT_ROOT"

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install build
umqtt_build

trap umqtt_stop_broker EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
umqtt_start_broker "$PORT"

for script in "${scripts[@]}"; do
    name="${script#"$UMQTT_ROOT"/}"
    umqtt_log "running $name (timeout ${TIMEOUT} s)"
    status=0
    command=("$UMQTT_PY" "$script")
    if [ -d "$script" ]; then
        command=("$UMQTT_PY" -m umqtt run "$script/main.py")
    fi
    # --foreground keeps the script in the terminal's process group, so Ctrl-C reaches it.
    PYTHONUNBUFFERED=1 timeout --foreground -k 5 "$TIMEOUT" "${command[@]}" || status=$?
    case "$status" in
        0) umqtt_log "$name finished" ;;
        124 | 137) umqtt_die "$name did not finish within ${TIMEOUT} s" ;;
        *) umqtt_die "$name failed (exit status $status)" ;;
    esac
done
umqtt_log "demo OK"
