//! A stand-in AICP hub for trying the bridge on one machine: the test hub
//! from tests/it/support (echo, slow with progress, resources, prompts), on
//! 127.0.0.1 at the port given as the first argument (default: any free one).
//! Prints its URL on the first line of stdout, then serves until stdin closes.
//!
//! `cargo run --example demo_hub -- 8765`

#[path = "../tests/it/support/hub.rs"]
#[allow(unused_imports)]
mod hub;

use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let hub = if port == 0 {
        hub::TestHub::start(hub::HubOptions::default()).await
    } else {
        hub::TestHub::start_on(port, hub::HubOptions::default()).await
    };
    println!("{}", hub.url());
    // Serve until whoever started us closes our stdin (or kills us).
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    hub.stop().await;
}
