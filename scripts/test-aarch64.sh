#!/usr/bin/env bash
# The driver's tests built for aarch64-unknown-linux-gnu and run under qemu-user (issue 30): the
# driver's own code, the simulator and every driver test as ARM64 machine code (its atomics as
# LDAR/STLR and exclusive or LSE read-modify-writes, its layouts and alignment), on an x86 host.
#
# What this does NOT show: ARM64's weak memory ordering. qemu-user translates the guest's loads and
# stores to the host's, and an x86 host keeps them in order, so a missing barrier still goes
# unseen here; Miri's weak-memory emulation checks that (scripts/check-ordering.sh,
# docs/ordering.md).
#
# Installs what it needs when missing (the target, Debian's cross gcc as linker, qemu-user).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
triple=aarch64-unknown-linux-gnu

rustup target list --toolchain "$toolchain" --installed | grep -qx "$triple" ||
    rustup target add --toolchain "$toolchain" "$triple" >/dev/null
need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "==> apt: ${need_apt[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test -p fsense-driver --locked --target "$triple"
