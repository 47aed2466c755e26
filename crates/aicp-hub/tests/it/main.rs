//! The hub's integration tests: the built `aicp-hub` on 127.0.0.1:0 with a
//! temp data dir, driven over real sockets by raw WebSocket and TCP clients.
//! One test binary with a module per area. Tests that run the bridge against
//! the hub are the bridge's (`tests/it` at the workspace root).

mod basics;
mod forwards;
mod inbox;
mod listener;
mod presence;
mod session;
mod support;
mod team;
