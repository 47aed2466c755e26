//! aicp-proto: the vocabulary the bridge (`aicp-bridge`) and the hub
//! (`aicp-hub`) share. Both depend on it; it depends on neither. No I/O.
//!
//! - [`wire`]: the JSON-RPC 2.0 envelope, classified without parsing payloads.
//! - [`codes`]: every JSON-RPC error code either end writes.
//! - [`aixp`]: the AIXP envelope, its status codes and the next-hop rule.
//! - [`meta`]: `_meta` keys and the WebSocket subprotocol.
//! - [`redact`]: what neither end may write to a log.

pub mod aixp;
pub mod codes;
pub mod meta;
pub mod redact;
pub mod wire;
