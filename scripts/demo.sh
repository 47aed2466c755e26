#!/usr/bin/env bash
# Two users, two assistants, one hub, on one machine. Starts `aicp-bridge hub`
# (which runs the aicp-hub installed beside it)
# on loopback (temporary data dir, tokens it issues), then two `aicp-bridge
# serve` bridges as two MCP hosts would: alice (writing, analysis) and bob
# (rust, code-review). Alice shares context and hands work to bob through the
# hub; bob reads it, answers; alice splits a task between them. Prints each
# call that goes in (→) and the hub's structured answer that comes out (←).
#
# Usage: scripts/demo.sh [path/to/aicp-bridge]   (default: aicp-bridge on PATH, else a release build)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-$(command -v aicp-bridge || true)}
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=target/release/aicp-bridge
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The hub prints the URL it bound as its only stdout line; logs go to hub.log.
"$BIN" hub --listen 127.0.0.1:0 --data-dir "$WORK/hub" --log-level warn >"$WORK/url" 2>"$WORK/hub.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$WORK/url" ] && break; sleep 0.05; done
URL=$(head -n1 "$WORK/url")
[ -n "$URL" ] || { echo "the hub did not start:"; cat "$WORK/hub.log"; exit 1; }
echo "hub:    $BIN hub --listen 127.0.0.1:0 --data-dir $WORK/hub   → $URL"

# Tokens signed with the secret the hub generated in its data dir.
TOKEN_ALICE=$("$BIN" hub token --data-dir "$WORK/hub" --sub alice --ttl 1h)
TOKEN_BOB=$("$BIN" hub token --data-dir "$WORK/hub" --sub bob --ttl 1h)
echo "tokens: aicp-bridge hub token --sub alice / --sub bob"

# One bridge per user, each talking to us over a pair of FIFOs as an MCP host does over stdio.
start_bridge() { # name token capabilities
  mkfifo "$WORK/$1.in" "$WORK/$1.out"
  AICP_TOKEN=$2 "$BIN" serve --hub "$URL" --capabilities "$3" --log-level warn \
    <"$WORK/$1.in" >"$WORK/$1.out" 2>"$WORK/$1.log" &
  PIDS+=($!)
  echo "bridge: AICP_TOKEN=… $BIN serve --hub $URL --capabilities $3   ($1)"
}
start_bridge alice "$TOKEN_ALICE" writing,analysis
exec {ALICE_W}>"$WORK/alice.in" {ALICE_R}<"$WORK/alice.out"
start_bridge bob "$TOKEN_BOB" rust,code-review
exec {BOB_W}>"$WORK/bob.in" {BOB_R}<"$WORK/bob.out"
echo

# Shows the part of an answer a person reads: structuredContent, else the result.
show() {
  if command -v python3 >/dev/null; then
    python3 -c 'import json,sys
m = json.loads(sys.argv[1]); r = m.get("result", m)
print(json.dumps(r.get("structuredContent", r), ensure_ascii=False))' "$1"
  else
    echo "$1"
  fi
}

ID=0
LAST=""
# call WHO METHOD PARAMS: sends a request through WHO's bridge and waits for its answer.
call() {
  local who=$1 w r line
  if [ "$who" = alice ]; then w=$ALICE_W r=$ALICE_R; else w=$BOB_W r=$BOB_R; fi
  ID=$((ID + 1))
  echo "→ $who: $2 $3"
  echo "{\"jsonrpc\":\"2.0\",\"id\":$ID,\"method\":\"$2\",\"params\":$3}" >&"$w"
  while IFS= read -r -t 15 line <&"$r"; do
    case $line in
      *"\"id\":$ID,"* | *"\"id\":$ID}"*) LAST=$line; echo "← $who: $(show "$line")"; echo; return ;;
      *) echo "  ($who got: $line)" ;;
    esac
  done
  echo "no answer for $who; logs:"; cat "$WORK"/*.log; exit 1
}
tool() { call "$1" tools/call "{\"name\":\"$2\",\"arguments\":$3}"; }
INIT='{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo-host","version":"1"}}'

call alice initialize "$INIT" >/dev/null
echo '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$ALICE_W"
call bob initialize "$INIT" >/dev/null
echo '{"jsonrpc":"2.0","method":"notifications/initialized"}' >&"$BOB_W"
echo "(alice and bob initialized through their bridges)"
echo

tool alice list_agents '{}'
tool alice share_context '{"context_key":"release-plan","context_value":{"version":"0.2","blockers":["hub docs","review of session.rs"]}}'
tool alice route_to_agent '{"message":"Please review the Rust code in crates/aicp-hub/src/session.rs before the 0.2 release","context":{"see":"aicp://context/release-plan"}}'
call bob resources/read '{"uri":"aicp://shared-state"}'
tool bob read_inbox '{"wait_ms":2000}'
MSG=$(grep -o '"message_id":"[^"]*"' <<<"$LAST" | head -n1 | cut -d'"' -f4 || true)
[ -n "$MSG" ] || MSG=$(grep -o '"id":"msg-[^"]*"' <<<"$LAST" | head -n1 | cut -d'"' -f4)
tool bob send_message "{\"to\":\"alice\",\"text\":\"Reviewed session.rs: ship it, one nit on the drain timeout.\",\"reply_to\":\"$MSG\"}"
tool bob share_context '{"context_key":"review/session.rs","context_value":{"verdict":"approve","nits":1}}'
tool alice read_inbox '{"wait_ms":2000}'
tool alice orchestrate_collaboration '{"task":"- write docs/hub.md\n- review the store code\n- benchmark the hub"}'
# read_inbox marked what bob already read, so only the new subtasks come back.
tool bob read_inbox '{"wait_ms":2000}'

exec {ALICE_W}>&- {BOB_W}>&-
echo "done: two assistants shared context and handed each other work through the hub."
