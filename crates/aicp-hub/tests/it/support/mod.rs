//! Test peers for the hub: the built `aicp-hub` and raw clients. The files are
//! the workspace's shared test support (`tests/it/support`), included by path
//! so both test suites start the hub the same way.

#[path = "../../../../../tests/it/support/env.rs"]
pub mod env;
#[path = "../../../../../tests/it/support/local_hub.rs"]
pub mod local_hub;
