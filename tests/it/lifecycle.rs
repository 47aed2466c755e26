//! Lifecycle and hygiene: clean exits on end of input and on signals, the
//! token on the upgrade and nowhere else, the ws:// guard.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::bridge::command;
use crate::support::{Bridge, FakeHub, FakeHubOptions, eventually};

#[tokio::test]
async fn stdin_eof_closes_the_hub_with_1000_and_exits_0_quickly() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-06-18").await;
    let started = Instant::now();
    bridge.close_stdin();
    // The bridge exits after a 500 ms drain at most (docs/relay.md); the bound
    // here only tells "exits" from "hangs", with room for a loaded machine.
    let status = bridge.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        started.elapsed()
    );
    eventually("close frame seen", Duration::from_secs(2), || {
        !hub.close_frames().is_empty()
    })
    .await;
    assert_eq!(hub.close_frames(), [Some(1000)]);
}

#[tokio::test]
async fn sigterm_and_sigint_close_cleanly_and_exit_0() {
    for signal in ["-TERM", "-INT"] {
        let hub = FakeHub::start(FakeHubOptions::default()).await;
        let mut bridge = Bridge::serve(&hub.url(), &[]);
        bridge.initialize("2025-06-18").await;
        let started = Instant::now();
        let killed = std::process::Command::new("kill")
            .arg(signal)
            .arg(bridge.pid().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let status = bridge.wait_exit(Duration::from_secs(10)).await;
        assert!(status.success(), "{signal}: {status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{signal}: exit took {:?}",
            started.elapsed()
        );
        eventually("close frame seen", Duration::from_secs(2), || {
            !hub.close_frames().is_empty()
        })
        .await;
        assert_eq!(hub.close_frames(), [Some(1000)], "{signal}");
    }
}

#[tokio::test]
async fn piped_requests_are_all_answered_before_exit() {
    // `printf … | aicp-bridge serve`: input ends right after the requests.
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let (mut cmd, _home) = command(&["serve", "--hub", &hub.url()]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"piped"}}}),
    ];
    for l in &lines {
        stdin.write_all(format!("{l}\n").as_bytes()).await.unwrap();
    }
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(3), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let replies: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[1]["result"]["content"][0]["text"], "piped");
}

#[tokio::test]
async fn the_token_goes_on_the_upgrade_and_never_into_logs() {
    const TOKEN: &str = "tok-3f9a-very-secret";
    let hub = FakeHub::start(FakeHubOptions {
        require_token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await;
    // Trace level logs every frame; the hub echoes the token back inside a result.
    let mut bridge = Bridge::serve_env(
        &hub.url(),
        &["--log-level", "trace"],
        &[("AICP_TOKEN", TOKEN)],
    );
    let init = bridge.initialize("2025-06-18").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "test-hub", "{init}");
    let r = bridge.call_tool(1, "echo", json!({"text": TOKEN})).await;
    assert_eq!(
        r["result"]["content"][0]["text"], TOKEN,
        "the relay itself does not touch payloads"
    );
    let auth: Vec<String> = hub.upgrade_headers()[0]
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(auth, [format!("Bearer {TOKEN}")]);
    bridge.close_stdin();
    bridge.wait_exit(Duration::from_secs(2)).await;
    let stderr = bridge.stderr();
    assert!(
        stderr.contains("[REDACTED]") || !stderr.contains("tok-3f9a"),
        "stderr leaks the token"
    );
    assert!(!stderr.contains(TOKEN), "stderr leaks the token:\n{stderr}");
    assert!(
        stderr.contains("environment variable AICP_TOKEN"),
        "the log names the token's source"
    );

    // From a token file, with a log file.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let log_file = dir.path().join("bridge.log");
    let mut bridge = Bridge::serve(
        &hub.url(),
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "--log-file",
            log_file.to_str().unwrap(),
            "--log-level",
            "trace",
        ],
    );
    bridge.initialize("2025-06-18").await;
    bridge.call_tool(1, "echo", json!({"text": TOKEN})).await;
    bridge.close_stdin();
    bridge.wait_exit(Duration::from_secs(2)).await;
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.contains("serving MCP on stdio"),
        "logs went to the file"
    );
    assert!(!log.contains(TOKEN), "log file leaks the token");
    assert!(
        !bridge.stderr().contains("serving MCP"),
        "nothing logged to stderr when --log-file is set"
    );
}

#[tokio::test]
async fn plain_ws_to_a_remote_host_is_refused_unless_allowed() {
    let (mut cmd, _home) = command(&["serve", "--hub", "ws://hub.example.com/mcp"]);
    let out = cmd.stdin(Stdio::null()).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-insecure"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}
