#!/usr/bin/env bash
# Builds every sample and test wasm plugin into components, for plugins/host's tests and bench.
#
#   scripts/build-plugins.sh            # prints the output directory last
#
# Output: $SIREN_PLUGIN_DIR if set, else ${CARGO_TARGET_DIR:-target}/plugins/<name>.wasm — the
# same place plugins/host's tests look. Incremental: cargo rebuilds only changed guests and a
# component is remade only when its core module changed, so a run with nothing changed takes a
# few seconds.
#
# Installs what is missing:
# * Debian's Rust for wasm (rustc-web, cargo-web, rust-web-src: std is built from source with
#   -Zbuild-std, so no `rustup target add` is needed), lld-14 (wasm-ld) and clang-14 (C guest);
# * wasm-tools (cargo install --locked, into /var/tmp/siren-tools so it outlives the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

target_base="${CARGO_TARGET_DIR:-$root/target}"
out="${SIREN_PLUGIN_DIR:-$target_base/plugins}"
# Debian's toolchain is not rustup's: its artifacts get their own directory.
guest_target="$target_base/plugins-build"
tools="${SIREN_TOOLS_DIR:-/var/tmp/siren-tools}"
wasm_tools_version=1.263.0

# Rust guests (members of plugins/samples) and the C guest.
rust_guests=(
  federation-allowlist auth-static credentials-static kv-memory rate-limit-filter
  directory-audit loop-forever memory-hog wrong-version wants-wasi misbehaving-credentials
)

echo "== wasm plugins: toolchain"
# shellcheck source=lib/packages.sh
source scripts/lib/packages.sh
ensure_packages rustc-web cargo-web rust-web-src lld-14 clang-14

export PATH="$tools/bin:$PATH"
if ! command -v wasm-tools >/dev/null 2>&1; then
  echo "installing wasm-tools $wasm_tools_version into $tools (about 5 minutes, once)"
  cargo install --locked --quiet --root "$tools" "wasm-tools@$wasm_tools_version"
fi
/usr/bin/rustc --version
wasm-tools --version

mkdir -p "$out" "$guest_target"

echo "== wasm plugins: Rust guests"
# rustup's shims in ~/.cargo/bin would shadow Debian's cargo and rustc: name them explicitly.
# One cargo run for every guest: each component keeps only its own world (the SDK emits the
# full world description in the export macro, inside the guest).
env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-14 CARGO_TARGET_DIR="$guest_target" \
  /usr/bin/cargo build --quiet --locked --release -Zbuild-std=std,panic_abort \
  --target wasm32-unknown-unknown --manifest-path plugins/samples/Cargo.toml --workspace

for guest in "${rust_guests[@]}"; do
  core="$guest_target/wasm32-unknown-unknown/release/${guest//-/_}.wasm"
  component="$out/$guest.wasm"
  if [[ ! -e "$component" || "$core" -nt "$component" ]]; then
    wasm-tools component new "$core" -o "$component.tmp"
    mv "$component.tmp" "$component"
  fi
done

echo "== wasm plugins: C guest"
c_src=plugins/samples/c-allowlist/allowlist.c
c_component="$out/c-allowlist.wasm"
if [[ ! -e "$c_component" || "$c_src" -nt "$c_component" ||
      plugins/wit/siren-plugin.wit -nt "$c_component" ]]; then
  c_build="$guest_target/c-allowlist"
  mkdir -p "$c_build"
  clang-14 --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin -Wall -Wextra -Werror \
    -Wl,--no-entry -o "$c_build/core.wasm" "$c_src"
  wasm-tools component embed plugins/wit --world federation-plugin "$c_build/core.wasm" \
    -o "$c_build/embedded.wasm"
  wasm-tools component new "$c_build/embedded.wasm" -o "$c_component.tmp"
  mv "$c_component.tmp" "$c_component"
fi

ls -l "$out"
echo "wasm plugins built in $out"
