#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). Installs what it needs first.
#
#   1. format and lints (host, and the Windows targets: the driver and the consumer's port client)
#   2. every test of the workspace (the driver's code runs under the Filter Manager simulator;
#      fanotify tests need root and a private tmpfs, which they make themselves), and the driver's
#      tests again as ARM64 code under qemu-user (scripts/test-aarch64.sh)
#   3. the driver package: scripts/package.sh (what `cargo make package` runs) -> target/package
#      (PE, signature, INF checks), then the package integration test over it, a syntax check of
#      the PowerShell kit, and proof that the no-panic link check is live
#   4. Miri on the driver's FFI wrapper tests, a small simulator run, the driver's memory
#      ordering under weak-memory emulation (scripts/check-ordering.sh: several seeds, and a
#      planted Relaxed that must fail it), the consumer's parsers, and the Windows port client's
#      buffer handling in a small session against the simulated Win32 functions
#   5. a fuzz smoke: every cargo-fuzz target for FUZZ_SECONDS (default 20) each
#
# Miri interprets on one core, so its stages run in the background from the start, beside the
# others (their log is printed when they end); the fuzz targets run two at a time.
#
# Environment: FUZZ_SECONDS=N to change the fuzz time; SKIP_SETUP=1 to skip scripts/setup.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
fuzz_seconds=${FUZZ_SECONDS:-15}
start=$(date +%s)
stage() { printf '\n==== %s (%ss)\n' "$*" "$(($(date +%s) - start))"; }

[ "${SKIP_SETUP:-0}" = 1 ] || scripts/setup.sh

logs="${CARGO_TARGET_DIR:-$root/target}/test-logs"
mkdir -p "$logs"

miri_stages() {
    stage "Miri: driver FFI wrappers, and a small simulator run through them"
    MIRIFLAGS="-Zmiri-permissive-provenance" cargo +nightly miri test --locked -p fsense-driver --test ffi_wrappers
    MIRIFLAGS="-Zmiri-permissive-provenance" cargo +nightly miri test --locked -p fsense-driver \
        --test simulator -- --exact small_run_for_miri

    stage "Miri: memory ordering under the C11 model (tests/ordering.rs, 8 seeds), and proof the check is live (a planted Relaxed must fail it)"
    scripts/check-ordering.sh

    stage "Miri: the consumer's parsers of kernel and port buffers (fanotify records, port framing, paths)"
    PROPTEST_CASES=4 MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test --locked -p fsense \
        --no-default-features --lib -- fanotify::parse port_framing paths::
    stage "Miri: the Windows port client's buffers (receive slots, FILTER_MESSAGE_HEADER, batch framing, FILTER_REPLY_HEADER, cancel, hostile byte counts)"
    MIRIFLAGS="-Zmiri-permissive-provenance" cargo +nightly miri test --locked -p fsense \
        --no-default-features --lib -- --exact \
        ffi::windows::port::tests::hostile_transfer_counts_never_read_past_the_buffer \
        ffi::windows::port::tests::several_receives_take_every_message_reply_and_cancel_cleanly
    stage "Miri: done"
}
miri_log="$logs/miri.log"
# In its own process group (set -m), so that a failed stage ends the whole Miri job with the script.
set -m
miri_stages >"$miri_log" 2>&1 &
miri_pid=$!
set +m
trap 'kill -- -"$miri_pid" 2>/dev/null || true' EXIT
echo "Miri runs in the background (log: $miri_log)"

stage "cargo fmt --check; layout (no file over 800 lines, no import circle)"
cargo fmt --all -- --check
python3 scripts/check-layout.py

stage "cargo clippy (host, all targets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "cargo clippy (driver for x86_64-pc-windows-msvc; consumer for x86_64-pc-windows-msvc)"
cargo clippy -p fsense-driver --target x86_64-pc-windows-msvc --locked -- -D warnings
cargo clippy -p fsense --target x86_64-pc-windows-msvc --locked -- -D warnings

stage "cargo test (workspace)"
cargo test --workspace --locked

stage "the driver's tests as ARM64 code: aarch64-unknown-linux-gnu under qemu-user (scripts/test-aarch64.sh)"
scripts/test-aarch64.sh

stage "every benchmark once, in test mode (criterion runs each one iteration; dev profile)"
cargo test --workspace --locked --benches

stage "fsense simulate in every consumer mode (exit 0 only if every invariant and check holds)"
for mode in absent normal slow stalled crash malicious; do
    summary="${CARGO_TARGET_DIR:-$root/target}/simulate-$mode.json"
    cargo run --quiet --locked -p fsense -- simulate --operations 20000 --rate 0 --threads 4 \
        --queue-capacity 4096 --consumer "$mode" --seed 7 --quiet --summary-json "$summary"
done

stage "driver package (scripts/package.sh, what \`cargo make package\` runs) and its checks"
scripts/package.sh
cargo test -p fsense-pkgcheck --test package --locked -- --ignored
# The structures the driver reads, laid out for ARM64 and x64 (a probe compiled for each target).
cargo test --test layout_arm64 --locked -- --ignored

stage "PowerShell kit: syntax (tree-sitter grammar), names checked against the INF and package"
scripts/check-powershell.sh

stage "the no-panic link check is live (a planted panic must fail the link)"
probe_log=$(mktemp)
if cargo rustc -p fsense-driver --lib --release --target x86_64-pc-windows-msvc \
    --crate-type cdylib --features panic-probe >"$probe_log" 2>&1; then
    echo "error: the driver linked with a reachable panic: the no-panic proof is not working" >&2
    exit 1
fi
grep -q fsense_panic_is_reachable "$probe_log" || { cat "$probe_log" >&2; exit 1; }
echo "ok: the planted panic failed the link on fsense_panic_is_reachable"

stage "fuzz smoke: ${fuzz_seconds}s per target, two at a time"
cd "$root/fuzz"
cargo +nightly fuzz build
fuzz_one() {
    local target=$1 log="$logs/fuzz-$1.log" runs
    if ! cargo +nightly fuzz run "$target" -- -max_total_time="$fuzz_seconds" -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "error: fuzz target $target failed" >&2
        return 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $target: ${runs:-?} executions in ${fuzz_seconds}s, no crash"
}
fuzz_failed=0
running=()
for target in $(cargo +nightly fuzz list); do
    fuzz_one "$target" &
    running+=($!)
    if [ ${#running[@]} -ge 2 ]; then
        wait "${running[0]}" || fuzz_failed=1
        running=("${running[@]:1}")
    fi
done
for pid in "${running[@]}"; do wait "$pid" || fuzz_failed=1; done
[ "$fuzz_failed" = 0 ] || exit 1
cd "$root"

stage "waiting for the Miri stages"
miri_status=0
wait "$miri_pid" || miri_status=$?
cat "$miri_log"
[ "$miri_status" = 0 ] || { echo "error: a Miri stage failed (exit $miri_status)" >&2; exit 1; }

stage "all checks passed"
