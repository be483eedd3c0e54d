#!/usr/bin/env bash
# Run every test: the Rust unit tests (cargo test, also the vendored rumqttc's own) and the Python
# suite (pytest).
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh -k reconnect    # arguments go to pytest
#
# Same setup as scripts/demo.sh (mosquitto, .venv, release build of the package), plus the test and
# lint tools from pyproject.toml's extras. The tests start their own brokers on free ports.
# Both suites run even if the first fails; the exit status is non-zero if either failed, and
# pytest's "no tests ran" (exit 5) counts as a failure.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

cd "$UMQTT_ROOT"

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install build test lint
umqtt_build

# Test binaries that embed Python need libpython at run time when the interpreter is a shared build.
libdir="$("$UMQTT_PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"
if [ -n "$libdir" ]; then
    export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

umqtt_log "cargo test"
cargo_status=0
cargo test || cargo_status=$?
umqtt_log "cargo test (the vendored rumqttc's own unit tests, with our patches)"
cargo test --locked --manifest-path vendor/rumqttc/Cargo.toml --features use-rustls-no-provider --lib \
    --target-dir target/rumqttc || cargo_status=$?

umqtt_log "pytest${*:+ $*}"
pytest_status=0
"$UMQTT_PY" -m pytest "$@" || pytest_status=$?

if [ "$pytest_status" -eq 5 ]; then
    printf 'error: pytest ran no tests (exit status 5); that counts as a failure\n' >&2
fi

result() {
    if [ "$1" -eq 0 ]; then echo "ok"; else echo "FAILED (exit status $1)"; fi
}
umqtt_log "cargo test: $(result "$cargo_status"); pytest: $(result "$pytest_status")"

if [ "$pytest_status" -ne 0 ]; then
    exit "$pytest_status"
fi
exit "$cargo_status"
