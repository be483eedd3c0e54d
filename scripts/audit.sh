#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (config: deny.toml):
#   cargo deny check advisories licenses bans sources
#
#   ./scripts/audit.sh              # all four; advisories need the RustSec database (see below)
#   UMQTT_AUDIT_STRICT=1 ./scripts/audit.sh   # also fail when the advisories could not be checked
#
# licenses, bans and sources need nothing but Cargo.lock and the crates.io index.
# advisories need the RustSec advisory database, a git repository on GitHub. The script fetches it;
# where GitHub cannot be reached it uses a copy already on disk (a previous fetch, or a snapshot:
# UMQTT_ADVISORY_DBS=/dir holding advisory-db-3157b0e258782691/, a clone of the database, which is
# linked into $CARGO_HOME/advisory-dbs) and prints its date; with neither, it says plainly that the
# advisories were NOT checked (and fails under UMQTT_AUDIT_STRICT=1).
# cargo-deny is installed with `cargo install --locked` when missing (about 5 minutes on 2 cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
# The directory cargo-deny derives from db-urls in deny.toml (advisory-db-<hash of the URL>).
DB_NAME="advisory-db-3157b0e258782691"
DB_ROOT="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"

log() { printf '==> %s\n' "$*"; }

if ! cargo deny --version >/dev/null 2>&1; then
    log "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked; takes a few minutes)"
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi
log "$(cargo deny --version)"

status=0

if [ -n "${UMQTT_ADVISORY_DBS:-}" ]; then
    snapshot="$UMQTT_ADVISORY_DBS/$DB_NAME"
    git -C "$snapshot" rev-parse HEAD >/dev/null 2>&1 ||
        { printf 'error: UMQTT_ADVISORY_DBS: %s is not a git clone of the advisory database\n' "$snapshot" >&2; exit 2; }
    if [ ! -e "$DB_ROOT/$DB_NAME" ]; then
        mkdir -p "$DB_ROOT"
        ln -s "$(cd "$snapshot" && pwd)" "$DB_ROOT/$DB_NAME"
        log "linked the snapshot $snapshot into $DB_ROOT"
    fi
fi

log "cargo deny check licenses bans sources"
cargo deny check licenses bans sources || status=$?

log "advisories: fetching the RustSec database"
if timeout 180 cargo deny fetch db; then
    log "cargo deny check advisories"
    cargo deny check advisories || status=$?
elif git -C "$DB_ROOT/$DB_NAME" rev-parse HEAD >/dev/null 2>&1; then
    when="$(git -C "$DB_ROOT/$DB_NAME" log -1 --format=%cI)"
    log "the database cannot be fetched; using the copy in $DB_ROOT/$DB_NAME (last commit $when)"
    cargo deny --offline check advisories || status=$?
else
    printf '\n!!! advisories NOT CHECKED: the RustSec advisory database (a git repository on GitHub)\n' >&2
    printf '!!! cannot be fetched from this machine, and there is no copy in %s.\n' "$DB_ROOT" >&2
    printf '!!! On a machine with access: cargo deny fetch db, then copy %s/%s here\n' "$DB_ROOT" "$DB_NAME" >&2
    printf '!!! (or point UMQTT_ADVISORY_DBS at the directory holding it).\n\n' >&2
    if [ "${UMQTT_AUDIT_STRICT:-0}" = "1" ]; then
        status=3
    fi
fi

if [ "$status" -ne 0 ]; then
    printf 'error: cargo deny failed (exit status %s)\n' "$status" >&2
    exit "$status"
fi
log "audit OK"
