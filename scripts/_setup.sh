# shellcheck shell=bash
# Shared setup for every script in scripts/ (demo, test, lint, typecheck, bench, fuzz, audit,
# package-smoke). Source it, do not run it.
#
# Everything here is idempotent: a second run only checks what the first one did.
# Environment overrides:
#   PYTHON  the interpreter that creates .venv (default: python3; must be >= 3.9)

UMQTT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UMQTT_VENV="$UMQTT_ROOT/.venv"
UMQTT_PY="$UMQTT_VENV/bin/python"
# The interpreter that creates .venv, looked up before .venv/bin goes on PATH.
UMQTT_BASE_PYTHON="$(command -v "${PYTHON:-python3}" || true)"

# Build tools (maturin, cargo via pyo3's build script) use the venv's interpreter.
export VIRTUAL_ENV="$UMQTT_VENV"
export PATH="$UMQTT_VENV/bin:$PATH"
# One interpreter for every cargo invocation (maturin, clippy, cargo test), so pyo3 is not rebuilt
# each time a different script runs.
export PYO3_PYTHON="$UMQTT_PY"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# mosquitto lives in /usr/sbin, which is not on a normal user's PATH.
case ":$PATH:" in
    *:/usr/sbin:*) ;;
    *) export PATH="$PATH:/usr/sbin" ;;
esac

umqtt_log() {
    printf '==> %s\n' "$*"
}

umqtt_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Run every check, remember which failed; umqtt_checks_done NAME then reports and sets the status.
UMQTT_FAILED=()
umqtt_check() {
    umqtt_log "$*"
    "$@" || UMQTT_FAILED+=("$*")
}

umqtt_checks_done() {
    if [ "${#UMQTT_FAILED[@]}" -ne 0 ]; then
        printf 'error: failed: %s\n' "${UMQTT_FAILED[@]}" >&2
        exit 1
    fi
    umqtt_log "$1 OK"
}

# Run a command as root: directly when we are root, else through sudo.
umqtt_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        umqtt_die "need root to run '$*' (not root, and sudo is not installed)"
    fi
}

# What a fresh Debian machine lacks for building and testing, installed when missing: mosquitto and
# mosquitto-clients, the proxies the transport tests go through (tinyproxy: HTTP CONNECT;
# microsocks: SOCKS5), Python's venv module and headers (pyo3 links libpython for `cargo test`), a C
# compiler (ring), and a Rust toolchain with rustfmt and clippy (rustup, minimal profile).
umqtt_ensure_system() {
    local packages=()
    command -v mosquitto >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1 ||
        packages+=(mosquitto mosquitto-clients)
    command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || packages+=(tinyproxy)
    command -v microsocks >/dev/null 2>&1 || packages+=(microsocks)
    if [ -n "$UMQTT_BASE_PYTHON" ]; then
        "$UMQTT_BASE_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
        "$UMQTT_BASE_PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
            packages+=(python3-dev)
    else
        packages+=(python3 python3-venv python3-dev)
    fi
    command -v cc >/dev/null 2>&1 || packages+=(build-essential)
    command -v cargo >/dev/null 2>&1 || command -v curl >/dev/null 2>&1 || packages+=(curl ca-certificates)
    if [ "${#packages[@]}" -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 ||
            umqtt_die "missing: ${packages[*]}, and apt-get is not there to install them: install them yourself"
        umqtt_log "installing ${packages[*]} (apt-get)"
        umqtt_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        umqtt_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
        UMQTT_BASE_PYTHON="$(command -v "${PYTHON:-python3}" || true)"
    fi
    command -v mosquitto >/dev/null 2>&1 || umqtt_die "mosquitto still not found after apt-get install"
    umqtt_log "mosquitto: $(command -v mosquitto)"
    umqtt_ensure_rust
}

umqtt_ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        umqtt_log "installing Rust (rustup, minimal profile with rustfmt and clippy)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --component rustfmt,clippy ||
            umqtt_die "could not install Rust with rustup: install it from https://rustup.rs"
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 ||
            umqtt_die "cargo fmt / cargo clippy are missing and rustup is not there to add them"
        umqtt_log "adding rustfmt and clippy (rustup component add)"
        rustup component add rustfmt clippy
    fi
    umqtt_log "rust: $(cargo --version)"
}

# Create .venv when it is missing or broken; reuse it otherwise.
umqtt_ensure_venv() {
    local base="$UMQTT_BASE_PYTHON"
    if [ -x "$UMQTT_PY" ] &&
        "$UMQTT_PY" -c 'import sys, pip; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1; then
        umqtt_log "virtualenv: .venv ($("$UMQTT_PY" -c 'import platform; print(platform.python_version())'))"
        return 0
    fi
    [ -n "$base" ] || umqtt_die "${PYTHON:-python3} not found: install Python >= 3.9"
    "$base" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
        umqtt_die "$base is Python $("$base" -c 'import platform; print(platform.python_version())'), need >= 3.9"
    umqtt_log "creating virtualenv .venv with $base"
    if ! "$base" -m venv --clear "$UMQTT_VENV"; then
        umqtt_die "'$base -m venv' failed. On Debian/Ubuntu install the venv module: sudo apt-get install python3-venv"
    fi
    [ -x "$UMQTT_VENV/bin/pip" ] ||
        umqtt_die "the new .venv has no pip. On Debian/Ubuntu: sudo apt-get install python3-venv, then run again"
}

# Print the requirements of pyproject.toml's groups, one per line.
# Group "build" is [build-system].requires; any other name is an optional-dependencies extra.
umqtt_pyproject_requirements() {
    "$UMQTT_PY" - "$UMQTT_ROOT/pyproject.toml" "$@" <<'PY'
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

with open(sys.argv[1], "rb") as f:
    data = tomllib.load(f)
for group in sys.argv[2:]:
    if group == "build":
        reqs = data["build-system"]["requires"]
    else:
        reqs = data["project"]["optional-dependencies"][group]
    for req in reqs:
        print(req)
PY
}

# Install into .venv what pyproject.toml lists for the given groups (see above).
# pip does not touch the network for requirements that are already satisfied.
umqtt_pip_install() {
    if ! "$UMQTT_PY" -c 'import tomllib' >/dev/null 2>&1; then
        "$UMQTT_PY" -m pip install -q tomli
    fi
    local text
    text="$(umqtt_pyproject_requirements "$@")"
    local reqs=()
    mapfile -t reqs <<<"$text"
    umqtt_log "pip install (${*}): ${reqs[*]}"
    "$UMQTT_PY" -m pip install -q "${reqs[@]}"
}

# Build the Rust extension in release mode and install the package into .venv.
umqtt_build() {
    umqtt_log "building umqtt (maturin develop --release)"
    (cd "$UMQTT_ROOT" && "$UMQTT_VENV/bin/maturin" develop --release) ||
        umqtt_die "the build failed (see the messages above)"
    "$UMQTT_PY" -c 'import umqtt' || umqtt_die "the package was built but 'import umqtt' fails"
}

# --- a private mosquitto broker ------------------------------------------------------------------

UMQTT_BROKER_PID=""
UMQTT_BROKER_DIR=""

# True when something accepts TCP connections on HOST PORT.
umqtt_port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Start mosquitto on 127.0.0.1:PORT with a config in a fresh temp dir. Stop it with umqtt_stop_broker
# (install a trap for that before calling this).
umqtt_start_broker() {
    local port="$1"
    local i
    if umqtt_port_open 127.0.0.1 "$port"; then
        umqtt_die "port $port on 127.0.0.1 is already in use (another broker, or a demo still running?). Find it with: ss -ltnp 'sport = :$port'"
    fi
    UMQTT_BROKER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/umqtt-broker.XXXXXX")"
    cat >"$UMQTT_BROKER_DIR/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
EOF
    umqtt_log "starting mosquitto on 127.0.0.1:$port (config and log in $UMQTT_BROKER_DIR)"
    mosquitto -c "$UMQTT_BROKER_DIR/mosquitto.conf" >"$UMQTT_BROKER_DIR/mosquitto.log" 2>&1 &
    UMQTT_BROKER_PID=$!
    for i in $(seq 1 100); do
        if ! kill -0 "$UMQTT_BROKER_PID" 2>/dev/null; then
            wait "$UMQTT_BROKER_PID" 2>/dev/null || true
            UMQTT_BROKER_PID=""
            cat "$UMQTT_BROKER_DIR/mosquitto.log" >&2 || true
            umqtt_die "mosquitto exited at start (is port $port taken? see its log above)"
        fi
        if umqtt_port_open 127.0.0.1 "$port"; then
            umqtt_log "mosquitto is up (pid $UMQTT_BROKER_PID, after ~$((i * 100)) ms)"
            return 0
        fi
        sleep 0.1
    done
    cat "$UMQTT_BROKER_DIR/mosquitto.log" >&2 || true
    umqtt_die "mosquitto did not open port $port within 10 s"
}

# Stop the broker started by umqtt_start_broker and remove its temp dir. Safe to call twice.
umqtt_stop_broker() {
    if [ -n "$UMQTT_BROKER_PID" ]; then
        kill -TERM "$UMQTT_BROKER_PID" 2>/dev/null || true
        wait "$UMQTT_BROKER_PID" 2>/dev/null || true
        umqtt_log "mosquitto stopped"
        UMQTT_BROKER_PID=""
    fi
    if [ -n "$UMQTT_BROKER_DIR" ]; then
        rm -rf "$UMQTT_BROKER_DIR"
        UMQTT_BROKER_DIR=""
    fi
}
