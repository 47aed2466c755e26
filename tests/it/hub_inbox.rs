//! The local hub's inbox and the limits around it, as a black box: the built
//! `aicp-bridge hub` on 127.0.0.1:0 driven by raw WebSocket clients. What a
//! cursor may acknowledge, how large one answer may get, per-identity quotas,
//! and which names a message may be addressed to.

use serde_json::{Value, json};

use crate::support::local_hub::{LocalHub, RawClient};

/// A hub with JWT auth and a connected, initialized client per name.
async fn hub_with(extra: &[&str], names: &[&str]) -> (LocalHub, Vec<RawClient>) {
    let hub = LocalHub::start(extra).await;
    let mut clients = Vec::new();
    for n in names {
        let token = hub.token(n, "share,read,message");
        clients.push(RawClient::agent(hub.url(), Some(&token), &[]).await);
    }
    (hub, clients)
}

fn structured(r: &Value) -> &Value {
    &r["result"]["structuredContent"]
}

fn texts(r: &Value) -> Vec<String> {
    structured(r)["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_since_ahead_of_the_inbox_deletes_nothing_unread() {
    let (_hub, mut c) = hub_with(&[], &["alice", "bob"]).await;
    let send = |text: &str| json!({"to": "bob", "text": text});
    c[0].call_tool(json!(1), "send_message", send("one")).await;
    // Bob was never handed anything: a cursor far ahead acknowledges nothing.
    let r = c[1]
        .call_tool(json!(1), "read_inbox", json!({"since": 1_000_000}))
        .await;
    assert_eq!(texts(&r), ["one"], "{r}");
    let next = structured(&r)["next_since"].as_u64().unwrap();
    assert!(next < 1_000_000, "next_since is what was returned: {r}");
    // A client following a bogus cursor keeps getting new messages instead of deleting them.
    c[0].call_tool(json!(2), "send_message", send("two")).await;
    c[0].call_tool(json!(3), "send_message", send("three"))
        .await;
    let r = c[1]
        .call_tool(json!(2), "read_inbox", json!({"since": u64::MAX}))
        .await;
    assert_eq!(texts(&r), ["two", "three"], "{r}");
    let next = structured(&r)["next_since"].clone();
    let r = c[1]
        .call_tool(json!(3), "read_inbox", json!({"since": next}))
        .await;
    assert_eq!(texts(&r), Vec::<String>::new(), "{r}");
    assert_eq!(structured(&r)["next_since"], next, "{r}");
    let r = c[1]
        .call_tool(
            json!(4),
            "read_inbox",
            json!({"since": 9_223_372_036_854_775_808u64}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "2^63 does not wrap: {r}");
    assert_eq!(structured(&r)["next_since"], next, "{r}");
}
