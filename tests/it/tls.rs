//! wss:// with certificate verification on: a private CA given with --ca-file
//! is trusted; without it the OS store does not know that CA and the bridge
//! says so instead of connecting.

use std::time::Duration;

use serde_json::json;

use crate::support::fake_hub::test_tls;
use crate::support::{Bridge, FakeHub, FakeHubOptions};

#[tokio::test]
async fn wss_verifies_the_certificate() {
    let (server, ca_pem) = test_tls();
    let hub = FakeHub::start(FakeHubOptions {
        tls: Some(server),
        ..Default::default()
    })
    .await;
    assert!(hub.url().starts_with("wss://localhost:"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();

    let mut bridge = Bridge::serve(&hub.url(), &["--ca-file", ca.to_str().unwrap()]);
    let init = bridge.initialize("2025-06-18").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "test-hub", "{init}");
    let r = bridge
        .call_tool(1, "echo", json!({"text": "over tls"}))
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "over tls");

    let mut untrusting = Bridge::serve(&hub.url(), &[]);
    let init = untrusting.initialize("2025-06-18").await;
    let why = init["result"]["instructions"]
        .as_str()
        .unwrap_or_else(|| panic!("{init}"));
    assert!(
        why.contains("TLS failure") && why.contains("UnknownIssuer"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        hub.connections(),
        1,
        "the unverified connection never got past TLS"
    );
}
