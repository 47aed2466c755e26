//! aicp-proto: the vocabulary the bridge (`aicp-bridge`) and the hub
//! (`aicp-hub`) share. Both depend on it; it depends on neither. No I/O,
//! except the signal handler behind the `signals` feature.
//!
//! - [`wire`]: the JSON-RPC 2.0 envelope, classified without parsing payloads.
//! - [`codes`]: every JSON-RPC error code either end writes.
//! - [`aixp`]: the AIXP envelope, its status codes and the next-step rule
//!   (hops for handoffs, turns for conversations).
//! - [`conversation`]: when a conversation has ended (courtesy answering courtesy).
//! - [`meta`]: `_meta` keys and the WebSocket subprotocol.
//! - [`redact`]: what neither end may write to a log.
//! - [`tracking`]: recognises a received text passed on in an outgoing one
//!   (bottom-k shingle containment), so its hop count continues.
//! - `shutdown` (feature `signals`): SIGTERM and SIGINT into a cancelled token.

pub mod aixp;
pub mod codes;
pub mod conversation;
pub mod meta;
pub mod redact;
#[cfg(feature = "signals")]
pub mod shutdown;
pub mod tracking;
pub mod wire;
