//! A sloppy hub, as real hubs are: each test pairs one documented quirk of
//! the quirky test hub with what the bridge does about it (docs/relay.md).

use std::time::Duration;

use serde_json::json;

use crate::support::{Bridge, FakeHub, FakeHubOptions};

fn quirky() -> FakeHubOptions {
    FakeHubOptions {
        quirky: true,
        ..Default::default()
    }
}

async fn setup() -> (FakeHub, Bridge) {
    let hub = FakeHub::start(quirky()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-11-25").await;
    (hub, bridge)
}

#[tokio::test]
async fn no_subprotocol_and_a_fixed_old_version_still_connect_and_reach_the_host() {
    let hub = FakeHub::start(quirky()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    let init = bridge.initialize("2025-11-25").await;
    // The hub's (non-)negotiation reaches the host as the hub said it.
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    // The first upgrade offered `mcp`; the retry offered nothing.
    let offered: Vec<bool> = hub
        .upgrade_headers()
        .iter()
        .map(|h| h.iter().any(|(k, _)| k == "sec-websocket-protocol"))
        .collect();
    assert_eq!(offered, [true, false]);

    // A well-behaved hub gets the subprotocol on the first try.
    let good = FakeHub::start(FakeHubOptions::default()).await;
    let mut b2 = Bridge::serve(&good.url(), &[]);
    b2.initialize("2025-11-25").await;
    assert_eq!(good.connections(), 1);
    let h = &good.upgrade_headers()[0];
    assert!(
        h.iter()
            .any(|(k, v)| k == "sec-websocket-protocol" && v == "mcp"),
        "{h:?}"
    );
}

#[tokio::test]
async fn ping_is_answered_by_the_bridge() {
    let (hub, mut bridge) = setup().await;
    let r = bridge.request(1, "ping", json!({})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert!(
        !hub.received().iter().any(|m| m["method"] == "ping"),
        "ping never reaches a hub that cannot answer it"
    );
}

#[tokio::test]
async fn id_less_errors_answering_notifications_are_dropped() {
    let (hub, mut bridge) = setup().await;
    bridge
        .notify("notifications/roots/list_changed", json!({}))
        .await;
    hub.wait_for(
        "notification arrived",
        |m| m["method"] == "notifications/roots/list_changed",
        Duration::from_secs(5),
    )
    .await;
    // The hub answered both notifications (initialized, list_changed) with
    // id-less errors; the host's next message is the reply to its next request.
    let r = bridge.call_tool(2, "echo", json!({"text": "x"})).await;
    assert_eq!(r["id"], 2);
    assert!(bridge.drain().is_empty());
}

#[tokio::test]
async fn bare_string_prompt_content_is_wrapped_as_a_text_block() {
    let (_hub, mut bridge) = setup().await;
    let r = bridge
        .request(
            1,
            "prompts/get",
            json!({"name": "analyze_task", "arguments": {"task": "q"}}),
        )
        .await;
    assert_eq!(
        r["result"]["messages"][0]["content"],
        json!({"type": "text", "text": "Analyze: q"}),
        "{r}"
    );
    assert_eq!(r["result"]["messages"][0]["role"], "user");
}

#[tokio::test]
async fn a_rejected_set_level_becomes_an_empty_result() {
    let (_hub, mut bridge) = setup().await;
    let r = bridge
        .request(1, "logging/setLevel", json!({"level": "info"}))
        .await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert!(bridge.stderr().contains("RejectedSetLevel"));
}

#[tokio::test]
async fn bad_host_input_is_refused_locally_and_the_hub_connection_lives() {
    let (hub, mut bridge) = setup().await;
    let cases = [
        // Cut off, but its id can still be found: the caller is not left waiting.
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":",
            json!(1),
            -32700,
        ),
        ("{\"method\":\"x\"", json!(null), -32700),
        (
            "[{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]",
            json!(null),
            -32600,
        ),
        ("42", json!(null), -32600),
        (
            "{\"jsonrpc\":\"1.0\",\"id\":3,\"method\":\"tools/list\"}",
            json!(3),
            -32600,
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":{\"x\":1},\"method\":\"tools/list\"}",
            json!(null),
            -32600,
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":7}",
            json!(4),
            -32600,
        ),
        ("{\"jsonrpc\":\"2.0\",\"id\":5}", json!(5), -32600),
    ];
    for (line, id, code) in cases {
        bridge.send_raw(line).await;
        let r = bridge.recv().await;
        assert_eq!(r["id"], id, "for {line}: {r}");
        assert_eq!(r["error"]["code"], code, "for {line}: {r}");
    }
    let r = bridge
        .call_tool(6, "echo", json!({"text": "still here"}))
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "still here");
    assert_eq!(
        hub.connections(),
        2,
        "no reconnect: the hub never saw the garbage (2 = subprotocol retry)"
    );
    assert!(
        hub.received().iter().all(|m| m.is_object()),
        "only objects reached the hub"
    );
}

#[tokio::test]
async fn an_oversized_request_is_refused_locally_with_its_id() {
    let (hub, mut bridge) = setup().await;
    let big = "y".repeat(1_500_000);
    let r = bridge
        .call_tool("big-1", "echo", json!({"text": big}))
        .await;
    assert_eq!(
        r["error"]["code"],
        -32600,
        "{}",
        &r.to_string()[..200.min(r.to_string().len())]
    );
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("1048576-byte limit"), "{msg}");
    assert_eq!(r["error"]["data"]["limit"], 1048576);
    // The hub (which closes on > 1 MiB) never saw it; the connection lives.
    let r = bridge.call_tool(2, "echo", json!({"text": "ok"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "ok");
    assert_eq!(hub.connections(), 2);

    // The limit is configurable.
    let mut small = Bridge::serve(&hub.url(), &["--max-message-bytes", "2000"]);
    small.initialize("2025-11-25").await;
    let r = small
        .call_tool(1, "echo", json!({"text": "z".repeat(3000)}))
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2000-byte limit"),
        "{r}"
    );
}

#[tokio::test]
async fn a_hub_that_serves_one_request_at_a_time_answers_all_pipelined_calls() {
    let (_hub, mut bridge) = setup().await;
    for i in 0..16 {
        bridge.send(json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"echo","arguments":{"text":format!("s{i}")}}})).await;
    }
    for i in 0..16 {
        // One at a time means in order.
        let r = bridge.recv().await;
        assert_eq!(r["id"], i);
    }
}

#[tokio::test]
async fn the_hub_pings_every_interval_and_the_bridge_always_pongs() {
    let hub = FakeHub::start(FakeHubOptions {
        quirky: true,
        ws_ping_every: Some(Duration::from_millis(150)),
        ..Default::default()
    })
    .await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-11-25").await;
    // Idle for several ping periods: a bridge that stopped reading would be dropped.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = bridge.call_tool(1, "echo", json!({"text": "alive"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "alive");
    assert_eq!(
        hub.connections(),
        2,
        "never dropped (2 = subprotocol retry)"
    );
}

#[tokio::test]
async fn sloppy_frames_reach_the_host_as_one_valid_message_per_line() {
    let (_hub, mut bridge) = setup().await;
    bridge.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sloppy_frames","arguments":{}}})).await;
    // The harness fails on any stdout line that is not one JSON-RPC 2.0 message.
    let (before, reply) = bridge.until_response(&json!(1)).await;
    let seen: Vec<u64> = before
        .iter()
        .map(|m| m["params"]["data"].as_u64().unwrap())
        .collect();
    // 1 binary frame, 2 pretty-printed, 3 and 4 a batch, 5 without "jsonrpc"; the
    // non-UTF-8 binary frame and the unparsable text are dropped.
    assert_eq!(seen, [1, 2, 3, 4, 5], "{before:?}");
    assert_eq!(reply["result"]["content"][0]["text"], "sloppy");
    let log = bridge.stderr();
    assert!(log.contains("binary hub frame that is not UTF-8"), "{log}");
    assert!(log.contains("unreadable message from the hub"), "{log}");
}
