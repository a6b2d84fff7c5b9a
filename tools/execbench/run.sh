#!/usr/bin/env bash
# tools/execbench/run.sh: the latency vaultline's `execute run` adds over calling the provider
# directly, beside a LiteLLM proxy's, in ONE run on this machine (see tools/execbench/README.md).
#
# Builds the release binaries (vaultline, execbench), makes a Python venv with
# "litellm[proxy]" under the target dir if it is missing, starts the proxy on 127.0.0.1 in front
# of the fake provider the bench serves on a fixed port, waits for /health/liveliness, runs the
# bench, and stops the proxy. When LiteLLM cannot be installed or started the bench still runs
# and says LiteLLM was skipped. `--smoke` skips LiteLLM altogether.
#
# Usage: bash tools/execbench/run.sh [execbench args, e.g. --calls 2000 | --smoke]
# Env:   CARGO_TARGET_DIR (default target)  EXECBENCH_BUILD=1|0  EXECBENCH_VENV=<dir>
#        EXECBENCH_PYTHON=python3  EXECBENCH_LITELLM=1|0
# All traffic goes to 127.0.0.1; the only download is the pip install of litellm[proxy].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

TARGET=${CARGO_TARGET_DIR:-target}
VENV=${EXECBENCH_VENV:-$TARGET/litellm-venv}
PYTHON=${EXECBENCH_PYTHON:-python3}
USE_LITELLM=${EXECBENCH_LITELLM:-1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/execbench.XXXXXX")
LITELLM_PID=""

log() { echo "execbench: $*" >&2; }
cleanup() {
	if [[ -n $LITELLM_PID ]]; then
		kill "$LITELLM_PID" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$LITELLM_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$LITELLM_PID" 2>/dev/null || true
		wait "$LITELLM_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for a in "$@"; do
	[[ $a == --smoke ]] && USE_LITELLM=0
done

if [[ ${EXECBENCH_BUILD:-1} == 1 ]]; then
	cargo build --release -p vaultline -p vaultline-execbench
fi
BENCH="$TARGET/release/execbench"
ARGS=(--vaultline "$TARGET/release/vaultline")

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_litellm() {
	if [[ ! -x $VENV/bin/litellm ]]; then
		log "installing litellm[proxy] into $VENV (once)"
		"$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install -q "litellm[proxy]" || {
			log "could not install litellm[proxy]"
			return 1
		}
	fi
	local fake_port litellm_port key
	fake_port=$(free_port)
	litellm_port=$(free_port)
	key="sk-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	cat >"$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: deepseek-chat
    litellm_params:
      model: openai/deepseek-chat
      api_base: http://127.0.0.1:$fake_port/v1
      api_key: fake-key-0000000001
YAML
	LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_MASTER_KEY=$key LITELLM_LOG=ERROR \
		"$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$litellm_port" \
		>"$WORK/litellm.log" 2>&1 &
	LITELLM_PID=$!
	log "waiting for LiteLLM on 127.0.0.1:$litellm_port (pid $LITELLM_PID)"
	for _ in $(seq 240); do
		if curl -fsS "http://127.0.0.1:$litellm_port/health/liveliness" >/dev/null 2>&1; then
			# The proxy forwards to the fake, which the bench serves on $fake_port.
			ARGS+=(--fake-port "$fake_port" --litellm-url "http://127.0.0.1:$litellm_port")
			export LITELLM_MASTER_KEY=$key
			return 0
		fi
		kill -0 "$LITELLM_PID" 2>/dev/null || break
		sleep 0.5
	done
	log "LiteLLM did not become ready; its log ends:"
	tail -n 20 "$WORK/litellm.log" >&2 || true
	return 1
}

if [[ $USE_LITELLM == 1 ]]; then
	start_litellm || log "SKIP: LiteLLM (the bench runs without it)"
fi
"$BENCH" "${ARGS[@]}" "$@"
