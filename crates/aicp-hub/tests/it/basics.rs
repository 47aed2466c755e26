//! The hub as a black box: the built `aicp-hub` on 127.0.0.1:0 with a temp
//! data dir, driven by raw WebSocket clients: auth, malformed input,
//! pipelining, rate limits, envelopes, scopes, versions, shutdown and restart,
//! HTTP endpoints, routing, store failures, connection limits, cancellation.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::local_hub::{LocalHub, RawClient, hub_bin};

#[tokio::test]
async fn the_upgrade_refuses_missing_and_bad_tokens_with_401() {
    let hub = LocalHub::start(&[]).await;
    for token in [None, Some("not-a-jwt")] {
        match RawClient::try_connect(hub.url(), token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "{token:?}");
                let body =
                    String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
                assert!(body.contains("token"), "{body}");
            }
            Err(e) => panic!("expected HTTP 401, got {e}"),
            Ok(_) => panic!("connected without a valid token ({token:?})"),
        }
    }
    // A token signed with another secret is refused too.
    let other = LocalHub::start(&[]).await;
    let foreign = other.token("mallory", "share,read,message");
    assert!(
        RawClient::try_connect(hub.url(), Some(&foreign))
            .await
            .is_err()
    );
    let good = hub.token("alice", "share,read,message");
    let mut c = RawClient::agent(hub.url(), Some(&good), &[]).await;
    let r = c.call_tool(json!(1), "list_agents", json!({})).await;
    assert_eq!(
        r["result"]["structuredContent"]["agents"][0]["identity"], "alice",
        "{r}"
    );
    let (_, metrics) = hub.http_get("/metrics").await;
    assert!(
        metrics.contains("aicp_hub_upgrades_refused_total{reason=\"unauthorized\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn malformed_input_gets_errors_with_ids_and_every_connection_lives_on() {
    let hub = LocalHub::start(&["--open", "--max-message-bytes", "4096"]).await;
    let mut bad = RawClient::agent(hub.url(), None, &[]).await;
    let mut other = RawClient::agent(hub.url(), None, &[]).await;

    bad.send_text("this is not JSON").await;
    let r = bad.recv().await;
    assert_eq!(
        (r["error"]["code"].as_i64(), &r["id"]),
        (Some(-32700), &Value::Null),
        "{r}"
    );

    bad.send_text(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":"oops"}"#)
        .await;
    let r = bad.recv().await;
    assert_eq!(
        (r["error"]["code"].as_i64(), &r["id"]),
        (Some(-32602), &json!(7)),
        "{r}"
    );

    // Params the hub cannot decode (a number beyond f64): a parse error that keeps the id.
    bad.send_text(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"n":1e400}}"#)
        .await;
    let r = bad.recv().await;
    assert_eq!(
        (r["error"]["code"].as_i64(), &r["id"]),
        (Some(-32700), &json!(8)),
        "{r}"
    );

    bad.send_text(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .await;
    assert_eq!(bad.recv().await["error"]["code"], -32600);

    bad.send_binary(vec![0, 159, 146, 150]).await;
    let r = bad.recv().await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("binary"),
        "{r}"
    );

    let big = json!({"jsonrpc": "2.0", "id": "big", "method": "tools/call",
        "params": {"name": "share_context", "arguments": {"context_key": "k", "context_value": "x".repeat(5000)}}});
    bad.send_text(&big.to_string()).await;
    let r = bad.recv().await;
    assert_eq!(
        (r["error"]["code"].as_i64(), &r["id"]),
        (Some(-32013), &json!("big")),
        "{r}"
    );
    assert!(
        r["error"]["message"].as_str().unwrap().contains("4096"),
        "{r}"
    );

    let r = bad.request(json!("u"), "no/such/method", json!({})).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = bad.call_tool(json!("t"), "no_such_tool", json!({})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");

    // A notification is never answered: the next message is the ping's reply.
    bad.send_text(r#"{"jsonrpc":"2.0","method":"notifications/whatever","params":{}}"#)
        .await;
    let r = bad.request(json!(99), "ping", json!({})).await;
    assert_eq!(r, json!({"jsonrpc": "2.0", "id": 99, "result": {}}));

    let r = other.request(json!(1), "ping", json!({})).await;
    assert_eq!(r["result"], json!({}));
    let (_, health) = hub.http_get("/health").await;
    assert_eq!(health, "ok\n");
}

#[tokio::test]
async fn pipelined_requests_run_concurrently_and_a_message_wakes_a_long_poll() {
    let hub = LocalHub::start(&["--open"]).await;
    let mut a = RawClient::agent(hub.url(), None, &["rust"]).await;
    let mut b = RawClient::agent(hub.url(), None, &[]).await;
    let who = a.call_tool(json!(0), "list_agents", json!({})).await;
    let a_id = who["result"]["structuredContent"]["agents"][0]["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        a_id.starts_with("raw-"),
        "--open names agents after clientInfo: {a_id}"
    );

    // A long-poll first, then a ping: the ping's answer must not wait for the poll.
    a.send(
        json!("poll"),
        "tools/call",
        json!({"name": "read_inbox", "arguments": {"wait_ms": 10_000}}),
    )
    .await;
    a.send(json!("ping"), "ping", json!({})).await;
    assert_eq!(a.recv().await["id"], "ping");

    let started = Instant::now();
    let sent = b
        .call_tool(
            json!(1),
            "send_message",
            json!({"to": a_id, "text": "wake up"}),
        )
        .await;
    assert_eq!(
        sent["result"]["structuredContent"]["status"], "delivered",
        "{sent}"
    );
    let r = a.recv().await;
    assert_eq!(r["id"], "poll");
    // The poll waits up to 10 s; the message wakes it long before.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the message woke the poll"
    );
    let msgs = &r["result"]["structuredContent"]["messages"];
    assert_eq!(msgs[0]["text"], "wake up", "{r}");
    assert_eq!(msgs[0]["aixp"]["hops"], 1);
    assert_eq!(r["result"]["structuredContent"]["marked_read"], true, "{r}");
    // Marked read when it was returned: the next read does not return it again.
    let r = a.call_tool(json!(2), "read_inbox", json!({})).await;
    assert_eq!(
        r["result"]["structuredContent"]["messages"],
        json!([]),
        "{r}"
    );
}

#[tokio::test]
async fn each_connection_has_its_own_rate_limit_with_a_clear_error() {
    let hub = LocalHub::start(&["--open", "--rate-limit", "0.5", "--burst", "3"]).await;
    // Every frame takes a token: initialize and notifications/initialized one each.
    let mut a = RawClient::agent(hub.url(), None, &[]).await;
    let mut b = RawClient::agent(hub.url(), None, &[]).await;
    assert!(
        a.request(json!(1), "ping", json!({}))
            .await
            .get("result")
            .is_some()
    );
    let r = a.request(json!(3), "ping", json!({})).await;
    assert_eq!(r["error"]["code"], -32029, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("0.5 calls/s") && msg.contains("burst 3"),
        "{msg}"
    );
    assert!(r["error"]["data"]["retryAfterMs"].as_u64().unwrap() > 0);
    assert_eq!(r["error"]["data"]["aixpStatus"], 5005);
    // The other connection's bucket is untouched.
    assert!(
        b.request(json!(1), "ping", json!({}))
            .await
            .get("result")
            .is_some()
    );
}

#[tokio::test]
async fn delivery_carries_the_aixp_envelope_and_the_hop_cap_refuses() {
    let hub = LocalHub::start(&["--open", "--max-hops", "5"]).await;
    let mut a = RawClient::agent(hub.url(), None, &[]).await;
    // A message reaches only an agent the hub knows: here, the sender itself.
    let me =
        a.call_tool(json!(0), "whoami", json!({})).await["result"]["structuredContent"]["identity"]
            .clone();
    let far = i64::MAX as u64 / 2;
    let send = |hops: u32| {
        json!({"name": "send_message", "arguments": {"to": me, "text": "hi"},
        "_meta": {"aicp/aixp": {"version": "aixp/1", "id": "upstream", "hops": hops, "origin": "carol", "expiresAt": far}}})
    };
    let r = a.request(json!(1), "tools/call", send(3)).await;
    let sc = &r["result"]["structuredContent"];
    assert_eq!(
        (sc["aixp"]["hops"].as_u64(), sc["aixp"]["origin"].as_str()),
        (Some(4), Some("carol")),
        "{r}"
    );
    assert_eq!(sc["aixp"]["id"], sc["message_id"]);
    assert!(
        sc["aixp"]["expiresAt"].as_u64().unwrap() < far,
        "the hub's TTL caps expiry"
    );
    let r = a.request(json!(2), "tools/call", send(5)).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert_eq!(r["result"]["structuredContent"]["aixpStatus"], 5005, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("at most 5")
    );
}

#[tokio::test]
async fn scopes_limit_what_a_token_may_do() {
    let hub = LocalHub::start(&[]).await;
    let reader = hub.token("reader", "read");
    let mut c = RawClient::agent(hub.url(), Some(&reader), &[]).await;
    let r = c
        .call_tool(
            json!(1),
            "share_context",
            json!({"context_key": "k", "context_value": 1}),
        )
        .await;
    // A scope refusal is a tool result the model reads, not a protocol error.
    assert_eq!(r["result"]["isError"], true, "{r}");
    let sc = &r["result"]["structuredContent"];
    assert!(sc["error"].as_str().unwrap().contains("`share`"), "{r}");
    let r = c
        .call_tool(json!(2), "send_message", json!({"to": "x", "text": "y"}))
        .await;
    let sc = &r["result"]["structuredContent"];
    assert_eq!(sc["scope"], "message", "{r}");
    assert_eq!(sc["aixpStatus"], 5007, "{r}");
    let r = c
        .request(
            json!(3),
            "resources/read",
            json!({"uri": "aicp://shared-state"}),
        )
        .await;
    assert_eq!(r["result"]["contents"][0]["text"], "{}", "{r}");
}

#[tokio::test]
async fn version_negotiation_and_subscriptions() {
    let hub = LocalHub::start(&["--open"]).await;
    for (asked, got) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2026-07-28", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),
    ] {
        let mut c = RawClient::connect(hub.url(), None).await;
        let r = c.request(json!(1), "initialize", json!({"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "v", "version": "1"}})).await;
        assert_eq!(r["result"]["protocolVersion"], got, "{asked}");
        assert_eq!(r["result"]["capabilities"]["resources"]["subscribe"], true);
    }
    let mut watcher = RawClient::agent(hub.url(), None, &[]).await;
    let mut writer = RawClient::agent(hub.url(), None, &[]).await;
    let r = watcher
        .request(
            json!(1),
            "resources/subscribe",
            json!({"uri": "aicp://context/plan"}),
        )
        .await;
    assert_eq!(r["result"], json!({}));
    writer
        .call_tool(
            json!(1),
            "share_context",
            json!({"context_key": "other", "context_value": 1}),
        )
        .await;
    writer
        .call_tool(
            json!(2),
            "share_context",
            json!({"context_key": "plan", "context_value": {"step": 1}}),
        )
        .await;
    // Only the subscribed URI is notified.
    let n = watcher.recv().await;
    assert_eq!(
        n,
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "aicp://context/plan"}})
    );
    let r = watcher
        .request(
            json!(2),
            "resources/read",
            json!({"uri": "aicp://context/plan"}),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(r["result"]["contents"][0]["text"].as_str().unwrap())
            .unwrap(),
        json!({"step": 1})
    );
    let r = watcher
        .request(
            json!(3),
            "resources/read",
            json!({"uri": "aicp://context/missing"}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32002, "{r}");
}

#[tokio::test]
async fn sigterm_drains_in_flight_calls_and_state_survives_a_restart() {
    let hub = LocalHub::start(&[]).await;
    let (ta, tb) = (
        hub.token("alice", "share,read,message"),
        hub.token("bob", "share,read,message"),
    );
    // Bob has connected once, so the hub knows the name and keeps his mail while he is away.
    drop(RawClient::agent(hub.url(), Some(&tb), &[]).await);
    let mut a = RawClient::agent(hub.url(), Some(&ta), &[]).await;
    a.call_tool(
        json!(1),
        "share_context",
        json!({"context_key": "plan", "context_value": {"v": 2, "list": [1, 2]}}),
    )
    .await;
    let sent = a
        .call_tool(
            json!(2),
            "send_message",
            json!({"to": "bob", "text": "kept across restarts"}),
        )
        .await;
    assert_eq!(sent["result"]["isError"], false, "{sent}");
    // Carol's inbox is empty: her long-poll is in flight when the hub is told to stop.
    let tc = hub.token("carol", "message");
    let mut c = RawClient::agent(hub.url(), Some(&tc), &[]).await;
    c.send(
        json!("poll"),
        "tools/call",
        json!({"name": "read_inbox", "arguments": {"wait_ms": 20_000}}),
    )
    .await;
    c.send(json!("ping"), "ping", json!({})).await;
    assert_eq!(c.recv().await["id"], "ping", "the poll is in flight");

    let started = Instant::now();
    let hub = hub.restart().await; // SIGTERM: the in-flight poll is answered before the connection closes.
    let r = c.recv().await;
    assert_eq!(r["id"], "poll", "{r}");
    assert!(r.get("result").is_some(), "{r}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let mut b = RawClient::agent(hub.url(), Some(&tb), &[]).await;
    let r = b
        .request(
            json!(1),
            "resources/read",
            json!({"uri": "aicp://shared-state"}),
        )
        .await;
    let state: Value =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(state, json!({"plan": {"v": 2, "list": [1, 2]}}));
    let r = b.call_tool(json!(2), "read_inbox", json!({})).await;
    assert_eq!(
        r["result"]["structuredContent"]["messages"][0]["text"], "kept across restarts",
        "{r}"
    );
}

#[tokio::test]
async fn http_endpoints_report_health_readiness_and_metrics() {
    let hub = LocalHub::start(&["--open"]).await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    c.call_tool(json!(1), "list_agents", json!({})).await;
    c.call_tool(json!(2), "send_message", json!({"to": "x"}))
        .await;
    assert_eq!(hub.http_get("/health").await, (200, "ok\n".into()));
    assert_eq!(hub.http_get("/ready").await, (200, "ready\n".into()));
    let (status, m) = hub.http_get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "aicp_hub_connections 1",
        "aicp_hub_calls_total{method=\"tools/call\",tool=\"list_agents\",outcome=\"ok\"} 1",
        "aicp_hub_calls_total{method=\"tools/call\",tool=\"send_message\",outcome=\"tool_error\"} 1",
        "aicp_hub_call_duration_seconds_count",
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
    let size: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("aicp_hub_store_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 0);
    let (status, body) = hub.http_get("/somewhere").await;
    assert_eq!(status, 426, "{body}");
}

#[tokio::test]
async fn open_mode_only_on_loopback_and_token_prints_only_the_token() {
    let out = tokio::process::Command::new(hub_bin())
        .args([
            "--open",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            "/nonexistent-aicp",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
    assert!(out.stdout.is_empty());
    let hub = LocalHub::start(&[]).await;
    let t = hub.token("alice", "read");
    assert_eq!(t.split('.').count(), 3, "{t}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(hub.data_dir().join("jwt-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn route_and_orchestrate_deliver_to_matching_agents() {
    let hub = LocalHub::start(&[]).await;
    let tokens: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| hub.token(n, "share,read,message"))
        .collect();
    let mut alice = RawClient::agent(hub.url(), Some(&tokens[0]), &["writing"]).await;
    let r = alice
        .call_tool(
            json!(1),
            "route_to_agent",
            json!({"message": "review my patch"}),
        )
        .await;
    let sc = &r["result"]["structuredContent"];
    // Nobody else is known: nothing delivered, and no invented agent named.
    assert_eq!(
        (
            sc["status"].as_str(),
            sc["agent"].is_null(),
            sc["delivered"].as_bool()
        ),
        (Some("no_match"), true, Some(false)),
        "{r}"
    );
    assert!(sc["timestamp"].is_string() && sc["suggestion"].is_string());

    let mut bob = RawClient::agent(hub.url(), Some(&tokens[1]), &["rust", "code-review"]).await;
    let mut carol = RawClient::agent(hub.url(), Some(&tokens[2]), &["analysis"]).await;
    let r = alice
        .call_tool(
            json!(2),
            "route_to_agent",
            json!({"message": "review my patch", "context": {"pr": 7}}),
        )
        .await;
    let sc = &r["result"]["structuredContent"];
    assert_eq!(
        (sc["status"].as_str(), sc["agent"].as_str()),
        (Some("routed"), Some("bob")),
        "{r}"
    );
    let inbox = bob.call_tool(json!(1), "read_inbox", json!({})).await;
    let m = &inbox["result"]["structuredContent"]["messages"][0];
    assert_eq!(m["from"], "alice");
    assert!(m["text"].as_str().unwrap().contains("\"pr\":7"), "{m}");
    assert_eq!(m["id"], sc["message_id"]);

    // Five subtasks, two agents: every one is assigned and delivered.
    let r = alice
        .call_tool(
            json!(3),
            "orchestrate_collaboration",
            json!({"task": "- a\n- b\n- c\n- d\n- e"}),
        )
        .await;
    let sc = &r["result"]["structuredContent"];
    let subtasks = sc["subtasks"].as_array().unwrap();
    assert_eq!(subtasks.len(), 5, "{r}");
    assert!(
        subtasks
            .iter()
            .all(|s| s["delivered"] == true && s["agent"].is_string()),
        "{r}"
    );
    let b = bob.call_tool(json!(2), "read_inbox", json!({})).await;
    let c = carol.call_tool(json!(1), "read_inbox", json!({})).await;
    let nb = b["result"]["structuredContent"]["messages"]
        .as_array()
        .unwrap()
        .len();
    let nc = c["result"]["structuredContent"]["messages"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(nb + nc, 5, "{b}\n{c}");
    assert!(nb >= 2 && nc >= 2, "spread over both agents: {nb} / {nc}");
}

#[tokio::test]
async fn a_failed_store_write_is_a_tool_error_and_loses_nothing() {
    let hub = LocalHub::start(&[
        "--open",
        "--max-store-bytes",
        "65536",
        "--max-value-bytes",
        "1000000",
        "--max-message-bytes",
        "2000000",
    ])
    .await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    let r = c
        .call_tool(
            json!(1),
            "share_context",
            json!({"context_key": "kept", "context_value": {"a": 1}}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let big = "x".repeat(200 * 1024);
    let r = c
        .call_tool(
            json!(2),
            "share_context",
            json!({"context_key": "big", "context_value": big}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("full") && text.contains("65536"), "{text}");
    let r = c
        .request(
            json!(3),
            "resources/read",
            json!({"uri": "aicp://shared-state"}),
        )
        .await;
    assert_eq!(
        r["result"]["contents"][0]["text"], "{\"kept\":{\"a\":1}}",
        "{r}"
    );
    let (_, m) = hub.http_get("/metrics").await;
    assert!(m.contains("aicp_hub_calls_total{method=\"tools/call\",tool=\"share_context\",outcome=\"tool_error\"} 1"), "{m}");
}

#[tokio::test]
async fn the_connection_limit_refuses_with_503_and_frees_on_close() {
    let hub = LocalHub::start(&["--open", "--max-connections", "1"]).await;
    let mut first = RawClient::agent(hub.url(), None, &[]).await;
    // A long-poll in flight must not keep the slot once its client is gone.
    first
        .send(
            json!("poll"),
            "tools/call",
            json!({"name": "read_inbox", "arguments": {"wait_ms": 30_000}}),
        )
        .await;
    match RawClient::try_connect(hub.url(), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("limit 1"), "{body}");
        }
        other => panic!("expected HTTP 503, got {:?}", other.err()),
    }
    drop(first);
    // The slot frees once the hub has seen the close.
    let start = Instant::now();
    loop {
        match RawClient::try_connect(hub.url(), None).await {
            Ok(_) => break,
            Err(_) if start.elapsed() < Duration::from_secs(3) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    }
}

#[tokio::test]
async fn a_cancelled_call_gets_no_answer_and_the_session_goes_on() {
    let hub = LocalHub::start(&["--open"]).await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    c.send(
        json!("poll"),
        "tools/call",
        json!({"name": "read_inbox", "arguments": {"wait_ms": 30_000}}),
    )
    .await;
    c.send_text(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "poll", "reason": "user"}}).to_string()).await;
    // The next message is the ping's answer: nothing for the cancelled poll, then or later.
    let r = c.request(json!("p"), "ping", json!({})).await;
    assert_eq!(r["id"], "p");
    let r = c.call_tool(json!("w"), "whoami", json!({})).await;
    assert_eq!(r["id"], "w", "{r}");
    let (_, m) = hub.http_get("/metrics").await;
    assert!(
        !m.contains("tool=\"read_inbox\""),
        "a cancelled call is not counted as answered:\n{m}"
    );
}

#[tokio::test]
async fn a_secret_file_signs_and_checks_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-shared-by-ops\n").unwrap();
    let secret_arg = secret.display().to_string();
    let hub = LocalHub::start(&["--jwt-secret-file", &secret_arg]).await;
    let out = std::process::Command::new(hub_bin())
        .args(["token", "--sub", "ops", "--jwt-secret-file", &secret_arg])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut c = RawClient::agent(hub.url(), Some(&token), &[]).await;
    let r = c.call_tool(json!(1), "whoami", json!({})).await;
    assert_eq!(r["result"]["structuredContent"]["identity"], "ops", "{r}");
    assert!(
        !hub.data_dir().join("jwt-secret").exists(),
        "no secret generated when a file is given"
    );
    // The data dir's own secret (a token from `hub token` without the file) does not work here.
    assert!(
        RawClient::try_connect(hub.url(), Some(&hub.token("ops", "read")))
            .await
            .is_err()
    );
}

/// A hub whose stderr reader went away (the terminal or the service manager
/// that started it) still stops on SIGTERM: a failed log write used to panic
/// the task that logged, the signal handler among them, and the hub kept running.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_a_hub_whose_log_reader_is_gone() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::support::local_hub::hub_command();
    let _home = crate::support::env::isolate(&mut cmd);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "debug",
        "--data-dir",
    ])
    .arg(dir.path().join("hub"))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut hub = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(hub.stdout.take().unwrap()).lines();
    let url = lines
        .next_line()
        .await
        .unwrap()
        .expect("the hub prints its URL");
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    drop(hub.stderr.take()); // nobody reads the logs any more
    let pid = hub.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), hub.wait())
        .await
        .expect("the hub stopped after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
