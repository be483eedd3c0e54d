#!/usr/bin/env bash
# vendor/rumqttc is a crate as published on crates.io plus an ordered series of patches:
# vendor/upstream.txt names the crate (version, sha256) and what is not vendored, and
# vendor/patches/NN-name.patch are the patches, each starting with its reason. Their headers are
# the one list of patches; vendor/rumqttc/PATCHES.md is generated from them.
# How to add a patch or move to a newer rumqttc: vendor/README.md.
#
#   scripts/vendor.sh check         rebuild the tree from the crate and the series in a temporary
#                                   directory; fail, printing the difference, unless it is exactly
#                                   vendor/rumqttc (and its Cargo.lock matches its Cargo.toml)
#   scripts/vendor.sh apply [NN]    regenerate vendor/rumqttc from the crate and the series and
#                                   bring its Cargo.lock in line with its Cargo.toml; with NN, only
#                                   the patches up to number NN (and the lock as it is)
#   scripts/vendor.sh diff [NN]     print how vendor/rumqttc differs from the crate and the series
#                                   (up to NN)
#   scripts/vendor.sh save NN-name  write that difference, from the crate and the patches numbered
#                                   below NN, into vendor/patches/NN-name.patch: a new patch under
#                                   a header to fill in, or a refreshed one keeping its header
#
# The crate comes from cargo's download cache, or `cargo fetch` downloads it from crates.io; its
# sha256 must be the one in vendor/upstream.txt. Needs cargo, git, tar and sha256sum.
set -euo pipefail
export LC_ALL=C

# shellcheck source=scripts/_setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
cd "$UMQTT_ROOT"

TREE=vendor/rumqttc
SERIES=vendor/patches
CONFIG=vendor/upstream.txt

usage() {
    sed -n '/^#   scripts/,/^# The crate/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# --- vendor/upstream.txt ------------------------------------------------------------------------

CRATE=""
VERSION=""
SHA256=""
EXCLUDE=()
EXCLUDE_WHY=()
RENAME_FROM=()
RENAME_TO=()
RENAME_WHY=()
KEEP=()
KEEP_WHY=()

read_config() {
    local key path rest to why
    while read -r key path rest; do
        case "$key" in
            '' | '#'*) ;;
            crate) CRATE="$path" ;;
            version) VERSION="$path" ;;
            sha256) SHA256="$path" ;;
            exclude) EXCLUDE+=("$path") && EXCLUDE_WHY+=("$rest") ;;
            rename)
                read -r to why <<<"$rest"
                RENAME_FROM+=("$path") && RENAME_TO+=("$to") && RENAME_WHY+=("$why")
                ;;
            keep) KEEP+=("$path") && KEEP_WHY+=("$rest") ;;
            *) umqtt_die "$CONFIG: unknown line '$key $path ...'" ;;
        esac
    done <"$CONFIG"
    [ -n "$CRATE" ] && [ -n "$VERSION" ] && [ -n "$SHA256" ] ||
        umqtt_die "$CONFIG must give crate, version and sha256"
}

# --- the series ---------------------------------------------------------------------------------

# The patch files in order, up to number $1 when given; checks their names and headers.
series() {
    local upto="${1:-}" file name number seen=" "
    for file in "$SERIES"/*.patch; do
        [ -e "$file" ] || continue
        name="$(basename "$file")"
        [[ "$name" =~ ^([0-9][0-9])-[a-z0-9]+(-[a-z0-9]+)*\.patch$ ]] ||
            umqtt_die "$file: name patches NN-some-words.patch (two digits, lower-case words)"
        number="${BASH_REMATCH[1]}"
        [[ "$seen" != *" $number "* ]] || umqtt_die "$file: two patches numbered $number"
        seen+="$number "
        if [ -n "$upto" ] && [ "$((10#$number))" -gt "$((10#$upto))" ]; then
            continue
        fi
        header "$file" | head -n 1 | grep -q '[^[:space:]]' ||
            umqtt_die "$file: the first line must be the patch's title"
        header "$file" | grep -q '^Why: ' || umqtt_die "$file: the header must give its reason (Why: ...)"
        header "$file" | grep -q '^Upstream: ' || umqtt_die "$file: the header must say 'Upstream: ...'"
        ! header "$file" | grep -q 'TODO' || umqtt_die "$file: fill in the TODOs of its header"
        printf '%s\n' "$file"
    done
}

# The text above the first `diff --git` line: git apply skips it.
header() {
    sed '/^diff --git /,$d' "$1"
}

# --- the crate ----------------------------------------------------------------------------------

# Prints the path of the crate file in cargo's download cache whose sha256 is the pinned one.
cached_crate() {
    local file
    for file in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$CRATE-$VERSION.crate"; do
        if [ -f "$file" ] && [ "$(sha256sum "$file" | cut -d ' ' -f 1)" = "$SHA256" ]; then
            printf '%s\n' "$file"
            return 0
        fi
    done
    return 1
}

crate_file() {
    local fetch="$WORK/fetch" file
    if file="$(cached_crate)"; then
        printf '%s\n' "$file"
        return 0
    fi
    umqtt_log "fetching $CRATE $VERSION from crates.io (cargo fetch)" >&2
    mkdir -p "$fetch/src"
    : >"$fetch/src/lib.rs"
    cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "umqtt-vendor-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$CRATE = { version = "=$VERSION", default-features = false }

[workspace]
EOF
    (cd "$fetch" && cargo fetch --quiet --target "$(rustc -vV | sed -n 's/^host: //p')") >&2 ||
        umqtt_die "cargo fetch of $CRATE $VERSION failed"
    if file="$(cached_crate)"; then
        printf '%s\n' "$file"
        return 0
    fi
    printf 'error: no %s-%s.crate in cargo'\''s cache has the sha256 in %s (%s); found:\n' \
        "$CRATE" "$VERSION" "$CONFIG" "$SHA256" >&2
    sha256sum "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$CRATE-$VERSION.crate" >&2 || true
    exit 1
}

# --- building the tree --------------------------------------------------------------------------

# Builds crate + series (up to $2) into the new directory $1, with PATCHES.md.
build_tree() {
    local dest="$1" upto="${2:-}" unpacked="$WORK/crate" src i path patch output list
    local patches=()
    list="$(series "$upto")"
    [ -z "$list" ] || mapfile -t patches <<<"$list"
    rm -rf "$unpacked"
    mkdir -p "$unpacked"
    tar -xzf "$CRATE_FILE" -C "$unpacked"
    src="$unpacked/$CRATE-$VERSION"
    [ -d "$src" ] || umqtt_die "$CRATE_FILE does not unpack into $CRATE-$VERSION/"
    for path in "${EXCLUDE[@]}"; do
        [ -e "$src/$path" ] || umqtt_die "$CONFIG: exclude $path: the crate has no such file"
        rm -rf "${src:?}/$path"
    done
    for i in "${!RENAME_FROM[@]}"; do
        [ -e "$src/${RENAME_FROM[$i]}" ] || umqtt_die "$CONFIG: rename ${RENAME_FROM[$i]}: the crate has no such file"
        [ ! -e "$src/${RENAME_TO[$i]}" ] || umqtt_die "$CONFIG: rename to ${RENAME_TO[$i]}: exclude the crate's own first"
        mv "$src/${RENAME_FROM[$i]}" "$src/${RENAME_TO[$i]}"
    done
    for path in "${KEEP[@]}"; do
        [ ! -e "$src/$path" ] || umqtt_die "$CONFIG: keep $path: the crate has one too, exclude it"
        if [ -e "$TREE/$path" ]; then
            cp "$TREE/$path" "$src/$path"
        fi
    done
    for patch in "${patches[@]}"; do
        # GIT_CEILING_DIRECTORIES: git apply must not find a repository above the temporary one.
        if ! output="$(GIT_CEILING_DIRECTORIES="$WORK" git -C "$src" apply "$UMQTT_ROOT/$patch" 2>&1)"; then
            printf '%s\n' "$output" >&2
            umqtt_die "$patch does not apply to $CRATE $VERSION and the patches before it (vendor/README.md says what to do)"
        fi
        [ -z "$output" ] || printf '%s: %s\n' "$patch" "$output" >&2
    done
    write_index "$src/PATCHES.md" "$upto" "${patches[@]}"
    mv "$src" "$dest"
}

# PATCHES.md: the exclude list and the patch headers, gathered.
write_index() {
    local out="$1" upto="$2" i patch name
    shift 2
    {
        printf '# %s %s, vendored\n\n' "$CRATE" "$VERSION"
        printf 'Generated by scripts/vendor.sh from vendor/upstream.txt and the headers of\n'
        printf 'vendor/patches/*.patch: edit those, then run `scripts/vendor.sh apply`. How to add a patch\n'
        printf 'or move to a newer %s: vendor/README.md.\n\n' "$CRATE"
        printf 'This directory is %s %s as published on crates.io, without the parts below, with the\n' "$CRATE" "$VERSION"
        printf 'patches below applied in this order%s. The crate'\''s sha256:\n' "${upto:+ (those up to $upto only)}"
        printf '`%s`.\n' "$SHA256"
        printf '\n## Not vendored\n\n'
        for i in "${!EXCLUDE[@]}"; do
            printf -- '- `%s`: %s\n' "${EXCLUDE[$i]}" "${EXCLUDE_WHY[$i]}"
        done
        for i in "${!RENAME_FROM[@]}"; do
            printf -- '- `%s` becomes `%s`: %s\n' "${RENAME_FROM[$i]}" "${RENAME_TO[$i]}" "${RENAME_WHY[$i]}"
        done
        for i in "${!KEEP[@]}"; do
            printf -- '- `%s` is umqtt'\''s own: %s\n' "${KEEP[$i]}" "${KEEP_WHY[$i]}"
        done
        printf '\n## Patches\n'
        for patch in "$@"; do
            name="$(basename "$patch" .patch)"
            printf '\n### %s %s\n\n' "${name%%-*}" "$(header "$patch" | head -n 1)"
            printf '`%s`\n\n' "$patch"
            header "$patch" | sed '1d' | sed '/[^[:space:]]/,$!d' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
        done
    } >"$out"
}

# --- comparing ----------------------------------------------------------------------------------

# git with settings of its own for the scratch repository $WORK/compare.
scratch_git() {
    git -C "$WORK/compare" -c core.autocrlf=false -c core.excludesFile=/dev/null \
        -c user.name=vendor.sh -c user.email=vendor.sh@localhost -c commit.gpgsign=false "$@"
}

# Copies vendor/rumqttc into $1, leaving out target/ (cargo's output when the crate's tests run
# without --target-dir; git ignores it).
copy_vendored() {
    tar -C "$TREE" --exclude=./target -cf - . | tar -C "$1" -xf -
}

# Stages the difference from the rebuilt tree $1 to vendor/rumqttc in $WORK/compare.
stage_difference() {
    rm -rf "$WORK/compare"
    mkdir -p "$WORK/compare"
    scratch_git init -q
    cp -a "$1/." "$WORK/compare/"
    scratch_git add -A -f
    scratch_git commit -q --no-verify -m rebuilt
    find "$WORK/compare" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
    [ -d "$TREE" ] && copy_vendored "$WORK/compare"
    scratch_git add -A -f
}

# cargo update --workspace (which leaves every other locked version as it is) in the crate $1,
# offline when the index cache has what it needs; extra arguments go to cargo.
update_lock() {
    local manifest="$1/Cargo.toml"
    shift
    cargo update --workspace --quiet --offline --manifest-path "$manifest" "$@" 2>/dev/null ||
        cargo update --workspace --quiet --manifest-path "$manifest" "$@"
}

# --- commands -----------------------------------------------------------------------------------

command_check() {
    [ "$#" -eq 0 ] || usage
    local patches
    build_tree "$WORK/rebuilt"
    [ -d "$TREE" ] || umqtt_die "$TREE is missing: scripts/vendor.sh apply creates it"
    stage_difference "$WORK/rebuilt"
    if ! scratch_git diff --cached --quiet; then
        printf '\n%s differs from %s %s plus the patches in %s:\n\n' "$TREE" "$CRATE" "$VERSION" "$SERIES"
        scratch_git --no-pager diff --cached --stat --no-renames
        printf '\n'
        scratch_git --no-pager diff --cached --no-renames --no-color
        printf '\nerror: %s is not the crate plus the series. Put a change to it into a patch\n' "$TREE" >&2
        printf '(scripts/vendor.sh diff, vendor/README.md), or regenerate it: scripts/vendor.sh apply\n' >&2
        exit 1
    fi
    if [ -e "$TREE/Cargo.lock" ] && ! update_lock "$WORK/rebuilt" --locked; then
        umqtt_die "$TREE/Cargo.lock does not match its Cargo.toml: scripts/vendor.sh apply updates it"
    fi
    patches="$(series | wc -l)"
    umqtt_log "vendor OK: $TREE is $CRATE $VERSION (sha256 ${SHA256:0:12}...) plus $patches patches"
}

command_apply() {
    [ "$#" -le 1 ] || usage
    local upto="${1:-}"
    [ -z "$upto" ] || [[ "$upto" =~ ^[0-9][0-9]$ ]] || usage
    build_tree "$WORK/rebuilt" "$upto"
    mkdir -p "$TREE"
    find "$TREE" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
    cp -a "$WORK/rebuilt/." "$TREE/"
    # A partial series is a step in changing a patch: its lock stays as it is.
    if [ -z "$upto" ]; then
        update_lock "$TREE" || umqtt_die "could not bring $TREE/Cargo.lock in line with its Cargo.toml"
    fi
    umqtt_log "regenerated $TREE: $CRATE $VERSION plus $(series "$upto" | wc -l) patches${upto:+ (up to $upto)}"
}

# The difference from the rebuilt tree $1 to vendor/rumqttc as a patch body, leaving out the
# generated PATCHES.md and umqtt's own files; no index lines (their blob hashes change whenever an
# earlier patch does).
difference() {
    local path
    local leave_out=(":(exclude)PATCHES.md")
    for path in "${KEEP[@]}"; do
        leave_out+=(":(exclude)$path")
    done
    stage_difference "$1"
    scratch_git --no-pager diff --cached --no-renames --no-color -- . "${leave_out[@]}" | sed '/^index /d'
}

command_diff() {
    [ "$#" -le 1 ] || usage
    local upto="${1:-}"
    [ -z "$upto" ] || [[ "$upto" =~ ^[0-9][0-9]$ ]] || usage
    build_tree "$WORK/rebuilt" "$upto"
    difference "$WORK/rebuilt"
}

command_save() {
    [ "$#" -eq 1 ] || usage
    local name="$1" file body number before
    [[ "$name" =~ ^([0-9][0-9])-[a-z0-9]+(-[a-z0-9]+)*$ ]] ||
        umqtt_die "save NN-some-words: two digits, then lower-case words"
    number="${BASH_REMATCH[1]}"
    file="$SERIES/$name.patch"
    for before in "$SERIES/$number"-*.patch; do
        [ ! -e "$before" ] || [ "$before" = "$file" ] ||
            umqtt_die "$before has number $number already"
    done
    if [ "$((10#$number))" -eq 0 ]; then
        umqtt_die "number patches from 01"
    fi
    build_tree "$WORK/rebuilt" "$(printf '%02d' "$((10#$number - 1))")"
    body="$(difference "$WORK/rebuilt")"
    [ -n "$body" ] || umqtt_die "$TREE does not differ from the crate and the patches below $number"
    if [ -e "$file" ]; then
        { header "$file" && printf '%s\n' "$body"; } >"$WORK/patch"
        umqtt_log "refreshed $file (header kept); now run: scripts/vendor.sh apply && scripts/vendor.sh check"
    else
        {
            printf 'TODO: the title, one line saying what the patch does\n\n'
            printf 'What: TODO\n\nWhy: TODO\n\n'
            printf 'Effect: TODO (what was measured, how and when; or leave this paragraph out)\n\n'
            printf 'Upstream: TODO (the upstream issue or pull request, or "not proposed")\n\n'
            printf '%s\n' "$body"
        } >"$WORK/patch"
        umqtt_log "wrote $file: fill in its header, then run scripts/vendor.sh apply && scripts/vendor.sh check"
    fi
    mv "$WORK/patch" "$file"
}

case "${1:-}" in
    check | apply | diff | save) ;;
    *) usage ;;
esac
umqtt_ensure_system >&2
read_config
WORK="$(mktemp -d "${TMPDIR:-/tmp}/umqtt-vendor.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
CRATE_FILE="$(crate_file)"
command="$1"
shift
"command_$command" "$@"
