#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that drive the
# built binary against a hub on 127.0.0.1:0 with real hosts (rmcp's client and
# the official Python MCP SDK, installed here into .venv from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mcp' 2>/dev/null; then
  echo "test.sh: creating .venv with the Python MCP SDK (tests/py/requirements.txt)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet -r tests/py/requirements.txt
fi
export AICP_TEST_PYTHON="$PWD/.venv/bin/python"
cargo test --locked "$@"
