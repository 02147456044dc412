#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian/Ubuntu machine that has only
# rustup and cargo. Idempotent; each step says what it does. Our machines set RUSTUP_AUTO_INSTALL=0,
# so targets and components are added explicitly.
#
#   scripts/setup.sh          everything (used by scripts/test.sh)
#   scripts/setup.sh --min    only what `fsense simulate` needs (used by scripts/demo.sh)
#   scripts/setup.sh --mutants only what scripts/mutants.sh needs: the toolchain and cargo-mutants
#                              (not in the default set: it takes ~10 minutes to build)
#
# cargo-make is not installed: on Linux `cargo make package` only runs scripts/package.sh, which
# the tests call directly (installing cargo-make takes ~3 minutes). On a Windows build host it runs
# the WDK flow: `cargo install --locked cargo-make` there (docs/windows.md, step 9).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
say() { printf '==> %s\n' "$*"; }

say "Rust $toolchain: components clippy, rustfmt"
rustup toolchain list | grep -q "^$toolchain" || rustup toolchain install "$toolchain" --profile minimal
rustup component add --toolchain "$toolchain" clippy rustfmt >/dev/null

[ "${1:-}" = "--min" ] && exit 0

if [ "${1:-}" = "--mutants" ]; then
    # Pinned: a newer cargo-mutants generates other mutants, so counts would not compare.
    if ! cargo mutants --version 2>/dev/null | grep -qx 'cargo-mutants 27.1.0'; then
        say "cargo install cargo-mutants 27.1.0 (scripts/mutants.sh)"
        cargo install --locked --quiet --version 27.1.0 cargo-mutants
    fi
    exit 0
fi

say "Rust targets: x86_64-pc-windows-msvc and aarch64-pc-windows-msvc (fsense.sys), x86_64-pc-windows-gnu (fsense.exe)"
rustup target add --toolchain "$toolchain" x86_64-pc-windows-msvc aarch64-pc-windows-msvc x86_64-pc-windows-gnu >/dev/null

say "nightly: miri, rust-src (Miri on the unsafe wrappers; cargo-fuzz)"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add --toolchain nightly miri rust-src >/dev/null

need_apt=()
command -v x86_64-w64-mingw32-gcc >/dev/null || need_apt+=(gcc-mingw-w64-x86-64)
command -v osslsigncode >/dev/null || need_apt+=(osslsigncode)
command -v openssl >/dev/null || need_apt+=(openssl)
# The content tests' web server (HTTP and HTTPS on 127.0.0.1) is Python's http.server.
command -v python3 >/dev/null || need_apt+=(python3)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v nats-server >/dev/null || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
    say "apt: ${need_apt[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo-fuzz >/dev/null; then
    say "cargo install cargo-fuzz"
    cargo install --locked --quiet cargo-fuzz
fi
say "setup done"
