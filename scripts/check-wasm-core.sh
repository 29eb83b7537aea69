#!/usr/bin/env bash
# Checks that the client core (siren-client-core) and the session code (siren-client-session),
# with siren-proto and siren-api under them, build for wasm32-unknown-unknown: the browser client
# runs the same code as `siren`.
#
# Uses Debian's Rust for wasm (rustc-web, cargo-web, rust-web-src; std built from source with
# -Zbuild-std), as scripts/build-plugins.sh does, installing it when missing. Output goes to
# ${CARGO_TARGET_DIR:-target}/wasm-core.
set -euo pipefail
cd "$(dirname "$0")/.."
target_base="${CARGO_TARGET_DIR:-$PWD/target}"

# shellcheck source=lib/packages.sh
source scripts/lib/packages.sh
ensure_packages rustc-web cargo-web rust-web-src lld-14

echo "== client core and session for wasm32 ($(/usr/bin/rustc --version))"
# rustup's shims in ~/.cargo/bin would shadow Debian's cargo and rustc: name them explicitly.
env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-14 \
  CARGO_TARGET_DIR="$target_base/wasm-core" \
  /usr/bin/cargo build --quiet --locked --release -Zbuild-std=std,panic_abort \
  --target wasm32-unknown-unknown -p siren-client-core -p siren-client-session --lib
ls -l "$target_base/wasm-core/wasm32-unknown-unknown/release/"libsiren_client_*.rlib
echo "client core and session build for wasm32"
