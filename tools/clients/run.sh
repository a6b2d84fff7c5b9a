#!/usr/bin/env bash
# Interop tests of vaultline with the official MCP SDK clients:
#   - TypeScript SDK (@modelcontextprotocol/sdk 1.x) over Streamable HTTP with a bearer key
#   - Python SDK (mcp 2.x, default mode=auto) over Streamable HTTP with a bearer key, and over stdio
#
#   tools/clients/run.sh [PATH_TO_VAULTLINE]      (default: <repo>/target/debug/vaultline)
#
# Needs only node/npm and python3 (with venv). Installs into <repo>/.tools-cache/clients (gitignored),
# from the npm and PyPI registries only, and skips installs that are already up to date.
# Starts its own server on 127.0.0.1 with a fresh database in a temp dir; exits non-zero if any check failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="$ROOT/.tools-cache/clients"

BIN="${1:-$ROOT/target/debug/vaultline}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
if [[ ! -x "$BIN" ]]; then
  echo "run.sh: no vaultline binary at $BIN (build it with: cargo build)" >&2
  exit 2
fi
for tool in node npm python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found on PATH" >&2; exit 2; }
done

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- TypeScript client: npm ci into the cache (the test file is copied next to its node_modules) ---
NPM_DIR="$CACHE/npm"
mkdir -p "$NPM_DIR"
npm_stamp="$(hash_of "$HERE/package.json" "$HERE/package-lock.json") node-$(node --version)"
if [[ ! -d "$NPM_DIR/node_modules" || "$(cat "$NPM_DIR/.stamp" 2>/dev/null)" != "$npm_stamp" ]]; then
  echo "== installing the TypeScript SDK client (npm ci) into $NPM_DIR"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$NPM_DIR/"
  (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$npm_stamp" > "$NPM_DIR/.stamp"
fi
cp "$HERE/ts_client_test.mjs" "$NPM_DIR/"

# --- Python client: venv in the cache ---
VENV="$CACHE/venv"
py_stamp="$(hash_of "$HERE/requirements.txt") $(python3 --version 2>&1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.stamp" 2>/dev/null)" != "$py_stamp" ]]; then
  echo "== installing the Python SDK client (pip install -r requirements.txt) into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$py_stamp" > "$VENV/.stamp"
fi

# --- a fresh server ---
TMP="$(mktemp -d "${TMPDIR:-/tmp}/vaultline-clients.XXXXXX")"
SPID=""
cleanup() {
  local rc=$?
  if [[ -n "$SPID" ]] && kill -0 "$SPID" 2>/dev/null; then
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$TMP/server.log" ]]; then
    echo "-- last lines of the HTTP server's stderr:"
    tail -n 15 "$TMP/server.log" || true
    if [[ -f "$TMP/stdio.db.stderr.log" ]]; then
      echo "-- last lines of the stdio server's stderr:"
      tail -n 15 "$TMP/stdio.db.stderr.log" || true
    fi
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

DB="$TMP/http.db"
"$BIN" --db "$DB" orgs create acme >/dev/null 2>"$TMP/setup.log"
KEY="$("$BIN" --db "$DB" keys create --org acme --role operator 2>>"$TMP/setup.log")"
[[ -n "$KEY" ]] || { echo "run.sh: keys create printed no key" >&2; cat "$TMP/setup.log" >&2; exit 1; }

: >"$TMP/server.log" # exists before the server's own redirect opens it (the loop below reads it at once)
"$BIN" --db "$DB" serve --http 127.0.0.1:0 2>>"$TMP/server.log" &
SPID=$!
URL=""
for _ in $(seq 1 300); do
  URL="$(sed -n 's|.*vaultline listening on \(http://[^ ]*/mcp\).*|\1|p' "$TMP/server.log" | head -n 1)"
  [[ -n "$URL" ]] && break
  kill -0 "$SPID" 2>/dev/null || { echo "run.sh: the server exited at startup" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$URL" ]] || { echo "run.sh: the server did not report its address within 30 s" >&2; exit 1; }
echo "== server $URL (pid $SPID, binary $BIN)"

# --- the tests ---
export VAULTLINE_URL="$URL" VAULTLINE_KEY="$KEY"
results=()
any_failed=0
run_test() { # label, command...
  local label="$1" rc=0 last
  shift
  echo "== $label"
  "$@" 2>&1 | tee "$TMP/out.log" || rc=$?
  last="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$TMP/out.log" | tail -n 1 || true)"
  [[ -n "$last" ]] || last="no result line (exit $rc)"
  [[ $rc -eq 0 ]] || any_failed=1
  results+=("$label: $last")
}
run_test "TypeScript SDK client (HTTP)" node "$NPM_DIR/ts_client_test.mjs"
run_test "Python SDK client (HTTP + stdio)" \
  "$VENV/bin/python" "$HERE/py_client_test.py" --binary "$BIN" --db "$TMP/stdio.db"

echo "== summary"
printf '%s\n' "${results[@]}"
if [[ $any_failed -ne 0 ]]; then
  echo "FAILED"
  exit 1
fi
echo "all passed"
