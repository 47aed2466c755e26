//! Faults: a hub that dies mid-call, is down at start, goes silent, answers
//! too much, or refuses the token. Pending calls end with an error the model
//! can read; nothing is replayed; the bridge keeps serving.

use std::time::Duration;

use serde_json::json;

use crate::support::{Bridge, FakeHub, FakeHubOptions, eventually};

/// Short backoff so reconnects happen within the test's patience.
const FAST: [&str; 2] = ["--max-backoff", "0.2"];

#[tokio::test]
async fn hub_killed_mid_call_fails_the_call_then_recovers_without_replay() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let port = hub.port();
    let mut bridge = Bridge::serve(&hub.url(), &FAST);
    bridge.initialize("2025-06-18").await;
    bridge.send(json!({"jsonrpc":"2.0","id":"side-effect","method":"tools/call","params":{"name":"slow","arguments":{"ms":5000,"steps":1}}})).await;
    hub.wait_for(
        "call arrived",
        |m| m["id"] == "side-effect",
        Duration::from_secs(5),
    )
    .await;
    let started = std::time::Instant::now();
    hub.stop().await;

    let r = bridge.recv().await;
    assert_eq!(r["id"], "side-effect");
    assert_eq!(r["error"]["code"], -32000, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("lost") && msg.contains("not retried"), "{msg}");
    assert_eq!(r["error"]["data"]["aixpStatus"], 5009);
    // Without the fix nothing would ever answer (there is no default timeout);
    // the bound is loose so that a loaded machine does not fail it.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed at once, not after a timeout"
    );

    // While the hub is away, calls fail fast with the cause.
    let r = bridge.call_tool(2, "echo", json!({"text": "x"})).await;
    assert_eq!(r["error"]["code"], -32000, "{r}");

    let hub = FakeHub::start_on(port, FakeHubOptions::default()).await;
    // The bridge re-initializes the new session with the host's own params and says the lists may have changed.
    let changed = bridge.recv().await;
    assert_eq!(
        changed["method"], "notifications/tools/list_changed",
        "{changed}"
    );
    let init = hub
        .wait_for(
            "replayed initialize",
            |m| m["method"] == "initialize",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(init["params"]["clientInfo"]["name"], "it-host");
    assert_eq!(init["params"]["protocolVersion"], "2025-06-18");
    hub.wait_for(
        "replayed initialized",
        |m| m["method"] == "notifications/initialized",
        Duration::from_secs(5),
    )
    .await;

    let r = bridge.call_tool(3, "echo", json!({"text": "back"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "back");
    assert!(
        !hub.received().iter().any(|m| m["id"] == "side-effect"),
        "a call with possible side effects is never replayed"
    );
}

#[tokio::test]
async fn hub_down_at_start_gets_a_local_initialize_then_list_changed() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let port = hub.port();
    hub.stop().await;
    let url = format!("ws://127.0.0.1:{port}/mcp");
    let mut bridge = Bridge::serve(&url, &FAST);
    let init = bridge.initialize("2025-06-18").await;
    let result = &init["result"];
    assert_eq!(result["serverInfo"]["name"], "aicp-bridge", "{init}");
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert!(
        result["instructions"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{init}"
    );
    let r = bridge.request(2, "tools/list", json!({})).await;
    assert_eq!(r["result"]["tools"], json!([]));
    let r = bridge.call_tool(3, "echo", json!({"text": "x"})).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{r}"
    );
    assert_eq!(r["error"]["data"]["aixpStatus"], 5003);

    let hub = FakeHub::start_on(port, FakeHubOptions::default()).await;
    let changed = bridge.recv().await;
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    let r = bridge.request(4, "tools/list", json!({})).await;
    assert!(!r["result"]["tools"].as_array().unwrap().is_empty(), "{r}");
    let init = hub
        .wait_for(
            "initialize",
            |m| m["method"] == "initialize",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(init["params"]["clientInfo"]["name"], "it-host");
}

#[tokio::test]
async fn a_silent_hub_is_found_dead_by_keepalive() {
    let hub = FakeHub::start(FakeHubOptions {
        silent_after_init: true,
        ..Default::default()
    })
    .await;
    let mut bridge = Bridge::serve(&hub.url(), &["--keepalive", "0.2", "--max-backoff", "0.2"]);
    bridge.initialize("2025-06-18").await;
    bridge.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"lost"}}})).await;
    let r = bridge.recv().await;
    assert_eq!(r["id"], 1);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing heard"),
        "{r}"
    );
    eventually("reconnect attempted", Duration::from_secs(5), || {
        hub.connections() >= 2
    })
    .await;
}

#[tokio::test]
async fn request_timeout_cancels_on_the_hub_and_progress_extends_it() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &["--request-timeout", "0.4"]);
    bridge.initialize("2025-06-18").await;
    let r = bridge.call_tool("h", "hang", json!({})).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--request-timeout")
    );
    eventually("hub saw the cancel", Duration::from_secs(5), || {
        hub.cancelled().contains(&json!("h"))
    })
    .await;

    // 1.2 s in total, but progress every 0.1 s keeps it alive.
    let params =
        json!({"name":"slow","arguments":{"ms":1200,"steps":12},"_meta":{"progressToken":7}});
    let r = bridge.request("s", "tools/call", params).await;
    assert_eq!(r["result"]["content"][0]["text"], "done", "{r}");
}

#[tokio::test]
async fn no_deadline_by_default_for_long_calls() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-06-18").await;
    // No progress token, 2.5 s of silence: still answered.
    let r = bridge
        .call_tool(1, "slow", json!({"ms": 2500, "steps": 1}))
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "done");
}

#[tokio::test]
async fn an_oversized_hub_message_fails_the_call_and_the_bridge_reconnects() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(
        &hub.url(),
        &["--max-hub-message-bytes", "100000", "--max-backoff", "0.2"],
    );
    bridge.initialize("2025-06-18").await;
    let r = bridge.call_tool(1, "big", json!({"bytes": 200000})).await;
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("100000-byte limit"), "{msg}");
    bridge.recv().await; // tools/list_changed after the re-initialize
    let r = bridge.call_tool(2, "big", json!({"bytes": 1000})).await;
    assert_eq!(
        r["result"]["content"][0]["text"].as_str().unwrap().len(),
        1000
    );
}

#[tokio::test]
async fn a_refused_token_is_named_in_what_the_host_reads() {
    let hub = FakeHub::start(FakeHubOptions {
        require_token: Some("right-token".into()),
        ..Default::default()
    })
    .await;
    let mut bridge = Bridge::serve_env(&hub.url(), &[], &[("AICP_TOKEN", "wrong-token")]);
    let init = bridge.initialize("2025-06-18").await;
    let instructions = init["result"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("refused the credentials (HTTP 401)"),
        "{instructions}"
    );
    let r = bridge.call_tool(1, "echo", json!({})).await;
    assert_eq!(r["error"]["data"]["aixpStatus"], 5004, "{r}");
}

#[tokio::test]
async fn invalid_utf8_gets_a_parse_error_with_its_id_and_the_bridge_keeps_serving() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-06-18").await;
    bridge
        .send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"\xff\"}\n")
        .await;
    let r = bridge.recv().await;
    assert_eq!(r["id"], 9, "{r}");
    assert_eq!(r["error"]["code"], -32700);
    let r = bridge.call_tool(10, "echo", json!({"text": "fine"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "fine");
}

#[tokio::test]
async fn a_hub_that_accepts_then_fails_is_redialled_with_growing_backoff() {
    let hub = FakeHub::start(FakeHubOptions {
        close_after_upgrade: true,
        ..Default::default()
    })
    .await;
    // Default backoff (250 ms first step, doubling). Before the fix every
    // successful upgrade reset it: a redial every 125-250 ms, 12 or more in 3 s.
    let _bridge = Bridge::serve(&hub.url(), &[]);
    eventually("a few redials", Duration::from_secs(10), || {
        hub.connections() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Steps of at least 125, 250, 500, 1000, 2000 ms: at most 6 connections
    // in the 3 s after the third (which came 375 ms or more after the first).
    let n = hub.connections();
    assert!(
        n <= 7,
        "{n} connections in about 3.4 s: the backoff did not grow"
    );
}

#[tokio::test]
async fn requests_a_hub_could_not_decode_are_answered_by_the_bridge_with_their_id() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-06-18").await;
    let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
    for (id, args) in [
        ("deep", deep.as_str()),
        ("surrogate", r#"{"text":"\ud800"}"#),
        ("huge", r#"{"n":1e400}"#),
    ] {
        bridge
            .send_raw(&format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/call","params":{{"name":"echo","arguments":{args}}}}}"#
            ))
            .await;
        let r = bridge.recv().await;
        assert_eq!(r["id"], id, "{r}");
        assert_eq!(r["error"]["code"], -32700, "{r}");
    }
    // None of them reached the hub, and the bridge keeps serving.
    let r = bridge
        .call_tool("ok", "echo", json!({"text": "fine"}))
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "fine", "{r}");
    assert!(
        !hub.received()
            .iter()
            .any(|m| ["deep", "surrogate", "huge"].contains(&m["id"].as_str().unwrap_or(""))),
        "an undecodable request reached the hub"
    );
}

#[tokio::test]
async fn ws_localhost_connects_by_its_loopback_addresses() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let url = format!("ws://localhost:{}/mcp", hub.port());
    let mut bridge = Bridge::serve(&url, &[]);
    bridge.initialize("2025-06-18").await;
    let r = bridge.call_tool(1, "echo", json!({"text": "local"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "local", "{r}");
}
