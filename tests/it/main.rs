//! Integration tests: the built binary over real pipes against real peers
//! (a WebSocket hub on 127.0.0.1:0, the official MCP SDKs as hosts). One test
//! binary with a module per area keeps link time down.

mod cli;
mod fake_hub_selftest;
mod faults;
mod guard;
mod hosts;
mod hub_inbox;
mod hub_listener;
mod hub_session;
mod lifecycle;
mod local_hub;
mod local_hub_sdk;
mod quirks;
mod redaction;
mod relay;
mod support;
mod tls;
