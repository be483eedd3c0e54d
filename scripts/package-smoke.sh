#!/usr/bin/env bash
# Packaging check: the wheel is abi3 (cp39-abi3), and both the wheel and the sdist install with
# plain pip into a fresh virtualenv, where a smoke test passes from outside the repository.
#
#   ./scripts/package-smoke.sh                                  # with python3 (or $PYTHON)
#   SMOKE_PYTHONS="python3.9 python3.13" ./scripts/package-smoke.sh  # each of these, one by one
#
# Steps: build the wheel into dist/ (maturin build --release), check its tag and contents (py.typed,
# the stub, the pytest11 entry point); then, for each interpreter: a fresh venv in a temp dir,
# `pip install dist/<wheel>`, the smoke test; another fresh venv, `pip install <sdist>` (a build from
# source: needs cargo, and pip fetches maturin from the index unless one is configured), the smoke
# test; and in the wheel's venv, after `pip install pytest`, the README's three-line test of the pytest
# plugin. The smoke test imports umqtt, umqtt.simple, umqtt.robust and umqtt.aio from the venv (not the
# checkout), runs `python -m umqtt --help`, and makes a publish/subscribe round trip with a client and
# with the CLI against a mosquitto it starts through umqtt.testing.
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"

cd "$UMQTT_ROOT"

umqtt_ensure_system
umqtt_ensure_venv
umqtt_pip_install build

# --- the wheel ------------------------------------------------------------------------------------

rm -f dist/umqtt-*.whl
umqtt_log "maturin build --release -o dist/"
.venv/bin/maturin build --release -o dist/
wheels=(dist/umqtt-*.whl)
if [ "${#wheels[@]}" -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
    umqtt_die "expected one wheel in dist/, found: ${wheels[*]}"
fi
wheel="$UMQTT_ROOT/${wheels[0]}"
name="$(basename "$wheel")"
case "$name" in
    umqtt-*-cp39-abi3-*.whl) umqtt_log "wheel: $name (cp39-abi3)" ;;
    *) umqtt_die "the wheel is not tagged cp39-abi3: $name" ;;
esac

"$UMQTT_PY" - "$wheel" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as z:
    names = set(z.namelist())
    wheel_meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
    tags = [line.split(":", 1)[1].strip() for line in z.read(wheel_meta).decode().splitlines()
            if line.startswith("Tag:")]
    entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
    eps = z.read(entry_points).decode() if entry_points else ""
problems = []
if not tags or not all(t.startswith("cp39-abi3-") for t in tags):
    problems.append(f"WHEEL tags are not cp39-abi3: {tags}")
for needed in ("umqtt/py.typed", "umqtt/_native.pyi", "umqtt/testing.py", "umqtt/pytest_plugin.py"):
    if needed not in names:
        problems.append(f"{needed} is not in the wheel")
if not any(n.startswith("umqtt/_native.") and n.endswith(".so") for n in names):
    problems.append("the native module umqtt/_native.*.so is not in the wheel")
if "[pytest11]" not in eps or "umqtt.pytest_plugin" not in eps:
    problems.append(f"no pytest11 entry point for umqtt.pytest_plugin in entry_points.txt: {eps!r}")
if problems:
    sys.exit("wheel check failed:\n  " + "\n  ".join(problems))
print(f"wheel contents OK: tags {', '.join(tags)}; py.typed, _native.pyi, pytest11 entry point")
PY

# --- fresh venvs ----------------------------------------------------------------------------------

work="$(mktemp -d "${TMPDIR:-/tmp}/umqtt-package-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The sdist, built from what it ships only: the vendored rumqttc must be inside it.
umqtt_log "maturin sdist"
.venv/bin/maturin sdist -o "$work/sdist"
sdist="$(echo "$work"/sdist/umqtt-*.tar.gz)"
tar tzf "$sdist" >"$work/sdist.txt"  # not piped into grep -q: pipefail would see tar's SIGPIPE
grep -q '/vendor/rumqttc/src/lib.rs$' "$work/sdist.txt" ||
    umqtt_die "the sdist lacks vendor/rumqttc (the [patch] path): see [tool.maturin] include"

# The smoke test, run by the venv's python with the temp dir as working directory.
cat >"$work/smoke.py" <<'PY'
import os
import subprocess
import sys
import time

repo = os.environ["UMQTT_REPO"]
import umqtt
import umqtt.aio
import umqtt.robust
import umqtt.simple
from umqtt.testing import Mosquitto, unique_id

where = os.path.dirname(umqtt.__file__)
assert not os.path.realpath(where).startswith(os.path.realpath(repo) + os.sep), (
    f"umqtt was imported from the checkout ({where}), not from the venv"
)
print(f"umqtt {umqtt.__version__} from {where} on Python {sys.version.split()[0]}")
for module in (umqtt.simple, umqtt.robust, umqtt.aio):
    assert module.MQTTClient, module

out = subprocess.run([sys.executable, "-m", "umqtt", "--help"], capture_output=True, text=True)
assert out.returncode == 0 and "pub" in out.stdout and "sub" in out.stdout, out
print("python -m umqtt --help: OK")

with Mosquitto() as broker:
    got = []
    client = umqtt.MQTTClient(unique_id("smoke"), broker.host, broker.port)
    client.set_callback(lambda topic, msg: got.append((topic, msg)))
    client.connect()
    assert client.subscribe("smoke/#", 1)
    assert client.publish("smoke/1", b"hello", qos=1)
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        client.check_msg()
        time.sleep(0.01)
    client.disconnect()
    assert got == [(b"smoke/1", b"hello")], got
    print("client round trip: OK")

    # The CLI, as in the README: sub in the background, pub, sub prints "topic payload".
    where_ = ["-h", broker.host, "-p", str(broker.port)]
    sub_id = unique_id("smoke-cli-sub")
    sub = subprocess.Popen(
        [sys.executable, "-m", "umqtt", "sub", *where_, "-i", sub_id]
        + ["-t", "x/#", "-v", "-C", "1", "-W", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert broker.wait_for_log(f"Sending SUBACK to {sub_id}", timeout=10), "no CLI subscription"
    subprocess.run(
        [sys.executable, "-m", "umqtt", "pub", *where_, "-t", "x/1", "-m", "hi", "-q", "1"],
        check=True,
        timeout=20,
    )
    printed, _ = sub.communicate(timeout=20)
    assert sub.returncode == 0 and printed == "x/1 hi\n", (sub.returncode, printed)
    print("CLI round trip: OK")
print("smoke test passed")
PY

smoke() {
    local venv="$1"
    (cd "$work" && env UMQTT_REPO="$UMQTT_ROOT" "$venv/bin/python" "$work/smoke.py")
}

# The pytest plugin from the installed wheel (entry point pytest11, no conftest): the README's test.
mkdir "$work/plugin-test"
cat >"$work/plugin-test/test_readme.py" <<'PY'
def test_publish(mqtt_broker, mqtt_client):
    client = mqtt_client()  # connected to mqtt_broker.host:mqtt_broker.port
    assert client.publish("sensors/1", b"21.5", qos=1)  # True once the broker has it
PY
plugin_smoke() {
    local venv="$1"
    "$venv/bin/python" -m pip install -q pytest
    (cd "$work/plugin-test" && "$venv/bin/python" -m pytest -q -p no:cacheprovider test_readme.py)
}

# A venv of the interpreter $1, with nothing of .venv in the environment.
fresh_venv() {
    local python="$1" dir="$2"
    "$python" -m venv "$dir" || umqtt_die "'$python -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)"
}

pythons="${SMOKE_PYTHONS:-$UMQTT_BASE_PYTHON}"
[ -n "$pythons" ] || umqtt_die "no interpreter: set PYTHON or SMOKE_PYTHONS"
# Outside .venv: its bin must not shadow the fresh venvs' pip and python, nor its VIRTUAL_ENV
# tell maturin (the build backend of the sdist install) where to install.
export PATH="${PATH#"$UMQTT_VENV/bin:"}"
unset VIRTUAL_ENV PYO3_PYTHON

for python in $pythons; do
    py="$(command -v "$python" || true)"
    [ -n "$py" ] || umqtt_die "interpreter not found: $python"
    version="$("$py" -c 'import platform; print(platform.python_version())')"
    tag="$(basename "$py")-$version"

    umqtt_log "[$tag] fresh venv, pip install $name"
    fresh_venv "$py" "$work/wheel-$tag"
    "$work/wheel-$tag/bin/python" -m pip install -q "$wheel"
    umqtt_log "[$tag] smoke test (wheel)"
    smoke "$work/wheel-$tag"
    umqtt_log "[$tag] pytest plugin (wheel + pip install pytest): the README's test"
    plugin_smoke "$work/wheel-$tag"

    umqtt_log "[$tag] fresh venv, pip install $(basename "$sdist") (build from the sdist)"
    fresh_venv "$py" "$work/source-$tag"
    # Its own cargo target dir: a build for another interpreter would make the next
    # `maturin develop` in .venv rebuild pyo3 (see PYO3_PYTHON in scripts/_setup.sh).
    CARGO_TARGET_DIR="$UMQTT_ROOT/target/package-smoke" \
        "$work/source-$tag/bin/python" -m pip install -q "$sdist"
    umqtt_log "[$tag] smoke test (source install)"
    smoke "$work/source-$tag"
done
umqtt_log "package smoke OK ($name; Python: $pythons)"
