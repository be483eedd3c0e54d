#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (config, and the reason for every exception: deny.toml):
#   cargo deny check licenses bans sources
#   cargo deny check advisories
#
# licenses, bans and sources need nothing but Cargo.lock and the crates.io index. advisories need
# the RustSec advisory database, a git repository on GitHub. The script fetches it; where GitHub
# cannot be reached (our CI machines) it clones the snapshot committed in supply-chain/ (a git
# bundle; its README says how to refresh it) where cargo-deny expects the database, unless a newer
# copy is there already, and checks offline. The result line gives the database's date: advisories
# published after it are not checked. Any advisory that matches a crate in Cargo.lock fails the
# audit unless deny.toml ignores it, and every ignore entry must give its reason.
# cargo-deny is installed with `cargo install --locked` when missing (about 5 minutes on 2 cores).
set -euo pipefail

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$UMQTT_ROOT"

CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
# The directory cargo-deny derives from db-urls in deny.toml (advisory-db-<hash of the URL>).
DB="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
SNAPSHOT=supply-chain/rustsec-advisory-db.bundle
# cargo-deny's own limit for a database it may not fetch (maximum-db-staleness); past it we warn.
STALE_DAYS=90

umqtt_ensure_system
if ! cargo deny --version >/dev/null 2>&1; then
    umqtt_log "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked; takes a few minutes)"
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi
umqtt_log "$(cargo deny --version)"

status=0

umqtt_log "every advisory ignored in deny.toml gives its reason"
python3 - deny.toml <<'PY' || status=$?
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

with open(sys.argv[1], "rb") as f:
    ignored = tomllib.load(f).get("advisories", {}).get("ignore", [])
bare = [e if isinstance(e, str) else e.get("id", e.get("crate", "?")) for e in ignored
        if isinstance(e, str) or not str(e.get("reason", "")).strip()]
for entry in bare:
    print(f"error: deny.toml ignores {entry} without a reason: write {{ id = ..., reason = ... }}")
sys.exit(1 if bare else 0)
PY

umqtt_log "cargo deny check licenses bans sources"
cargo deny check licenses bans sources || status=$?

commit_date() {
    git -C "$1" log -1 --format=%cs 2>/dev/null
}

umqtt_log "advisories: fetching the RustSec database"
if timeout 180 cargo deny fetch db; then
    source_line="the RustSec database fetched now (newest commit $(commit_date "$DB"))"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/umqtt-audit.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    git -c init.defaultBranch=main clone -q "$SNAPSHOT" "$work/snapshot" || umqtt_die "cannot clone $SNAPSHOT"
    snapshot_date="$(commit_date "$work/snapshot")"
    have_date="$(commit_date "$DB" || true)"
    # A copy newer than the snapshot (an earlier fetch) is kept; ISO dates compare as strings.
    if [ -n "$have_date" ] && [[ "$have_date" > "$snapshot_date" ]]; then
        umqtt_log "the database cannot be fetched; using the copy in $DB (of $have_date, newer than the snapshot)"
        used_date="$have_date"
        source_line="the RustSec database of $have_date (a copy fetched before)"
    else
        umqtt_log "the database cannot be fetched; cloning the snapshot $SNAPSHOT (of $snapshot_date) into $DB"
        rm -rf "$DB"
        mkdir -p "$(dirname "$DB")"
        mv "$work/snapshot" "$DB"
        # A later fetch that can reach GitHub updates it from there.
        git -C "$DB" remote set-url origin https://github.com/rustsec/advisory-db
        used_date="$snapshot_date"
        source_line="the RustSec database of $snapshot_date (snapshot $SNAPSHOT)"
    fi
    age_days="$((($(date -u +%s) - $(date -u -d "$used_date" +%s)) / 86400))"
    source_line+=", $age_days days old: advisories published since are not checked"
    if [ "$age_days" -gt "$STALE_DAYS" ]; then
        printf 'warning: the advisory database is %s days old: refresh the snapshot (supply-chain/README.md)\n' \
            "$age_days" >&2
    fi
fi
umqtt_log "cargo deny --offline check advisories"
cargo deny --offline check advisories || status=$?

if [ "$status" -ne 0 ]; then
    printf 'error: the audit failed (exit status %s); advisories checked against %s\n' "$status" "$source_line" >&2
    exit "$status"
fi
umqtt_log "audit OK: licenses, bans, sources; advisories checked against $source_line"
