//! The relay: everything `serve` does between the host and the hub, in the
//! order a message meets it. A `tools/call` from the host:
//!
//! 1. [`host`] reads it from stdin (newline-delimited, size-limited);
//! 2. [`session`] classifies its envelope (`aicp_proto::wire`), records it as
//!    pending, and passes it through the loop guard (`crate::guard`), which
//!    adds the AIXP envelope or refuses it with a result the model reads;
//! 3. [`upstream`], the one task that owns the WebSocket, sends it to the hub;
//! 4. the hub's answer comes back through [`upstream`] to [`session`], which
//!    repairs a sloppy hub's slips ([`normalize`]), optionally checks it
//!    against the schema ([`validate`]), and writes it to stdout through [`host`].
//!
//! While the hub is down, [`offline`] answers what can be answered locally;
//! identical `*/list` requests are served from [`list_cache`].

pub mod host;
pub mod list_cache;
pub mod normalize;
pub mod offline;
pub mod session;
pub mod upstream;
pub mod validate;

pub use session::run;
