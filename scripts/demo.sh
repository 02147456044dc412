#!/usr/bin/env bash
# The main job: the real driver code, under the Filter Manager simulator, delivering file events to
# the consumer, which prints them as OCSF JSON lines on stdout; the run's summary (invariants,
# verifier findings, the driver's health) goes to target/demo-summary.json and one line on stderr.
#
#   scripts/demo.sh                     defaults below
#   scripts/demo.sh --consumer stalled  any `fsense simulate` flag overrides the defaults
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh --min >&2
mkdir -p target
exec cargo run --profile demo --locked --quiet -p fsense -- simulate --operations 2000 --threads 4 \
    --queue-capacity 65536 --consumer normal --seed 1 --summary-json target/demo-summary.json "$@"
