//! Secrets stay out of logs and off the wire where they are not needed: the
//! token is not copied into `initialize` unless asked, trace logs on both
//! ends (bridge and hub) never show it in any encoding, and log files are
//! owner-only.

use std::time::Duration;

use serde_json::json;

use crate::support::local_hub::LocalHub;
use crate::support::{Bridge, FakeHub, FakeHubOptions, eventually};

const TOKEN: &str = "s3cret-token-0123456789";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every form in which a token could show up in a log line.
fn assert_no_token(log: &str, token: &str) {
    assert!(!log.is_empty(), "no log at all");
    for form in [
        token.to_owned(),
        hex(token),
        hex(token).to_ascii_uppercase(),
    ] {
        assert!(
            !log.contains(&form),
            "token found in the log as {form:.24}…:\n{log}"
        );
    }
}

#[tokio::test]
async fn the_token_is_sent_on_the_upgrade_only_unless_the_hub_needs_it_in_initialize() {
    let hub = FakeHub::start(FakeHubOptions {
        require_token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await;
    let mut bridge = Bridge::serve_env(&hub.url(), &[], &[("AICP_TOKEN", TOKEN)]);
    bridge.initialize("2025-06-18").await;
    let init = hub
        .wait_for(
            "initialize",
            |m| m["method"] == "initialize",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        init["params"]["_meta"].get("aicp/auth").is_none(),
        "token copied into initialize: {init}"
    );

    // A hub that authenticates at initialize gets it when the user says so.
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve_env(
        &hub.url(),
        &["--token-in-initialize"],
        &[("AICP_TOKEN", TOKEN)],
    );
    bridge.initialize("2025-06-18").await;
    let init = hub
        .wait_for(
            "initialize",
            |m| m["method"] == "initialize",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        init["params"]["_meta"]["aicp/auth"]["token"], TOKEN,
        "{init}"
    );
}

#[tokio::test]
async fn trace_logs_of_the_bridge_never_show_the_token_in_any_encoding() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    // The worst case: the token is in a frame (initialize) and in the upgrade request.
    let mut bridge = Bridge::serve_env(
        &hub.url(),
        &["--token-in-initialize", "--log-level", "trace"],
        &[("AICP_TOKEN", TOKEN)],
    );
    bridge.initialize("2025-06-18").await;
    let r = bridge.call_tool(2, "echo", json!({"text": "hi"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    // tungstenite's frame dumps are held back; the bridge's own debug lines are there.
    eventually("debug lines logged", Duration::from_secs(5), || {
        bridge.stderr().contains("DEBUG")
    })
    .await;
    assert_no_token(&bridge.stderr(), TOKEN);
}

#[tokio::test]
async fn trace_logs_of_the_hub_never_show_a_clients_token() {
    let hub = LocalHub::start(&["--log-level", "trace"]).await;
    let token = hub.token("alice", "share,read,message");
    let mut bridge = Bridge::serve_env(
        hub.url(),
        &["--token-in-initialize", "--log-level", "trace"],
        &[("AICP_TOKEN", &token)],
    );
    bridge.initialize("2025-06-18").await;
    let r = bridge.call_tool(2, "whoami", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    eventually("the hub logged the session", Duration::from_secs(5), || {
        hub.stderr().contains("initialized")
    })
    .await;
    assert_no_token(&hub.stderr(), &token);
    assert_no_token(&bridge.stderr(), &token);
}

#[cfg(unix)]
#[tokio::test]
async fn the_log_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.log");
    // A file that already exists with loose permissions is narrowed too.
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bridge = Bridge::serve(&hub.url(), &["--log-file", path.to_str().unwrap()]);
    bridge.initialize("2025-06-18").await;
    eventually("log written", Duration::from_secs(5), || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
    })
    .await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "log file mode {mode:o}");
}

#[tokio::test]
async fn the_websocket_library_stays_quiet_below_trace() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    // The cap on the payload loggers must not raise them at quieter levels.
    let mut bridge = Bridge::serve(&hub.url(), &["--log-level", "info"]);
    bridge.initialize("2025-06-18").await;
    let r = bridge.call_tool(1, "echo", json!({"text": "quiet"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "quiet", "{r}");
    let log = bridge.stderr();
    assert!(log.contains("serving MCP on stdio"), "{log}");
    assert!(!log.contains("tungstenite"), "{log}");
}
