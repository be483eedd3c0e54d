#!/usr/bin/env bash
# Static checks: rustfmt, clippy (warnings are errors), ruff (lint and format), mypy (strict, config in
# pyproject.toml). Every check runs; the exit status is non-zero if any failed.
# Creates .venv and installs the lint tools from pyproject.toml's "lint" extra when needed; it does not
# build the package.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

cd "$UMQTT_ROOT"

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install lint

umqtt_check cargo fmt --check
umqtt_check cargo clippy --all-targets -- -D warnings
umqtt_check .venv/bin/ruff check .
umqtt_check .venv/bin/ruff format --check .
umqtt_check .venv/bin/mypy

umqtt_checks_done lint
