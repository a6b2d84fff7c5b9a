#!/usr/bin/env bash
# tools/bench/run.sh: vaultline's performance baseline, measured in ONE run on this machine.
#
# Reference servers (always run):
#   bare-echo  HTTP stateful   (rmcp 3.11, LocalSessionManager, SSE replies)   - the floor of rmcp
#   bare-echo  HTTP stateless  (no sessions, plain JSON replies)
#   ts-echo    HTTP stateful   (official TypeScript SDK, express)              - the ecosystem's yardstick
#   bare-echo  stdio
# each at concurrency 1, 16, 64 (BENCH_DURATION s measured after BENCH_WARMUP s), plus cold-start
# times (spawn -> first answered tools/list). Each row gets a freshly started server, so its peak
# RSS (VmHWM) belongs to that row alone.
#
# vaultline (hooks at the bottom): the conformance fixture echo `test_simple_text`, and
# `health` / `task` / `checkpoint` behind a bearer key. BENCH_VAULTLINE=auto (default) runs them
# if target/release/vaultline exists, 1 also builds it first, 0 skips them. Each skips with a
# message when the binary is missing or lacks the commands.
#
# Usage: bash tools/bench/run.sh
# Env:   BENCH_DURATION=5 BENCH_WARMUP=1 BENCH_CONCURRENCY="1 16 64" BENCH_STARTUP_REPEAT=10
#        BENCH_VAULTLINE=auto|1|0   BENCH_VAULTLINE_BIN=target/release/vaultline
#        BENCH_TASK_ARGS / BENCH_CHECKPOINT_ARGS (until the hooks below are written)
# Output: the Markdown tables on stdout, also saved with the raw loadgen lines under target/bench/.
# All traffic goes to 127.0.0.1; every load run is bounded by loadgen (time and calls).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
LEVELS=${BENCH_CONCURRENCY:-"1 16 64"}
STARTUP_REPEAT=${BENCH_STARTUP_REPEAT:-10}
BENCH_VAULTLINE=${BENCH_VAULTLINE:-auto}
LOADGEN=target/release/loadgen
BARE=target/release/bare-echo
VAULTLINE=${BENCH_VAULTLINE_BIN:-target/release/vaultline}
TS_ECHO=tools/ts-echo
OUT_DIR=target/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vaultline-bench.XXXXXX")
RAW="$WORK/raw.txt"

LOAD_ROWS=()
STARTUP_ROWS=()
SKIPS=()
SERVER_PID=""
SERVER_URL=""
BEARER=""

log() { echo "bench: $*" >&2; }
skip() {
	local msg
	msg=$(tr '\n' ' ' <<<"$*" | tr -s ' ')
	msg=${msg% }
	log "SKIP: $msg"
	SKIPS+=("$msg")
}

# ---------------------------------------------------------------- servers
stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	kill "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.02
	done
	kill -9 "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
	SERVER_URL=""
}

cleanup() {
	stop_server
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME PORT CMD... : start CMD in the background. PORT 0: wait for the loopback
# address it prints (stdout or stderr); otherwise wait until 127.0.0.1:PORT accepts.
# Sets SERVER_PID and SERVER_URL (http://ADDR/mcp).
start_server() {
	local name=$1 port=$2 addr="" out="$WORK/$1.out"
	shift 2
	"$@" >"$out" 2>&1 &
	SERVER_PID=$!
	local deadline=$((SECONDS + 15))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			log "$name exited early: $(tail -n 5 "$out" | tr '\n' ' ')"
			wait "$SERVER_PID" 2>/dev/null || true
			SERVER_PID=""
			return 1
		fi
		if [[ $port == 0 ]]; then
			# Prefer a "listening" line; port 0 (the requested address, echoed in logs) never counts.
			addr=$({ grep -i listening "$out" || cat "$out"; } | grep -oE '(127\.0\.0\.1|localhost):[1-9][0-9]*' | head -n 1 || true)
		elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			addr=127.0.0.1:$port
		fi
		if [[ -n $addr ]]; then
			SERVER_URL="http://$addr/mcp"
			return 0
		fi
		sleep 0.02
	done
	log "$name: not listening after 15 s: $(tail -n 5 "$out" | tr '\n' ' ')"
	stop_server
	return 1
}

# ---------------------------------------------------------------- measuring
# loadgen with the bearer (if any) passed through the environment, not argv.
loadgen() {
	if [[ -n $BEARER ]]; then
		LOADGEN_BEARER=$BEARER RUST_BACKTRACE=0 "$LOADGEN" "$@"
	else
		RUST_BACKTRACE=0 "$LOADGEN" "$@"
	fi
}

field() { sed -nE "s|.* $1=([^ ]+).*|\1|p" <<<" $2"; }

# add_load_row SERVER LOADGEN_LINE
add_load_row() {
	local l=$2
	echo "$l" >>"$RAW"
	LOAD_ROWS+=("| $1 | $(field tool "$l") | $(field c "$l") | $(field calls "$l") | $(field errors "$l") | $(field 'calls/s' "$l") | $(field p50_ms "$l") | $(field p90_ms "$l") | $(field p99_ms "$l") | $(field peak_rss_mb "$l") |")
}

# probe_call TOOL ARGS: one call against SERVER_URL must succeed before a tool is measured.
probe_call() {
	local line
	line=$(loadgen --url "$SERVER_URL" --tool "$1" --args "$2" --calls 1 --duration 10 "${@:3}" 2>"$WORK/probe.err") || {
		echo "loadgen failed: $(head -c 300 "$WORK/probe.err")"
		return 1
	}
	if [[ $(field errors "$line") != 0 ]]; then
		echo "$(head -c 300 "$WORK/probe.err")"
		return 1
	fi
}

# measure_http NAME TOOL ARGS C [loadgen flags...]: one row against the running server.
measure_http() {
	local name=$1 tool=$2 args=$3 c=$4 line
	shift 4
	log "$name: $tool c=$c"
	if line=$(loadgen --url "$SERVER_URL" --tool "$tool" --args "$args" -c "$c" \
		--warmup "$WARMUP" --duration "$DURATION" --rss-pid "$SERVER_PID" --label "$name" "$@"); then
		add_load_row "$name" "$line"
	else
		LOAD_ROWS+=("| $name | $tool | $c | loadgen failed | | | | | | |")
	fi
}

# bench_http_server NAME LOADGEN_FLAGS CMD... : fresh server per concurrency level, echo tool.
bench_http_server() {
	local name=$1 flags=$2 c
	shift 2
	for c in $LEVELS; do
		start_server "$name" 0 "$@" || {
			LOAD_ROWS+=("| $name | echo | $c | server failed to start | | | | | | |")
			continue
		}
		# shellcheck disable=SC2086 # flags is a word list on purpose
		measure_http "$name" echo '{"message":"hello"}' "$c" $flags
		stop_server
	done
}

bench_stdio() {
	local name=$1 c line
	shift
	for c in $LEVELS; do
		log "$name: echo c=$c"
		if line=$(loadgen --stdio -c "$c" --warmup "$WARMUP" --duration "$DURATION" --label "$name" -- "$@"); then
			add_load_row "$name" "$line"
		else
			LOAD_ROWS+=("| $name | echo | $c | loadgen failed | | | | | | |")
		fi
	done
}

# bench_startup NAME [--stdio] -- CMD...
bench_startup() {
	local name=$1 line
	shift
	log "$name: cold start x$STARTUP_REPEAT"
	if line=$(loadgen --startup --repeat "$STARTUP_REPEAT" --timeout 30 --label "$name" "$@"); then
		echo "$line" >>"$RAW"
		STARTUP_ROWS+=("| $name | $(field runs "$line") | $(field min_ms "$line") | $(field p50_ms "$line") | $(field max_ms "$line") |")
	else
		STARTUP_ROWS+=("| $name | failed | | | |")
	fi
}

# ================================================================ vaultline hooks
# Fill these in as vaultline grows. Each one skips (with a message) instead of failing when
# the binary or a command is missing, or when the probe call does not succeed.

# Gate for all vaultline runs.
vaultline_ready() {
	if [[ $BENCH_VAULTLINE == 0 ]]; then
		skip "vaultline runs are off (BENCH_VAULTLINE=0)"
		return 1
	fi
	if [[ ! -x $VAULTLINE ]]; then
		skip "vaultline: $VAULTLINE not built (BENCH_VAULTLINE=1 builds it)"
		return 1
	fi
}

# HOOK: vaultline's conformance fixture echo, no key (compare with bare-echo stateful).
bench_vaultline_fixture() {
	if ! "$VAULTLINE" serve --help 2>/dev/null | grep -q -- '--conformance-fixtures'; then
		skip "vaultline: 'serve --conformance-fixtures' not available"
		return 0
	fi
	local c why
	for c in $LEVELS; do
		start_server vaultline-fixture 0 "$VAULTLINE" serve --http 127.0.0.1:0 --conformance-fixtures || {
			skip "vaultline fixture server did not start"
			return 0
		}
		if ! why=$(probe_call test_simple_text '{}'); then
			skip "vaultline: test_simple_text probe failed: $why"
			stop_server
			return 0
		fi
		measure_http "vaultline fixture" test_simple_text '{}' "$c"
		stop_server
	done
	bench_startup "vaultline fixture http" -- "$VAULTLINE" serve --http 127.0.0.1:0 --conformance-fixtures
}

# HOOK: arguments for `task` {"action":"get","task_id":...}. Must print the args JSON on
# stdout, creating the task first if needed (SERVER_URL and BEARER are set). Not written yet.
vaultline_task_args() {
	if [[ -n ${BENCH_TASK_ARGS:-} ]]; then
		echo "$BENCH_TASK_ARGS"
		return 0
	fi
	# Create one task in the bench org over a short stdio session, then fetch it by id.
	local out id
	out=$({
		printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
		printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/initialized"}'
		printf '%s\n' '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"task","arguments":{"action":"create","title":"bench task","instruction":"measure task get"}}}'
		sleep 1
	} | VAULTLINE_STDIO__ORG=bench timeout 20 "$VAULTLINE" serve --stdio 2>/dev/null) || true
	id=$(printf '%s' "$out" | grep -o '"id":"[0-9A-Z]\{26\}"' | head -n 1 | cut -d '"' -f 4)
	if [[ -z $id ]]; then
		echo "could not create a bench task over stdio" >&2
		return 1
	fi
	echo "{\"action\":\"get\",\"task_id\":\"$id\"}"
}

# HOOK: arguments for `checkpoint` {"action":"save",...}. Not written yet.
vaultline_checkpoint_args() {
	if [[ -n ${BENCH_CHECKPOINT_ARGS:-} ]]; then
		echo "$BENCH_CHECKPOINT_ARGS"
		return 0
	fi
	# The same content each call: the content-addressed save path (a committed write
	# that finds the existing row and moves its last_saved_at).
	echo '{"action":"save","agent":"bench","project":"bench","objective":"measure checkpoint save","recent_actions":["one","two"]}'
}

# HOOK: `health`, `task`, `checkpoint` against `vaultline serve --http` with a bearer key and a
# temporary database (VAULTLINE_DB_PATH).
bench_vaultline_tools() {
	if ! "$VAULTLINE" keys create --help >/dev/null 2>&1; then
		skip "vaultline: 'keys create' not available"
		return 0
	fi
	export VAULTLINE_DB_PATH="$WORK/vaultline-bench.db"
	# Measure the server, not its per-key rate limiter (0 = no limit).
	export VAULTLINE_HTTP__RATE_LIMIT_PER_SECOND=${BENCH_VAULTLINE_RATE_LIMIT:-0}
	if "$VAULTLINE" orgs create --help >/dev/null 2>&1; then
		"$VAULTLINE" orgs create bench >/dev/null 2>"$WORK/orgs.err" || log "orgs create bench: $(tail -n 1 "$WORK/orgs.err")"
	fi
	if ! BEARER=$("$VAULTLINE" keys create --org bench --role owner 2>"$WORK/keys.err" | tail -n 1) || [[ -z $BEARER ]]; then
		skip "vaultline: keys create failed: $(head -c 300 "$WORK/keys.err")"
		BEARER=""
		return 0
	fi
	local tool args why c
	local -a specs=("health|{\"action\":\"status\"}")
	if args=$(vaultline_task_args); then specs+=("task|$args"); else skip "vaultline task: hook not filled in"; fi
	if args=$(vaultline_checkpoint_args); then specs+=("checkpoint|$args"); else skip "vaultline checkpoint: hook not filled in"; fi
	for spec in "${specs[@]}"; do
		tool=${spec%%|*}
		args=${spec#*|}
		for c in $LEVELS; do
			start_server vaultline 0 "$VAULTLINE" serve --http 127.0.0.1:0 || {
				skip "vaultline server did not start"
				break 2
			}
			if ! why=$(probe_call "$tool" "$args"); then
				skip "vaultline: $tool probe failed: $why"
				stop_server
				break
			fi
			measure_http vaultline "$tool" "$args" "$c"
			stop_server
		done
	done
	# Stateless mode (plain JSON replies, no sessions): compare with ts-echo.
	for c in $LEVELS; do
		start_server vaultline-stateless 0 "$VAULTLINE" serve --http 127.0.0.1:0 --stateless || {
			skip "vaultline --stateless did not start"
			break
		}
		measure_http "vaultline stateless" health '{"action":"status"}' "$c" --stateless
		stop_server
	done
	# Start-up: spawn to the first answered (authenticated) tools/list, HTTP and stdio.
	if [[ -n $BEARER ]]; then
		LOADGEN_BEARER=$BEARER bench_startup "vaultline http" -- "$VAULTLINE" serve --http 127.0.0.1:0
	fi
	VAULTLINE_STDIO__ORG=bench bench_startup "vaultline stdio" --stdio -- "$VAULTLINE" serve --stdio
	BEARER=""
}

# ================================================================ main
log "building release binaries"
cargo build --release -p vaultline-loadgen -p vaultline-bare-echo
if [[ $BENCH_VAULTLINE == 1 && -z ${BENCH_VAULTLINE_BIN:-} ]]; then
	cargo build --release -p vaultline || log "vaultline failed to build; its rows will be skipped"
fi
if [[ ! -d $TS_ECHO/node_modules/@modelcontextprotocol/sdk ]]; then
	log "installing ts-echo dependencies (npm ci)"
	(cd "$TS_ECHO" && npm ci --ignore-scripts --no-audit --no-fund)
fi

load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)

bench_http_server "bare-echo stateful" "" "$BARE" --http 127.0.0.1:0
bench_http_server "bare-echo stateless" "--stateless" "$BARE" --http 127.0.0.1:0 --stateless
bench_http_server "ts-echo" "" node "$TS_ECHO/server.mjs" 0
bench_stdio "bare-echo stdio" "$BARE" --stdio

bench_startup "bare-echo http" -- "$BARE" --http 127.0.0.1:0
bench_startup "bare-echo stdio" --stdio -- "$BARE" --stdio
bench_startup "ts-echo http" -- node "$TS_ECHO/server.mjs" 0

if vaultline_ready; then
	bench_vaultline_fixture
	bench_vaultline_tools
fi

load_after=$(cut -d ' ' -f 1-3 /proc/loadavg)

report() {
	echo "## vaultline bench, $STAMP"
	echo
	echo "Machine: $(nproc) cores, $(uname -sr); $(rustc --version); node $(node --version)."
	echo "Load average before/after: $load_before / $load_after (the cores are shared; loadgen runs on them too)."
	echo "Each row: ${WARMUP} s warm-up, then ${DURATION} s measured; fresh server per row; 127.0.0.1."
	echo "calls/s and percentiles cover successful calls; peak RSS is the server's VmHWM."
	echo
	echo "| server | tool | c | calls | errors | calls/s | p50 ms | p90 ms | p99 ms | peak RSS MB |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '%s\n' "${LOAD_ROWS[@]}"
	echo
	echo "Cold start (spawn -> first answered tools/list):"
	echo
	echo "| server | runs | min ms | p50 ms | max ms |"
	echo "|---|---:|---:|---:|---:|"
	printf '%s\n' "${STARTUP_ROWS[@]}"
	if ((${#SKIPS[@]})); then
		echo
		echo "Skipped:"
		printf -- '- %s\n' "${SKIPS[@]}"
	fi
}

mkdir -p "$OUT_DIR"
report | tee "$OUT_DIR/bench-$STAMP.md"
cp "$RAW" "$OUT_DIR/bench-$STAMP.raw.txt"
log "saved $OUT_DIR/bench-$STAMP.md and .raw.txt"
