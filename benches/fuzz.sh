#!/usr/bin/env bash
# Fuzzing: the libFuzzer targets of fuzz/ (cargo-fuzz, on the stable toolchain), seeded from the committed
# corpus fuzz/corpus/<target>/ (real protocol captures, see fuzz/capture.sh).
#
#   bash benches/fuzz.sh [SECONDS] [TARGET...]  fuzz each target for SECONDS (default 60), one after another
#   bash benches/fuzz.sh --replay [TARGET...]   run every committed seed (and fuzz/artifacts-found/) once: fast
#   bash benches/fuzz.sh --smoke [TARGET...]    --replay, then FUZZ_SMOKE_SECONDS (20) of fuzzing per target
#                                               (tests/run.sh runs it with 10)
#   bash benches/fuzz.sh --list                 the targets, with what each checks
#
# Without TARGET, every target that builds (fuzz/fuzz_targets/*.rs; targets behind a cargo feature are
# skipped). Each fuzzer runs under `nice -n 19` as one process with one job. New inputs it finds go to
# fuzz/target/corpus/<target>/ (kept between runs, never committed: the committed corpus is only read). A
# finding (crash, timeout, out-of-memory) stops that target, leaves the input in fuzz/artifacts/<target>/,
# and makes the script exit 1 after the other targets ran; minimize one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/TARGET -minimize_crash=1 -runs=100000 INPUT
# and keep it, once understood, in fuzz/artifacts-found/<target>/ (the replay runs those too).
#
# Report, one line per target: runs executed, exec/s, coverage (edges) and features, corpus size, findings.
#
# Installs what it needs on a fresh machine: a C++ compiler for libFuzzer (apt-get, with sudo when not root)
# and cargo-fuzz (cargo install, pinned below). No nightly: the build uses no -Z flag without a sanitizer.
# Environment: FUZZ_SANITIZER (none or address; default none: the crates forbid unsafe code and
# AddressSanitizer halves the speed; address needs RUSTC_BOOTSTRAP, which this script sets), FUZZ_TIMEOUT
# (seconds one input may take before it counts as a hang, default 10), FUZZ_RSS_MB (default 2048),
# FUZZ_CODEGEN_UNITS (default: cargo-fuzz's 1, the fastest fuzzers; 16 builds faster).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$REPO/fuzz"
BIN_DIR="$FUZZ/target/x86_64-unknown-linux-gnu/release"
CARGO_FUZZ_VERSION=0.13.2
SANITIZER="${FUZZ_SANITIZER:-none}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
SMOKE_SECONDS="${FUZZ_SMOKE_SECONDS:-20}"

log() { echo "benches/fuzz.sh: $*" >&2; }
die() {
    echo "benches/fuzz.sh: error: $*" >&2
    exit 1
}
usage() {
    sed -n '5,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- tools --------------------------------------------------------------------------------------------------

ensure_tools() {
    export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || die "cargo is not on PATH"
    if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
        command -v apt-get >/dev/null || die "no C++ compiler (libFuzzer is C++) and no apt-get to install one"
        local sudo=""
        [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
        log "installing g++ with apt-get (libFuzzer is C++)"
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
    fi
    if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
        log "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install)"
        cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
    fi
}

build() {
    local args=(build --sanitizer "$SANITIZER")
    [[ -n "${FUZZ_CODEGEN_UNITS:-}" ]] && args+=(--codegen-units "$FUZZ_CODEGEN_UNITS")
    [[ "$SANITIZER" == none ]] || export RUSTC_BOOTSTRAP=1
    log "building the fuzz targets (cargo fuzz ${args[*]})"
    local started=$SECONDS
    (cd "$FUZZ" && nice -n 19 cargo fuzz "${args[@]}") || die "the fuzz targets did not build"
    log "built in $((SECONDS - started)) s"
}

# Every target with a built binary, or those named (which must exist).
targets() {
    local t
    if (($# > 0)); then
        for t in "$@"; do
            [[ -f "$FUZZ/fuzz_targets/$t.rs" ]] || die "no target '$t' (see --list)"
            [[ -x "$BIN_DIR/$t" ]] || die "target '$t' did not build (does it need a cargo feature? see fuzz/Cargo.toml)"
            echo "$t"
        done
        return
    fi
    for t in "$FUZZ"/fuzz_targets/*.rs; do
        t="$(basename "$t" .rs)"
        [[ -x "$BIN_DIR/$t" ]] && echo "$t"
    done
}

list() {
    local f
    for f in "$FUZZ"/fuzz_targets/*.rs; do
        printf '%-14s %s\n' "$(basename "$f" .rs)" "$(sed -n '1s|^//! *||p' "$f")"
    done
}

# --- runs ---------------------------------------------------------------------------------------------------

FAILED=()

# The dirs of seeds a target reads: its committed corpus and its known findings (regression inputs).
seed_dirs() {
    local t=$1 d
    for d in "$FUZZ/corpus/$t" "$FUZZ/artifacts-found/$t"; do
        [[ -d "$d" ]] && echo "$d"
    done
}

# The value of `key:` in a libFuzzer status line, e.g. `cov: 123`.
field() { sed -n "s/.*[[:space:]]$1: \([0-9]*\).*/\1/p" <<<"$2" | tail -1; }

# Runs every seed of a target once.
replay() {
    local t=$1 log dirs n rc=0
    log="$FUZZ/target/logs/$t.replay.log"
    mapfile -t dirs < <(seed_dirs "$t")
    n=0
    ((${#dirs[@]} == 0)) || n=$(find "${dirs[@]}" -type f | wc -l)
    if ((n == 0)); then
        printf '%-14s replay: no seeds\n' "$t"
        return
    fi
    mkdir -p "$FUZZ/artifacts/$t"
    nice -n 19 "$BIN_DIR/$t" -runs=0 -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" \
        -artifact_prefix="$FUZZ/artifacts/$t/" "${dirs[@]}" >"$log" 2>&1 || rc=$?
    if ((rc == 0)); then
        printf '%-14s replay: %d seeds ok\n' "$t" "$n"
    else
        printf '%-14s replay: FAILED (exit %d), see %s\n' "$t" "$rc" "$log"
        grep -m1 -A3 -E 'panicked at|ERROR: libFuzzer' "$log" | sed 's/^/    /' || true
        FAILED+=("$t")
    fi
}

# Fuzzes a target for a number of seconds and reports what it did.
fuzz() {
    local t=$1 seconds=$2 log work dirs rc=0 last runs eps cov ft corpus found
    # Per mode: a smoke run (tests/run.sh) beside a long campaign must not write the campaign's log.
    log="$FUZZ/target/logs/$t.$MODE.log"
    work="$FUZZ/target/corpus/$t"
    mkdir -p "$work" "$FUZZ/artifacts/$t"
    mapfile -t dirs < <(seed_dirs "$t")
    local before started=$SECONDS
    before=$(find "$FUZZ/artifacts/$t" -type f | wc -l)
    # One process, one job: libFuzzer's default (its -jobs flag would fork workers).
    nice -n 19 "$BIN_DIR/$t" -max_total_time="$seconds" -timeout="$TIMEOUT" \
        -rss_limit_mb="$RSS_MB" -print_final_stats=1 -artifact_prefix="$FUZZ/artifacts/$t/" \
        "$work" "${dirs[@]}" >"$log" 2>&1 || rc=$?
    last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    eps="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    cov="$(field cov "$last")"
    ft="$(field ft "$last")"
    corpus=$(find "$work" "${dirs[@]}" -type f | wc -l)
    found=$(($(find "$FUZZ/artifacts/$t" -type f | wc -l) - before))
    printf '%-14s %4ds  runs %10s  exec/s %7s  cov %5s  ft %6s  corpus %5d  findings %d\n' \
        "$t" "$((SECONDS - started))" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$found"
    if ((rc != 0 || found > 0)); then
        printf '    FAILED (exit %d), see %s; input in fuzz/artifacts/%s/\n' "$rc" "$log" "$t"
        grep -m1 -A3 -E 'panicked at|ERROR: libFuzzer' "$log" | sed 's/^/    /' || true
        FAILED+=("$t")
    fi
}

# --- main ---------------------------------------------------------------------------------------------------

MODE=fuzz
SECONDS_PER_TARGET=60
case "${1:-}" in
    -h | --help) usage ;;
    --list)
        list
        exit 0
        ;;
    --replay)
        MODE=replay
        shift
        ;;
    --smoke)
        MODE=smoke
        shift
        ;;
    '' | *[!0-9]*) ;;
    *)
        SECONDS_PER_TARGET=$1
        shift
        ;;
esac
[[ "${1:-}" == -* ]] && usage

ensure_tools
build
mkdir -p "$FUZZ/target/logs"
mapfile -t TARGETS < <(targets "$@")
((${#TARGETS[@]} > 0)) || die "no fuzz target built"

if [[ "$MODE" == replay || "$MODE" == smoke ]]; then
    for t in "${TARGETS[@]}"; do replay "$t"; done
fi
if [[ "$MODE" == smoke ]]; then
    SECONDS_PER_TARGET=$SMOKE_SECONDS
fi
if [[ "$MODE" == fuzz || "$MODE" == smoke ]]; then
    for t in "${TARGETS[@]}"; do fuzz "$t" "$SECONDS_PER_TARGET"; done
fi

if ((${#FAILED[@]} > 0)); then
    log "findings in: ${FAILED[*]}"
    exit 1
fi
log "${#TARGETS[@]} targets, no findings"
