#!/usr/bin/env bash
# The relay end to end on one machine: starts a demo hub on loopback, starts
# `aicp-bridge serve` against it as an MCP host would, and plays a short host
# session through it, printing each message that goes in (→) and comes out (←).
#
# Usage: scripts/demo.sh [path/to/aicp-bridge]   (default: aicp-bridge on PATH, else a release build)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-$(command -v aicp-bridge || true)}
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=target/release/aicp-bridge
fi
cargo build --release --quiet --example demo_hub

# The hub runs until its stdin closes: give it a pipe we hold open.
URL_FILE=$(mktemp)
trap 'rm -f "$URL_FILE"' EXIT
exec {HUB_IN}> >(exec target/release/examples/demo_hub > "$URL_FILE")
for _ in $(seq 100); do [ -s "$URL_FILE" ] && break; sleep 0.05; done
URL=$(head -n1 "$URL_FILE")
echo "demo hub listening at $URL"
echo "bridge: $BIN serve --hub $URL"
echo

coproc BRIDGE { "$BIN" serve --hub "$URL" --log-level warn; }

say() {
  echo "→ $1"
  echo "$1" >&"${BRIDGE[1]}"
}
hear() {
  local line
  IFS= read -r -t 10 line <&"${BRIDGE[0]}" || { echo "no answer from the bridge" >&2; exit 1; }
  echo "← $line"
}

say '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}'
hear
say '{"jsonrpc":"2.0","method":"notifications/initialized"}'
say '{"jsonrpc":"2.0","id":2,"method":"ping"}'
hear
say '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello through aicp-bridge"}}}'
hear
say '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"slow","arguments":{"ms":300,"steps":3},"_meta":{"progressToken":"demo"}}}'
for _ in 1 2 3 4; do hear; done
say '{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"analyze_task","arguments":{"task":"plan the release"}}}'
hear
say 'this line is not JSON'
hear

exec {BRIDGE[1]}>&-
wait "$BRIDGE_PID" && echo && echo "bridge exited cleanly (status 0) after its input closed"
exec {HUB_IN}>&-
