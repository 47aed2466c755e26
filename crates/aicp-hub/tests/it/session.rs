//! The local hub's per-connection bounds, driven over real sockets against the
//! built `aicp-hub`: memory a client can make the hub hold (answers to
//! a client that does not read, subscriptions, ids, requests in flight), the
//! keepalive that drops silent peers, rate limiting of every frame, and the
//! close codes for frames the hub refuses.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::support::local_hub::{LocalHub, RawClient};

/// Most the hub's RSS may grow while one client floods it with reads it never
/// collects. Before the bounds it grew by hundreds of MB (one answer per request).
const RSS_GROWTH_LIMIT_KIB: u64 = 100 * 1024;

/// The close frame the hub sends next, skipping JSON messages; panics if none comes.
async fn close_code(c: &mut RawClient) -> CloseCode {
    loop {
        match c.next_frame(Duration::from_secs(10)).await {
            Some(Some(Ok(Message::Close(Some(f))))) => return f.code,
            Some(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn identity(c: &mut RawClient) -> String {
    let r = c.call_tool(json!("who"), "whoami", json!({})).await;
    r["result"]["structuredContent"]["identity"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned()
}

/// The identities `list_agents` shows online (offline ones are listed too, as offline).
async fn agents(c: &mut RawClient, id: u64) -> Vec<String> {
    let r = c.call_tool(json!(id), "list_agents", json!({})).await;
    r["result"]["structuredContent"]["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .filter(|a| a["status"] == "online")
        .map(|a| a["identity"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_grow_the_hubs_memory() {
    let hub = LocalHub::start(&["--open", "--rate-limit", "0"]).await;
    let mut writer = RawClient::agent(hub.url(), None, &[]).await;
    // A 240 KB shared state: every read of aicp://shared-state answers with all of it.
    let r = writer
        .call_tool(
            json!(1),
            "share_context",
            json!({"context_key": "big", "context_value": "x".repeat(60_000)}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    for k in 0..3 {
        let r = writer
            .call_tool(
                json!(2 + k),
                "share_context",
                json!({"context_key": format!("big{k}"), "context_value": "y".repeat(60_000)}),
            )
            .await;
        assert_eq!(r["result"]["isError"], false, "{r}");
    }
    let r = writer
        .request(
            json!("warm"),
            "resources/read",
            json!({"uri": "aicp://shared-state"}),
        )
        .await;
    assert!(r["result"]["contents"][0]["text"].as_str().unwrap().len() > 240_000);
    let before = hub.rss_kib();

    let mut flooder = RawClient::connect(hub.url(), None).await;
    let sender = tokio::spawn(async move {
        for i in 0..1500u32 {
            let req = json!({"jsonrpc": "2.0", "id": i, "method": "resources/read",
                "params": {"uri": "aicp://shared-state"}});
            if !flooder.try_send(Message::text(req.to_string())).await {
                break;
            }
        }
        flooder
    });
    let mut peak = before;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        peak = peak.max(hub.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sender.abort();
    eprintln!(
        "hub RSS: {before} KiB before the flood, peak {peak} KiB, growth {} KiB (limit {RSS_GROWTH_LIMIT_KIB})",
        peak - before
    );
    assert!(
        peak - before < RSS_GROWTH_LIMIT_KIB,
        "hub RSS grew by {} KiB (from {before} to {peak}) for a client that never reads",
        peak - before
    );
    // The hub still serves everyone else.
    let r = writer.request(json!("after"), "ping", json!({})).await;
    assert_eq!(r["result"], json!({}), "{r}");
}

#[tokio::test]
async fn the_65th_subscription_and_an_oversized_uri_are_refused_with_the_limit() {
    let hub = LocalHub::start(&["--open"]).await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    for i in 0..64 {
        let r = c
            .request(
                json!(i),
                "resources/subscribe",
                json!({"uri": format!("aicp://context/k{i}")}),
            )
            .await;
        assert_eq!(r["result"], json!({}), "{r}");
    }
    // Subscribing again to one already held is not a new subscription.
    let r = c
        .request(
            json!("again"),
            "resources/subscribe",
            json!({"uri": "aicp://context/k0"}),
        )
        .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let r = c
        .request(
            json!(64),
            "resources/subscribe",
            json!({"uri": "aicp://context/k64"}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32014, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("64"),
        "{r}"
    );
    // Unsubscribing frees a place.
    let r = c
        .request(
            json!("u"),
            "resources/unsubscribe",
            json!({"uri": "aicp://context/k0"}),
        )
        .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let r = c
        .request(
            json!(65),
            "resources/subscribe",
            json!({"uri": "aicp://context/k64"}),
        )
        .await;
    assert_eq!(r["result"], json!({}), "{r}");

    let long = format!("aicp://context/{}", "k".repeat(4000));
    for (id, method) in [(70, "resources/unsubscribe"), (71, "resources/read")] {
        let r = c.request(json!(id), method, json!({"uri": long})).await;
        assert_eq!(r["error"]["code"], -32013, "{method}: {r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains("2048"), "{method}: {r}");
        assert!(!msg.contains("kkkk"), "the URI is not echoed: {r}");
    }
}

#[tokio::test]
async fn an_oversized_id_is_refused_without_being_echoed() {
    let hub = LocalHub::start(&["--open"]).await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    let id = "i".repeat(1000);
    c.send(
        json!(id),
        "tools/call",
        json!({"name": "read_inbox", "arguments": {"wait_ms": 10000}}),
    )
    .await;
    let r = c.recv().await;
    assert_eq!(r["error"]["code"], -32013, "{r}");
    assert_eq!(r["id"], Value::Null, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("256"),
        "{r}"
    );
    // An id at the limit is fine ("…" quotes count: 254 characters is 256 bytes of JSON).
    let r = c.request(json!("j".repeat(254)), "ping", json!({})).await;
    assert_eq!(r["result"], json!({}), "{r}");
}

#[tokio::test]
async fn a_second_request_under_an_id_in_flight_is_refused() {
    let hub = LocalHub::start(&["--open"]).await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    let started = Instant::now();
    c.send(
        json!("dup"),
        "tools/call",
        json!({"name": "read_inbox", "arguments": {"wait_ms": 5000}}),
    )
    .await;
    let r = c
        .call_tool(json!("dup"), "read_inbox", json!({"wait_ms": 5000}))
        .await;
    // The first waits 5 s; the second is refused long before (loose for a loaded machine).
    assert!(
        started.elapsed() < Duration::from_millis(4000),
        "refused at once"
    );
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in flight"),
        "{r}"
    );
    // The first one is still answered, once, when its wait ends.
    let r = c.recv().await;
    assert_eq!(r["id"], "dup", "{r}");
    assert!(
        r["result"]["structuredContent"]["messages"].is_array(),
        "{r}"
    );
}

#[tokio::test]
async fn requests_in_flight_are_capped_per_connection() {
    let hub = LocalHub::start(&["--open"]).await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    for i in 0..64 {
        c.send(
            json!(i),
            "tools/call",
            json!({"name": "read_inbox", "arguments": {"wait_ms": 20000}}),
        )
        .await;
    }
    let r = c
        .call_tool(json!(64), "read_inbox", json!({"wait_ms": 20000}))
        .await;
    assert_eq!(r["error"]["code"], -32014, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("64"),
        "{r}"
    );
    assert_eq!(r["error"]["data"]["limit"], 64, "{r}");
    // Cheap methods are answered inline and still work.
    let r = c.request(json!("p"), "ping", json!({})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    // Another connection has its own allowance.
    let mut other = RawClient::agent(hub.url(), None, &[]).await;
    let r = other
        .call_tool(json!(1), "read_inbox", json!({"wait_ms": 0}))
        .await;
    assert!(r.get("result").is_some(), "{r}");
}

#[tokio::test]
async fn an_answer_over_the_limit_is_replaced_by_an_error_saying_how_to_narrow_it() {
    // Answers are capped at 4 × --max-message-bytes: 16384 here.
    let hub = LocalHub::start(&["--open", "--max-message-bytes", "4096"]).await;
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    for k in 0..6 {
        let r = c
            .call_tool(
                json!(k),
                "share_context",
                json!({"context_key": format!("k{k}"), "context_value": "v".repeat(3000)}),
            )
            .await;
        assert_eq!(r["result"]["isError"], false, "{r}");
    }
    let r = c
        .request(
            json!("all"),
            "resources/read",
            json!({"uri": "aicp://shared-state"}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32013, "{:.300}", r.to_string());
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("16384") && msg.contains("aicp://context/"),
        "{r}"
    );
    let r = c
        .request(
            json!("one"),
            "resources/read",
            json!({"uri": "aicp://context/k0"}),
        )
        .await;
    assert!(r["result"]["contents"].is_array(), "{r}");
}

#[tokio::test]
async fn a_silent_peer_is_dropped_and_leaves_presence_while_an_idle_one_stays() {
    let hub = LocalHub::start(&["--open", "--keepalive", "1"]).await;
    let mut frozen = RawClient::agent(hub.url(), None, &[]).await;
    let frozen_id = identity(&mut frozen).await;
    let mut idle = RawClient::agent(hub.url(), None, &[]).await;
    let idle_id = identity(&mut idle).await;
    let mut observer = RawClient::agent(hub.url(), None, &[]).await;
    // `frozen` is never polled again: it answers no ping. `idle` is polled, so
    // tungstenite answers the hub's pings, but it sends nothing else.
    let idle_task = tokio::spawn(async move {
        idle.idle(Duration::from_secs(7)).await;
        idle
    });
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let seen = agents(&mut observer, n).await;
        assert!(seen.contains(&idle_id), "{seen:?}");
        if !seen.contains(&frozen_id) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{frozen_id} still listed after {:?} with --keepalive 1: {seen:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("silent peer dropped after {:?}", started.elapsed());
    // Still known, now offline, with when it was last here.
    let r = observer
        .call_tool(json!("all"), "list_agents", json!({}))
        .await;
    let gone = r["result"]["structuredContent"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["identity"] == frozen_id.as_str())
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    assert_eq!(
        (
            gone["status"].as_str(),
            gone["sessions"].as_array().map(Vec::len)
        ),
        (Some("offline"), Some(0)),
        "{gone}"
    );
    assert!(
        gone["last_seen"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{gone}"
    );
    // The observer too must answer pings while it waits for the idle client's spell to end.
    let spell = Duration::from_secs(7) + Duration::from_millis(300);
    observer.idle(spell.saturating_sub(started.elapsed())).await;
    let mut idle = idle_task.await.unwrap();
    let seen = agents(&mut observer, 1000).await;
    assert!(seen.contains(&idle_id), "{seen:?}");
    let r = idle.request(json!("still"), "ping", json!({})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    drop(frozen);
}

#[tokio::test]
async fn garbage_over_the_rate_limit_gets_no_answers_and_a_flood_is_closed_with_1008() {
    let hub = LocalHub::start(&["--open", "--rate-limit", "5", "--burst", "5"]).await;
    let mut good = RawClient::agent(hub.url(), None, &[]).await;
    let mut bad = RawClient::connect(hub.url(), None).await;
    let mut sent = 0;
    for i in 0..100 {
        let garbage = if i % 2 == 0 {
            Message::text(format!("not json {i}"))
        } else {
            Message::binary(vec![0xde, 0xad])
        };
        if !bad.try_send(garbage).await {
            break;
        }
        sent += 1;
    }
    let mut replies = 0;
    let code = loop {
        match bad.next_frame(Duration::from_secs(5)).await {
            Some(Some(Ok(Message::Text(_)))) => replies += 1,
            Some(Some(Ok(Message::Close(f)))) => break f.map(|f| f.code),
            other => panic!("after {replies} replies: {other:?}"),
        }
    };
    eprintln!("{sent} garbage frames sent, {replies} error replies, closed with {code:?}");
    assert!(
        replies <= 5,
        "{replies} replies to garbage past a burst of 5"
    );
    assert_eq!(code, Some(CloseCode::Policy));
    // The well-behaved connection is unaffected.
    for i in 0..3 {
        let r = good.request(json!(i), "ping", json!({})).await;
        assert_eq!(r["result"], json!({}), "{r}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, metrics) = hub.http_get("/metrics").await;
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aicp_hub_frames_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(dropped >= 10, "{dropped} dropped: {metrics}");
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_invalid_utf8_with_1007() {
    // The hard frame limit is 8 × --max-message-bytes: 8192 here.
    let hub = LocalHub::start(&["--open", "--max-message-bytes", "1024"]).await;
    let mut big = RawClient::agent(hub.url(), None, &[]).await;
    assert!(big.try_send(Message::text("x".repeat(10_000))).await);
    assert_eq!(close_code(&mut big).await, CloseCode::Size);

    let mut bad = RawClient::agent(hub.url(), None, &[]).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    assert!(bad.try_send(Message::Frame(frame)).await);
    assert_eq!(close_code(&mut bad).await, CloseCode::Invalid);

    // Below the hard limit an oversized message is still an error, not a close.
    let mut ok = RawClient::agent(hub.url(), None, &[]).await;
    ok.send_text(&"y".repeat(2000)).await;
    assert_eq!(ok.recv().await["error"]["code"], -32013);
}
