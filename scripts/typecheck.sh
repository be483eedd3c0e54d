#!/usr/bin/env bash
# Type checks of what users see: the stub of the native module matches the runtime (mypy's stubtest,
# over umqtt and every submodule, with the reasons for the few exceptions in stubtest-allowlist.txt),
# and the examples pass `mypy --strict` against the installed package's types (py.typed).
# (mypy --strict on the package's own sources is in scripts/lint.sh.)
#
#   ./scripts/typecheck.sh
#
# Same setup as scripts/test.sh minus mosquitto: .venv, the lint tools, a release build of the
# package (stubtest imports the built extension). Both checks run; the exit status is non-zero if
# either failed.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

cd "$UMQTT_ROOT"

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install build lint
umqtt_build

# pyproject.toml's mypy settings: the benchmark's competitors (umqtt._bench) may be missing.
umqtt_check "$UMQTT_PY" -m mypy.stubtest umqtt --allowlist stubtest-allowlist.txt \
  --mypy-config-file pyproject.toml
umqtt_check "$UMQTT_PY" -m mypy --strict examples/*.py

umqtt_checks_done typecheck
