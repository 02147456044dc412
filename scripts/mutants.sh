#!/usr/bin/env bash
# Mutation testing (issue 17): cargo-mutants changes the code one small edit at a time (a `>` made
# `>=`, a function body replaced by a default value, ...) and runs the area's tests against each
# change; a change no test notices ("missed") is a behaviour nothing pins down. Not part of
# scripts/test.sh: it builds and tests once per mutant (times in BENCHMARKS.md, "Mutation testing").
#
#   scripts/mutants.sh                      all three areas, one after the other
#   scripts/mutants.sh proto driver         only these areas (proto, content, driver)
#
# Areas, and the tests run against each mutant:
#   proto    crates/fsense-proto (all of it)            fsense-proto's tests
#   content  crates/fsense-content/src/{rules,engine}.rs fsense-content's tests without the
#                                                        `distribution` feature (the TUF tests
#                                                        need minutes and test neither file)
#   driver   src/sensor.rs, src/delivery.rs              the driver's tests that run them:
#                                                        sensor_logic, sensor_config, simulator,
#                                                        driver_no_alloc, ffi_wrappers
#
# The simulator runs fail any I/O callback that takes 50 ms (it would mean the driver waited), a
# wall-clock check: on a busy machine at niceness 19 the unmutated baseline already fails it.
# There, run the driver area with NICE=0, or on an idle machine.
#
# Equivalent mutants (no test can tell them apart from the code) are excluded, each with its
# reason, in .cargo/mutants.toml, which cargo-mutants reads itself.
#
# Environment:
#   MUTANTS_JOBS=N      builds in parallel (default 1; each needs its own copy of the tree)
#   MUTANTS_TIMEOUT=S   floor of the per-mutant test timeout in seconds (default 60; cargo-mutants
#                       raises it to 5x the unmutated tests' time when that is longer)
#   MUTANTS_ARGS="..."  more cargo-mutants arguments, e.g. "--shard 1/4" or "-F BatchView"
#   PROPTEST_CASES=N    property-test cases per test while mutating (default 16: every test runs
#                       once per mutant; the normal suite keeps its full counts)
#   NICE=N              niceness of the run (default 19: it is a background job)
#   MUTANTS_TARGET_DIR  where the builds go (default target/mutants-build; one directory per area)
#   SKIP_SETUP=1        do not run scripts/setup.sh --mutants (which installs cargo-mutants)
#
# Output: target/mutants/AREA/mutants.out/ (cargo-mutants' own: caught.txt, missed.txt,
# unviable.txt, timeout.txt, outcomes.json, a log per mutant) and target/mutants/summary.txt, one
# line per area with the counts and the share of viable mutants caught. Exits non-zero if any
# mutant was missed or timed out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

[ "${SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh --mutants

areas=("$@")
[ ${#areas[@]} -gt 0 ] || areas=(proto content driver)
out="$root/target/mutants"
mkdir -p "$out"
summary="$out/summary.txt"
export PROPTEST_CASES="${PROPTEST_CASES:-16}"
# The scratch copies have no .git for build.rs to ask: a fixed build id, with every kind of hex
# digit, gives the driver's build-id test something to check.
export FSENSE_BUILD_ID="${FSENSE_BUILD_ID:-0123456789abcdefABCDEF0123456789}"
# One target directory per area, shared by its runs, so dependencies build once. Per area, not
# one for all: the scratch copies of different areas build the same workspace crates under the
# same artifact names, and two runs at once would overwrite each other's mutated builds.
build_root="${MUTANTS_TARGET_DIR:-$root/target/mutants-build}"

area_args() {
    case "$1" in
        # --tests: no doctests (there are none; rustdoc would still run once per mutant).
        proto) echo "--package fsense-proto --cargo-test-arg=--tests" ;;
        content) echo "--package fsense-content --no-default-features --cargo-test-arg=--tests \
            --file crates/fsense-content/src/rules.rs --file crates/fsense-content/src/engine.rs" ;;
        # The test targets that run sensor.rs and delivery.rs; layout.rs, verifier_rules.rs and
        # win32_rules.rs test struct layouts and the simulator's own rules, not this code.
        driver) echo "--package fsense-driver --file src/sensor.rs --file src/delivery.rs \
            --cargo-test-arg=--lib --cargo-test-arg=--test=sensor_logic \
            --cargo-test-arg=--test=sensor_config --cargo-test-arg=--test=simulator \
            --cargo-test-arg=--test=driver_no_alloc --cargo-test-arg=--test=ffi_wrappers" ;;
        *)
            echo "error: unknown area '$1' (areas: proto, content, driver)" >&2
            return 1
            ;;
    esac
}

# Lines in one of cargo-mutants' result lists (0 when the list is missing).
count() { if [ -f "$1" ]; then grep -c . "$1" || true; else echo 0; fi; }

# A sharded run (`--shard K/N` in MUTANTS_ARGS) keeps its own results, so that the shards of an
# area can be run one at a time (and resumed) without overwriting each other.
shard=$(sed -n 's|.*--shard[= ]\([0-9]*\)/\([0-9]*\).*|\1of\2|p' <<<"${MUTANTS_ARGS:-}")

status=0
for area in "${areas[@]}"; do
    args=$(area_args "$area")
    name="$area${shard:+-shard$shard}"
    started=$(date +%s)
    printf '==> cargo mutants: %s (%s)\n' "$name" "$args"
    # shellcheck disable=SC2086 # args and MUTANTS_ARGS are word lists on purpose
    CARGO_TARGET_DIR="$build_root/$area" nice -n "${NICE:-19}" cargo mutants $args --jobs "${MUTANTS_JOBS:-1}" \
        --minimum-test-timeout "${MUTANTS_TIMEOUT:-60}" --output "$out/$name" \
        ${MUTANTS_ARGS:-} || status=1
    dir="$out/$name/mutants.out"
    caught=$(count "$dir/caught.txt")
    missed=$(count "$dir/missed.txt")
    unviable=$(count "$dir/unviable.txt")
    timeout=$(count "$dir/timeout.txt")
    viable=$((caught + missed + timeout))
    share=$(awk -v c="$caught" -v v="$viable" 'BEGIN { if (v) printf "%.1f", 100 * c / v; else printf "-" }')
    line=$(printf '%-18s caught %4d  missed %3d  unviable %3d  timeout %3d  caught/viable %s %%  (%d min, %s)' \
        "$name" "$caught" "$missed" "$unviable" "$timeout" "$share" \
        $((($(date +%s) - started + 59) / 60)) "$(date -u +%Y-%m-%dT%H:%MZ)")
    echo "$line"
    # Keep the other areas' (and shards') lines from earlier runs; replace this one's.
    { grep -v "^$name " "$summary" 2>/dev/null || true; echo "$line"; } >"$summary.new"
    mv "$summary.new" "$summary"
done
echo "==> summary ($summary)"
cat "$summary"
exit "$status"
