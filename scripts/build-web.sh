#!/usr/bin/env bash
# Builds the browser client: siren-web (the session code of `siren`, compiled to wasm) and its
# JavaScript bindings, next to the page's own files (siren-client/web/www/).
#
# Installs what it needs when missing: Debian's Rust for wasm (rustc-web, cargo-web,
# rust-web-src, lld-14; std built from source with -Zbuild-std, as scripts/build-plugins.sh
# does) and wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.lock
# (the two must match), built once into /var/tmp/siren-tools.
#
# Output: ${CARGO_TARGET_DIR:-target}/web-dist (siren_web_bg.wasm, siren_web.js, the page).
set -euo pipefail
cd "$(dirname "$0")/.."
target_base="${CARGO_TARGET_DIR:-$PWD/target}"
tools="${SIREN_TOOLS:-/var/tmp/siren-tools}"
out="$target_base/web-dist"

# shellcheck source=lib/packages.sh
source scripts/lib/packages.sh
ensure_packages rustc-web cargo-web rust-web-src lld-14

# The CLI must be the crate's version: read it from the lock file.
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ -z "$version" ]; then
  echo "no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
bindgen="$tools/bin/wasm-bindgen"
if ! [ -x "$bindgen" ] || [ "$("$bindgen" --version)" != "wasm-bindgen $version" ]; then
  echo "== installing wasm-bindgen-cli $version into $tools (once; a few minutes)"
  # Not --locked: its lock file pins a webpki-roots release crates.io no longer serves.
  cargo install --quiet --root "$tools" --version "=$version" wasm-bindgen-cli
fi

echo "== siren-web for wasm32 ($(/usr/bin/rustc --version))"
# rustup's shims in ~/.cargo/bin would shadow Debian's cargo and rustc: name them explicitly.
# The page downloads the module: LTO in one codegen unit and no debug info make it smaller
# (1.73 to 1.42 MB measured) at full speed (argon2id runs in it). Not `strip`: wasm-bindgen
# reads the module's target-features section (the function names, about 0.3 MB, stay).
env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  CARGO_PROFILE_RELEASE_DEBUG=false \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-14 \
  CARGO_TARGET_DIR="$target_base/web" \
  /usr/bin/cargo build --quiet --locked --release -Zbuild-std=std,panic_abort \
  --target wasm32-unknown-unknown -p siren-web --lib

rm -rf "$out"
mkdir -p "$out"
"$bindgen" --target web --no-typescript --out-dir "$out" \
  "$target_base/web/wasm32-unknown-unknown/release/siren_web.wasm"
cp siren-client/web/www/* "$out/"
ls -l "$out"
echo "browser client built in $out"
