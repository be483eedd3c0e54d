#!/usr/bin/env bash
# Benchmark umqtt: the blocking client against paho-mqtt (and gmqtt), umqtt.aio against gmqtt and
# aiomqtt, beside the broker's own cap (mosquitto_pub → mosquitto_sub).
#
#   ./scripts/bench.sh                # every scenario: about 4 minutes on 2 quiet cores
#   ./scripts/bench.sh --quick        # smaller counts: about 1 minute
#   ./scripts/bench.sh --repeat 3     # medians of 3 runs
#   ./scripts/bench.sh --only rtt,conn --libs umqtt,paho
#
# Same setup as scripts/test.sh (mosquitto and mosquitto-clients, .venv, the test extra for
# paho-mqtt, a release build of the package), plus the bench extra (gmqtt, aiomqtt); then
# benches/run.py, which starts its own mosquitto on a free port, prints the Markdown tables and
# writes benches/results/latest.json. Arguments go to benches/run.py (--help).
# Not part of the test suite: it passes or fails nothing.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

cd "$UMQTT_ROOT"

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install build test bench
umqtt_build

umqtt_log "benches/run.py${*:+ $*}"
exec "$UMQTT_PY" benches/run.py "$@"
