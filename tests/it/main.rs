//! The bridge's integration tests: the built `aicp-bridge` over real pipes
//! against real peers (the fake hub or the real `aicp-hub` on 127.0.0.1:0, the
//! official MCP SDKs as hosts). One test binary with a module per area keeps
//! link time down. The hub's own tests are in `crates/aicp-hub/tests`.

mod bridge_and_hub;
mod cli;
mod fake_hub_selftest;
mod faults;
mod forwards;
mod guard;
mod hosts;
mod lifecycle;
mod local_hub_sdk;
mod quirks;
mod redaction;
mod relay;
mod support;
mod team;
mod tls;
mod waiting;
