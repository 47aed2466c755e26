#!/usr/bin/env python3
"""Bridge footprint: peak RSS and cold start of one `aicp-bridge serve` that
relays N `share_context` calls to a hub, measured by GNU time (`%M`).

    benches/footprint.py BRIDGE_BINARY HUB_URL N

Start the hub first, e.g. `aicp-hub --open --listen 127.0.0.1:0 --rate-limit 0`
(loop limits are raised on the bridge so that every call is relayed). Used to
compare two builds of the bridge against the same hub in one session
(docs/performance.md); it asserts nothing about speed.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

bridge, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
HOME = tempfile.mkdtemp(prefix="aicp-footprint-")
args = [bridge, "serve", "--hub", url, "--log-level", "warn"]
for l in ["repeat_limit=1000000", "calls_per_minute=1000000", "tool_calls_per_minute=1000000", "session_budget=0"]:
    args += ["--limit", l]
p = subprocess.Popen(["/usr/bin/time", "-f", "%M", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"HOME": HOME, "XDG_RUNTIME_DIR": os.path.join(HOME, "run"), "AICP_KEYRING": "none", "PATH": "/usr/bin:/bin"})
t0 = time.time()
def call(m):
    p.stdin.write(json.dumps(m) + "\n"); p.stdin.flush()
    return json.loads(p.stdout.readline())
r = call({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"rss","version":"1"}}})
cold = time.time() - t0
p.stdin.write(json.dumps({"jsonrpc":"2.0","method":"notifications/initialized"}) + "\n")
for i in range(1, n + 1):
    r = call({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"share_context","arguments":{"context_key":"k","context_value":i}}})
    assert "result" in r and not r["result"].get("isError"), r
p.stdin.close(); p.wait()
err = p.stderr.read().strip().splitlines()
print(f"{bridge}: cold start to initialize {cold*1000:.1f} ms, {n} calls, peak RSS {err[-1]} KiB")
