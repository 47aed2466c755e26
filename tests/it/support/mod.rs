//! Test peers: a hub on 127.0.0.1:0 and a harness around the built binary.

pub mod bridge;
pub mod cli;
pub mod env;
pub mod fake_hub;
pub mod local_hub;

use std::time::Duration;

pub use bridge::Bridge;
pub use fake_hub::{FakeHub, FakeHubOptions};

/// Polls `cond` until it holds or `within` passes.
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        if start.elapsed() > within {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
