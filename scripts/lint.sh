#!/usr/bin/env bash
# Static checks: rustfmt, clippy (warnings are errors), ruff (lint and format), mypy (strict, config in
# pyproject.toml). Every check runs; the exit status is non-zero if any failed.
# Creates .venv and installs the lint tools from pyproject.toml's "lint" extra when needed; it does not
# build the package.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

cd "$UMQTT_ROOT"

umqtt_ensure_venv
umqtt_pip_install lint

failed=()
check() {
    umqtt_log "$*"
    "$@" || failed+=("$*")
}

check cargo fmt --check
check cargo clippy --all-targets -- -D warnings
check .venv/bin/ruff check .
check .venv/bin/ruff format --check .
check .venv/bin/mypy

if [ "${#failed[@]}" -ne 0 ]; then
    printf 'error: failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
umqtt_log "lint OK"
