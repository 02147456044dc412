#!/usr/bin/env bash
# Builds the fsense driver package on Linux (what `cargo make package` runs):
#
#   <target dir>/package/fsense.sys   driver image: release cdylib for x86_64-pc-windows-msvc linked by
#                                     rust-lld, checksum verified, test-signed with osslsigncode
#   <target dir>/package/fsense.cer   the freshly generated test certificate (DER), for the VM's stores
#   <target dir>/package/fsense.inf   inf/fsense.inf
#   <target dir>/package/fsense.exe   the consumer, cross-built for x86_64-pc-windows-gnu (mingw-w64),
#                                     profile `consumer` (optimised, no whole-program LTO)
#   <target dir>/package/arm64/fsense.sys  the same driver for aarch64-pc-windows-msvc, test-signed
#                                     with the same certificate, checked as an ARM64 image (its
#                                     A64 code too: data imports, stack per entry point); the
#                                     INF's NTarm64 sections install it ([SourceDisksFiles.arm64])
#
# then checks the whole package with fsense-pkgcheck, after printing what it reads in the driver's
# code (data imports, stack per entry point, largest frame; docs/windows.md has today's numbers). The signing key is generated per run into
# <target dir>/package-signing/ and never enters the package (or git).
#
# Needs: rustup targets x86_64-pc-windows-msvc, aarch64-pc-windows-msvc and x86_64-pc-windows-gnu
# (scripts/setup.sh adds them), osslsigncode, openssl,
# gcc-mingw-w64-x86-64 (Debian package names).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
package_dir=$target_dir/package
signing_dir=$target_dir/package-signing
driver_target=x86_64-pc-windows-msvc
# Windows on ARM (issue 30): the ARM64 image goes where the INF's [SourceDisksFiles.arm64] says.
arm64_target=aarch64-pc-windows-msvc
arm64_dir=$package_dir/arm64
consumer_target=x86_64-pc-windows-gnu

step() { printf '==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

step "Checking tools"
for tool in cargo rustup osslsigncode openssl x86_64-w64-mingw32-gcc; do
    command -v "$tool" >/dev/null || fail "$tool not found (Debian: apt-get install osslsigncode openssl gcc-mingw-w64-x86-64)"
done
installed_targets=$(rustup target list --installed)
for target in "$driver_target" "$arm64_target" "$consumer_target"; do
    grep -qx "$target" <<<"$installed_targets" || fail "rust target $target missing: rustup target add $target"
done

# package-arm64/ is where earlier versions of this script put the ARM64 image.
rm -rf "$package_dir" "$signing_dir" "$target_dir/package-arm64"
mkdir -p "$package_dir" "$signing_dir"

step "Building the checker (fsense-pkgcheck)"
cargo build --quiet --locked -p fsense-pkgcheck
pkgcheck=$target_dir/debug/fsense-pkgcheck

step "Building fsense.sys (release: lto, codegen-units=1, panic=abort; rust-lld, flags from build.rs)"
driver_log=$signing_dir/driver-build.log
if ! cargo rustc --locked -p fsense-driver --lib --release --target "$driver_target" --crate-type cdylib 2>&1 | tee "$driver_log"; then
    if grep -q fsense_panic_is_reachable "$driver_log"; then
        fail "fsense.sys did not link: a panic path is still reachable in the driver (src/panic.rs: the handler calls the undefined fsense_panic_is_reachable). Look for indexing, unwrap/expect, unchecked arithmetic or slicing on code changed since the last good build; use get(), checked_* and explicit errors"
    fi
    fail "building fsense.sys failed (log: $driver_log)"
fi
unsigned=$signing_dir/fsense.unsigned.sys
cp "$target_dir/$driver_target/release/fsense_driver.dll" "$unsigned"

step "Checksum: what the linker wrote vs our own computation"
"$pkgcheck" fix-checksum "$unsigned"
step "Checking the unsigned image (the package check at the end is the gate)"
"$pkgcheck" image "$unsigned" || printf 'warning: the unsigned image has findings; continuing so the package check reports everything\n' >&2

step "Code report: data imports, stack per entry point, largest frame (the package check gates on it)"
report_start=$(date +%s%N)
"$pkgcheck" report "$unsigned" | tee "$signing_dir/code-report.txt" || true
report_ms=$((($(date +%s%N) - report_start) / 1000000))
printf 'code checks took %d ms\n' "$report_ms"

step "Generating a test-signing certificate (fresh key, kept out of the package)"
openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 90 \
    -subj "/CN=fsense test signing (not for production)" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=codeSigning" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$signing_dir/fsense-test.key" -out "$signing_dir/fsense-test.pem" 2>/dev/null
chmod 600 "$signing_dir/fsense-test.key"
openssl x509 -in "$signing_dir/fsense-test.pem" -outform der -out "$package_dir/fsense.cer"

step "Test-signing fsense.sys (osslsigncode, SHA-256; it also rewrites the checksum)"
osslsigncode sign -certs "$signing_dir/fsense-test.pem" -key "$signing_dir/fsense-test.key" \
    -h sha256 -n "fsense minifilter" -in "$unsigned" -out "$package_dir/fsense.sys" >/dev/null
osslsigncode verify -CAfile "$signing_dir/fsense-test.pem" -in "$package_dir/fsense.sys" >"$signing_dir/verify.log" 2>&1 ||
    fail "osslsigncode verify rejected the signed image (log: $signing_dir/verify.log)"

step "Building the ARM64 fsense.sys ($arm64_target, rust-lld) into $arm64_dir"
mkdir -p "$arm64_dir"
arm64_log=$signing_dir/driver-arm64-build.log
# Linker and flags (rust-lld, +crt-static, panic=abort) from .cargo/config.toml, as for x64.
if ! cargo rustc --locked -p fsense-driver --lib --release --target "$arm64_target" --crate-type cdylib >"$arm64_log" 2>&1; then
    grep -q fsense_panic_is_reachable "$arm64_log" &&
        fail "the ARM64 fsense.sys did not link: a panic path is still reachable in the driver for aarch64 (src/panic.rs; log: $arm64_log)"
    fail "building the ARM64 fsense.sys failed (log: $arm64_log)"
fi
arm64_unsigned=$signing_dir/fsense-arm64.unsigned.sys
cp "$target_dir/$arm64_target/release/fsense_driver.dll" "$arm64_unsigned"
"$pkgcheck" fix-checksum "$arm64_unsigned"
step "Code report for the ARM64 image (A64: data imports, stack per entry point; the image check gates on it)"
"$pkgcheck" report "$arm64_unsigned" | tee "$signing_dir/code-report-arm64.txt" || true
osslsigncode sign -certs "$signing_dir/fsense-test.pem" -key "$signing_dir/fsense-test.key" \
    -h sha256 -n "fsense minifilter" -in "$arm64_unsigned" -out "$arm64_dir/fsense.sys" >/dev/null
osslsigncode verify -CAfile "$signing_dir/fsense-test.pem" -in "$arm64_dir/fsense.sys" >"$signing_dir/verify-arm64.log" 2>&1 ||
    fail "osslsigncode verify rejected the signed ARM64 image (log: $signing_dir/verify-arm64.log)"
"$pkgcheck" image --arch arm64 --require-signature "$arm64_dir/fsense.sys" ||
    fail "the ARM64 image check failed (findings above)"

step "Copying fsense.inf"
cp inf/fsense.inf "$package_dir/fsense.inf"

step "Building fsense.exe (consumer, $consumer_target via mingw-w64)"
# A consumer failure does not stop the flow: the package check below still reports everything else.
consumer_log=$signing_dir/consumer-build.log
consumer_error=
if cargo build --locked --profile consumer -p fsense --bin fsense --target "$consumer_target" 2>&1 | tee "$consumer_log"; then
    cp "$target_dir/$consumer_target/consumer/fsense.exe" "$package_dir/fsense.exe"
elif grep -q "no bin target named" "$consumer_log"; then
    consumer_error="crates/fsense has no \`fsense\` binary target yet, so the package has no fsense.exe"
else
    consumer_error="building fsense.exe failed (log: $consumer_log)"
fi
[ -z "$consumer_error" ] || printf 'error: %s\n' "$consumer_error" >&2

step "Checking the package (fsense-pkgcheck package)"
"$pkgcheck" package "$package_dir" --scripts windows || fail "the package check failed (findings above)"
[ -z "$consumer_error" ] || fail "$consumer_error"

step "Package ready in $package_dir"
ls -l "$package_dir"
