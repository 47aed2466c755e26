#!/usr/bin/env bash
# Runs the whole test suite of the workspace (bridge, hub, protocol): unit
# tests, and integration tests that drive the built binaries against a hub on
# 127.0.0.1:0 with real hosts: rmcp's client, the official Python MCP SDK (into
# .venv from PyPI) and the MCP Inspector CLI (into tests/node from npm).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mcp' 2>/dev/null; then
  echo "test.sh: creating .venv with the Python MCP SDK (tests/py/requirements.txt)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet -r tests/py/requirements.txt
fi
if [ ! -d tests/node/node_modules ]; then
  echo "test.sh: installing the MCP Inspector CLI into tests/node (npm ci)"
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
fi
export AICP_TEST_PYTHON="$PWD/.venv/bin/python"
cargo test --locked --workspace "$@"
