#!/usr/bin/env bash
# Builds aicp-bridge and aicp-hub from this checkout with cargo and installs
# both binaries side by side (`aicp-bridge hub` runs the aicp-hub next to it).
# Installs nothing else: no toolchain, no services, no config.
#
#   ./install.sh                 # into ~/.local/bin
#   ./install.sh --prefix /opt/aicp   # into /opt/aicp/bin
set -euo pipefail
cd "$(dirname "$0")"

prefix="${HOME}/.local"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

missing=0
if ! command -v cargo >/dev/null; then
  echo "install.sh: cargo not found. Install Rust 1.88 or newer from https://rustup.rs, then run this again." >&2
  missing=1
else
  have=$(rustc --version | awk '{print $2}')
  if [ "$(printf '%s\n' 1.88.0 "$have" | sort -V | head -n1)" != 1.88.0 ]; then
    echo "install.sh: rustc $have is too old; aicp-bridge needs 1.88 or newer (rustup update)." >&2
    missing=1
  fi
fi
if ! command -v cc >/dev/null; then
  echo "install.sh: no C compiler (cc) found; the TLS library (ring) needs one. On Debian/Ubuntu: apt-get install gcc; on macOS: xcode-select --install." >&2
  missing=1
fi
[ "$missing" = 0 ] || exit 1

echo "install.sh: building the release binaries (cargo build --release --locked --workspace)"
cargo build --release --locked --workspace --quiet
mkdir -p "$prefix/bin"
install -m 0755 target/release/aicp-bridge "$prefix/bin/aicp-bridge"
install -m 0755 target/release/aicp-hub "$prefix/bin/aicp-hub"
bin="$(cd "$prefix/bin" && pwd)/aicp-bridge"
echo "install.sh: installed $bin ($("$bin" --version))"
echo "install.sh: installed $(dirname "$bin")/aicp-hub ($("$(dirname "$bin")/aicp-hub" --version))"

case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "install.sh: note: $prefix/bin is not on your PATH; add it, or use the absolute path above." ;;
esac

cat <<NEXT

Next steps:
  1. Try it end to end on this machine:   scripts/demo.sh "$bin"
  2. Log in to your hub (the token is read hidden and kept in the OS keyring):
       "$bin" login --hub wss://YOUR-HUB/mcp
  3. Register it in Claude Desktop, then restart the app:
       "$bin" install claude-desktop
     (Claude Code: claude mcp add aicp -- "$bin" serve)
  4. Check everything:                     "$bin" status
NEXT
