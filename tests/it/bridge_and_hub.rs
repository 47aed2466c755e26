//! The bridge against the real hub: what a user meets when `aicp-bridge`
//! talks to `aicp-hub` (a refused token reaching the host, the command-line
//! tools), and `aicp-bridge hub`, which runs the hub installed beside it.
//! The hub alone is tested in `crates/aicp-hub/tests`.

use serde_json::json;

use crate::support::Bridge;
use crate::support::bridge::BIN;
use crate::support::local_hub::{LocalHub, RawClient};

#[tokio::test]
async fn the_bridge_reports_a_refused_token_to_its_host() {
    let hub = LocalHub::start(&[]).await;
    let mut bridge = Bridge::serve_env(hub.url(), &[], &[("AICP_TOKEN", "forged.token.value")]);
    let init = bridge.initialize("2025-11-25").await;
    let instructions = init["result"]["instructions"].as_str().unwrap_or_default();
    assert!(
        instructions.contains("the hub refused the credentials (HTTP 401)"),
        "{init}"
    );
}

#[tokio::test]
async fn the_command_line_tools_work_against_the_local_hub() {
    let hub = LocalHub::start(&[]).await;
    let mut cli = crate::support::cli::Cli::new();
    cli.env("AICP_TOKEN", &hub.token("carol", "share,read,message"));
    let out = cli.run(&["call", "whoami", "--hub", hub.url()]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["identity"], "carol", "{out:?}");
    let out = cli
        .run(&["share", "plan", r#"{"step":1}"#, "--hub", hub.url()])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut c = RawClient::agent(hub.url(), Some(&hub.token("dave", "read")), &[]).await;
    let r = c
        .request(
            json!(1),
            "resources/read",
            json!({"uri": "aicp://context/plan"}),
        )
        .await;
    assert_eq!(r["result"]["contents"][0]["text"], "{\"step\":1}", "{r}");
    cli.env("AICP_TOKEN", "forged");
    let out = cli.run(&["call", "whoami", "--hub", hub.url()]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("HTTP 401"), "{out:?}");
}
#[tokio::test]
async fn aicp_bridge_hub_runs_the_hub_installed_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "hub",
            "token",
            "--sub",
            "alice",
            "--ttl",
            "1h",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    // The secret it was signed with is the hub's, generated 0600 in the data dir.
    assert!(dir.path().join("jwt-secret").is_file());
    let help = std::process::Command::new(BIN)
        .args(["hub", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && text.contains("aicp-hub"), "{text}");
}
