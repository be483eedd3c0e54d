#!/usr/bin/env bash
# Fuzz the option, argument and certificate parsing of the native core (atheris; target
# fuzz/fuzz_options.py) for a bounded time, against a private mosquitto for the connected cases.
#
#   ./scripts/fuzz.sh            # 60 s
#   ./scripts/fuzz.sh 300        # 5 minutes
#   FUZZ_STRICT=1 ./scripts/fuzz.sh   # also stop on unexpected exception classes / dropped links
#   FUZZ_KNOWN=next_notice ./scripts/fuzz.sh 300   # step over a panic already reported
#
# The corpus is kept in target/fuzz/corpus (so later runs start where earlier ones stopped);
# crashing inputs go to target/fuzz/artifacts, the non-fatal oddities to target/fuzz/report.txt.
# Exit status: 0 when nothing crashed, libFuzzer's non-zero status otherwise.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$UMQTT_ROOT"

seconds="${1:-${FUZZ_SECONDS:-60}}"
case "$seconds" in
    '' | *[!0-9]*) umqtt_die "usage: scripts/fuzz.sh [SECONDS] (got '$seconds')" ;;
esac

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install build fuzz
umqtt_build  # incremental: fuzz what the source says, not an older build

out="$UMQTT_ROOT/target/fuzz"
mkdir -p "$out/corpus" "$out/artifacts"
: >"$out/report.txt"

port="$("$UMQTT_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
trap umqtt_stop_broker EXIT
umqtt_start_broker "$port"

umqtt_log "fuzzing for $seconds s (corpus $out/corpus)"
status=0
FUZZ_BROKER="127.0.0.1:$port" FUZZ_REPORT="$out/report.txt" \
    "$UMQTT_PY" fuzz/fuzz_options.py \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$out/corpus" || status=$?

if [ -s "$out/report.txt" ]; then
    umqtt_log "non-fatal findings (once per kind):"
    cat "$out/report.txt"
fi
if [ "$status" -ne 0 ]; then
    printf 'error: the fuzzer found a crash (exit status %s); input in %s\n' "$status" "$out/artifacts" >&2
    exit "$status"
fi
umqtt_log "fuzz OK: no crash in $seconds s"
