#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this and nothing else):
# format, lints, the cargo tests (unit + end-to-end over stdio and HTTP), benchmark
# smokes (metering, execute), the D1 check (migrations/ on wrangler's local D1), the
# official MCP conformance suite, and the official TypeScript and Python clients.
# Installs what it needs (Node 22 and npm packages such as wrangler, a Python venv)
# under .tools-cache/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stages=0
stage() { echo; echo "=== $* ==="; }

stage "cargo fmt --check"
cargo fmt --all --check
stages=$((stages + 1))

stage "cargo clippy (all targets, warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings
stages=$((stages + 1))

stage "cargo test"
cargo test --workspace
stages=$((stages + 1))

stage "D1 check: migrations/ applied by wrangler's local D1 give vaultline's schema"
cargo build -q --bin vaultline
bash tools/d1check/run.sh target/debug/vaultline
stages=$((stages + 1))

stage "metering benchmark smoke (prints numbers, gates nothing but a crash or a wrong count)"
cargo run -q -p vaultline-meterbench -- --smoke
stages=$((stages + 1))

stage "execute benchmark smoke (the ladder over the fake provider; no LiteLLM)"
cargo build -q --bin vaultline
cargo run -q -p vaultline-execbench -- --smoke --vaultline target/debug/vaultline
stages=$((stages + 1))

stage "MCP conformance suite (active and pending)"
cargo build --bin vaultline
bash tools/conformance/run.sh target/debug/vaultline
stages=$((stages + 1))

stage "official TypeScript and Python SDK clients"
bash tools/clients/run.sh target/debug/vaultline
stages=$((stages + 1))

echo
echo "suite: ${stages} passed, 0 failed"
