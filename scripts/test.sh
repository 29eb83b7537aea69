#!/usr/bin/env bash
# The whole Siren test suite: the one command README.md documents, and what .ci/run calls.
#
# Needs libclang (RocksDB's bindings); .ci/run installs it, README.md says how.
# Uses a shared target directory outside the checkout (so a fresh clone does not rebuild every
# dependency), then runs every test of the workspace. The services the backends are proven
# against (PostgreSQL, OpenLDAP slapd) are installed if missing (apt), started here on loopback
# ports in a temporary directory, and stopped on exit; the DNS tests start their own dnsmasq,
# the cluster tests their own nats-server (installed here if missing);
# tmux (for the `siren chat` terminal tests) and promtool (the metrics lint) are installed if
# missing.
# The wasm sample plugins are built first (scripts/build-plugins.sh), the client core is
# checked to build for wasm32 (scripts/check-wasm-core.sh), and the browser client is built
# (scripts/build-web.sh) with Playwright and chromium for its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/siren-target}"

services=$(mktemp -d /tmp/siren-services.XXXXXX)
# PostgreSQL runs as the postgres user, which must be able to reach its directory.
chmod 755 "$services"
stop_services() {
  scripts/services/postgres.sh stop "$services/postgres" >/dev/null 2>&1 || true
  scripts/services/slapd.sh stop "$services/slapd" >/dev/null 2>&1 || true
  rm -rf "$services"
}
trap stop_services EXIT

# The terminal tests of `siren chat` drive it in tmux (send-keys / capture-pane); the metrics
# test lints the exposition with `promtool check metrics` (Debian's prometheus package).
missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "${missing[*]} missing and installing needs root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== services: PostgreSQL, slapd (in $services)"
scripts/services/postgres.sh start "$services/postgres"
# shellcheck disable=SC1091
source "$services/postgres/postgres.env"
scripts/services/slapd.sh start "$services/slapd"
# shellcheck disable=SC1091
source "$services/slapd/slapd.env"

if [ -x scripts/build-plugins.sh ]; then
  echo "== wasm plugins (scripts/build-plugins.sh)"
  scripts/build-plugins.sh
fi

echo "== client core for wasm32 (scripts/check-wasm-core.sh)"
scripts/check-wasm-core.sh

# The integration tests (siren-tests) start the real `sirend` and `siren` binaries, and the
# native-plugin tests load the cdylibs: build everything first.
# The browser client (siren-client/web) and what its tests drive it with: Playwright from npm
# (pinned by package-lock.json; it downloads no browser) and Debian's chromium.
echo "== browser client (scripts/build-web.sh)"
scripts/build-web.sh
# shellcheck source=lib/packages.sh
source scripts/lib/packages.sh
ensure_packages chromium
# The cluster tests (siren-tests/tests/cluster.rs) start their own nats-server on loopback.
ensure_packages nats-server
(cd siren-client/web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)

echo "== build"
cargo build --workspace --all-targets --locked
echo "== tests"
cargo test --workspace --locked "$@"

# The benchmark's smoke check (issue 14): every measurement of `siren-bench --quick`, in the
# debug build, against PostgreSQL too. It fails only if the bench itself breaks (a server that
# does not start, a message lost or duplicated, a protocol error), never on a timing. Skipped
# when the arguments select some tests only.
if [ $# -eq 0 ]; then
  echo "== bench smoke check (siren-bench --quick)"
  "$CARGO_TARGET_DIR/debug/siren-bench" --quick --sirend "$CARGO_TARGET_DIR/debug/sirend" \
    --postgres "$SIREN_TEST_POSTGRES_URL"
fi
