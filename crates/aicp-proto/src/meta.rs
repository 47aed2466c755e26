//! The names both ends agree on outside the JSON-RPC envelope: `_meta` keys
//! and the WebSocket subprotocol.

/// The `_meta` key under which `initialize` params declare the user's agent
/// (`{"capabilities": [...]}`) to an AICP hub.
pub const AGENT_META_KEY: &str = "aicp/agent";

/// The `_meta` key under which `initialize` params carry the bearer token, for
/// hubs that authenticate at initialize rather than on the upgrade.
pub const AUTH_META_KEY: &str = "aicp/auth";

/// The WebSocket subprotocol offered on the upgrade and echoed when asked for.
pub const SUBPROTOCOL: &str = "mcp";
