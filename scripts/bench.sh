#!/usr/bin/env bash
# Benchmark umqtt against paho-mqtt (and gmqtt, when it is installed in .venv).
#
#   ./scripts/bench.sh                # every scenario: about 1.5 minutes on 2 quiet cores
#   ./scripts/bench.sh --quick        # smaller counts: about 30 s
#   ./scripts/bench.sh --repeat 3     # medians of 3 runs
#   ./scripts/bench.sh --only rtt,conn --libs umqtt,paho
#
# Same setup as scripts/test.sh (mosquitto, .venv, the test extra for paho-mqtt, a release build
# of the package), then benches/run.py, which starts its own mosquitto on a free port, prints a
# Markdown table and writes benches/results/latest.json. Arguments go to benches/run.py (--help).
# Not part of the test suite: it passes or fails nothing.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

cd "$UMQTT_ROOT"

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install build test
umqtt_build

if ! "$UMQTT_PY" -c 'import gmqtt' >/dev/null 2>&1; then
    umqtt_log "gmqtt is not installed: benchmarking umqtt and paho-mqtt only (.venv/bin/pip install gmqtt to add it)"
fi

umqtt_log "benches/run.py${*:+ $*}"
exec "$UMQTT_PY" benches/run.py "$@"
