//! Presence over real sockets against the built `aicp-hub`: `list_agents`
//! shows every known identity, online with its sessions or offline with when
//! it was last seen and what it last declared; a session that declares no
//! capabilities keeps the stored ones; and what the model is told (server
//! instructions, the `check_requests` prompt).

use serde_json::{Value, json};

use crate::support::local_hub::{LocalHub, RawClient};

fn structured(r: &Value) -> &Value {
    &r["result"]["structuredContent"]
}

/// A client that initializes with `meta` as its `_meta` (None: no `_meta` at all); returns it and the initialize result.
async fn init_with(url: &str, token: &str, meta: Option<Value>) -> (RawClient, Value) {
    let mut c = RawClient::connect(url, Some(token)).await;
    let mut params = json!({
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "plain-host", "version": "2"}
    });
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    let r = c.request(json!("init"), "initialize", params).await;
    assert!(r.get("result").is_some(), "{r}");
    c.send_text(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .await;
    (c, r["result"].clone())
}

async fn entry(c: &mut RawClient, who: &str) -> (Value, Value) {
    let r = c.call_tool(json!("list"), "list_agents", json!({})).await;
    let e = structured(&r)["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .find(|a| a["identity"] == who)
        .cloned()
        .unwrap_or(Value::Null);
    (e, structured(&r).clone())
}

#[tokio::test]
async fn list_agents_shows_offline_people_and_every_session_of_one() {
    let hub = LocalHub::start(&[]).await;
    let token = |who: &str| hub.token(who, "share,read,message");
    // Carol was here with her capabilities, and left.
    drop(RawClient::agent(hub.url(), Some(&token("carol")), &["analysis"]).await);
    let mut alice = RawClient::agent(hub.url(), Some(&token("alice")), &["writing"]).await;
    let _bob1 = RawClient::agent(hub.url(), Some(&token("bob")), &["rust"]).await;
    let _bob2 = RawClient::agent(hub.url(), Some(&token("bob")), &["rust"]).await;
    // Carol's session ends on the hub side shortly after the socket drops.
    let mut tries = 0;
    let (carol, all) = loop {
        let (carol, all) = entry(&mut alice, "carol").await;
        if carol["status"] == "offline" || tries == 50 {
            break (carol, all);
        }
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(carol["status"], "offline", "{all}");
    assert_eq!(carol["sessions"], json!([]), "{carol}");
    assert_eq!(
        carol["capabilities"],
        json!(["analysis"]),
        "the last declared: {carol}"
    );
    let seen = carol["last_seen"].as_str().unwrap();
    assert!(seen.len() == 24 && seen.ends_with('Z'), "{seen}");
    assert_eq!(
        (
            all["online"].as_u64(),
            all["offline"].as_u64(),
            all["count"].as_u64()
        ),
        (Some(2), Some(1), Some(3)),
        "{all}"
    );
    let (bob, _) = entry(&mut alice, "bob").await;
    assert_eq!(bob["status"], "online", "{bob}");
    let sessions = bob["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "one entry, two sessions: {bob}");
    assert!(
        sessions
            .iter()
            .all(|s| s["client"]["name"] == "raw" && s["connected_at"].is_string())
    );
    // She still gets messages, and the sender is told she is offline.
    let r = alice
        .call_tool(
            json!(1),
            "send_message",
            json!({"to": "carol", "text": "when you are back"}),
        )
        .await;
    assert_eq!(structured(&r)["recipient_online"], false, "{r}");
    assert!(
        structured(&r)["note"]
            .as_str()
            .unwrap()
            .contains("carol is offline"),
        "{r}"
    );
    let tools = alice.request(json!("t"), "tools/list", json!({})).await;
    let list = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "list_agents")
        .unwrap()["description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        list.contains("Offline people still receive messages"),
        "{list}"
    );
}

#[tokio::test]
async fn a_session_declaring_nothing_keeps_the_stored_capabilities_and_an_empty_list_clears_them() {
    let hub = LocalHub::start(&[]).await;
    let bob = hub.token("bob", "share,read,message");
    let mut alice =
        RawClient::agent(hub.url(), Some(&hub.token("alice", "read,message")), &[]).await;
    drop(RawClient::agent(hub.url(), Some(&bob), &["rust", "code-review"]).await);
    // A host without the bridge: no `_meta`, and one with `aicp/agent` but no `capabilities` key.
    for meta in [None, Some(json!({"aicp/agent": {}}))] {
        let (mut plain, init) = init_with(hub.url(), &bob, meta.clone()).await;
        let instructions = init["instructions"].as_str().unwrap();
        assert!(
            instructions.contains("rust, code-review"),
            "{meta:?}: {instructions}"
        );
        let r = plain.call_tool(json!(1), "whoami", json!({})).await;
        assert_eq!(
            structured(&r)["capabilities"],
            json!(["rust", "code-review"]),
            "{r}"
        );
        let (e, _) = entry(&mut alice, "bob").await;
        assert_eq!(
            e["capabilities"],
            json!(["rust", "code-review"]),
            "{meta:?}: {e}"
        );
    }
    // An explicit empty list replaces them, for this session and for the record.
    let (mut cleared, _) = init_with(
        hub.url(),
        &bob,
        Some(json!({"aicp/agent": {"capabilities": []}})),
    )
    .await;
    let r = cleared.call_tool(json!(1), "whoami", json!({})).await;
    assert_eq!(structured(&r)["capabilities"], json!([]), "{r}");
    drop(cleared);
    let (mut later, _) = init_with(hub.url(), &bob, None).await;
    let r = later.call_tool(json!(1), "whoami", json!({})).await;
    assert_eq!(structured(&r)["capabilities"], json!([]), "{r}");
}

#[tokio::test]
async fn the_model_is_told_that_work_arrives_and_how_to_answer_it() {
    let hub = LocalHub::start(&[]).await;
    let (mut c, init) = init_with(hub.url(), &hub.token("alice", "share,read,message"), None).await;
    let instructions = init["instructions"].as_str().unwrap();
    for needed in [
        "read_inbox",
        "wait_ms",
        "reply_to",
        "offline",
        "list_agents",
        "get_context",
        "plan_status",
    ] {
        assert!(instructions.contains(needed), "{needed}: {instructions}");
    }
    let r = c.request(json!(1), "prompts/list", json!({})).await;
    let names: Vec<&str> = r["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"check_requests"), "{names:?}");
    let r = c
        .request(json!(2), "prompts/get", json!({"name": "check_requests"}))
        .await;
    let text = r["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    assert!(
        text.contains("read_inbox") && text.contains("reply_to"),
        "{text}"
    );
}
