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

#[tokio::test]
async fn messages_reach_only_known_names_after_trimming_and_case_folding() {
    let (hub, mut c) = hub_with(&[], &["alice", "bob"]).await;
    // Carol connected once and left: she is known, offline, and her mail waits.
    let carol = hub.token("carol", "message");
    drop(RawClient::agent(hub.url(), Some(&carol), &[]).await);
    let mut id = 0;
    let mut send = async |c: &mut RawClient, to: &str| {
        id += 1;
        c.call_tool(
            json!(id),
            "send_message",
            json!({"to": to, "text": format!("to {to:?}")}),
        )
        .await
    };
    for (to, canonical) in [("Bob", "bob"), ("bob ", "bob"), (" CAROL", "carol")] {
        let r = send(&mut c[0], to).await;
        let sc = structured(&r);
        assert_eq!(r["result"]["isError"], false, "{to:?}: {r}");
        assert_eq!(
            (sc["to"].as_str(), sc["recipient_known"].as_bool()),
            (Some(canonical), Some(true)),
            "{r}"
        );
        assert_eq!(sc["recipient_connected"], canonical == "bob", "{r}");
    }
    for to in [
        "b\u{200b}ob",
        "bo\u{2060}b",
        "\u{feff}bob",
        "nobody-ever",
        "b ob",
    ] {
        let r = send(&mut c[0], to).await;
        assert_eq!(
            r["result"]["isError"], true,
            "{to:?} must not say delivered: {r}"
        );
        let text = r["result"]["content"][0]["text"].as_str().unwrap();
        assert!(!text.contains("\"delivered\""), "{text}");
        if to == "nobody-ever" {
            assert_eq!(
                structured(&r)["known_agents"],
                json!(["alice", "bob", "carol"]),
                "{r}"
            );
        }
    }
    // orchestrate_collaboration's explicit names: resolved the same way, and one unknown name delivers nothing.
    let r = c[0]
        .call_tool(
            json!("o1"),
            "orchestrate_collaboration",
            json!({"task": "x; y", "agents": ["BOB", "ghost"]}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let r = c[0]
        .call_tool(
            json!("o2"),
            "orchestrate_collaboration",
            json!({"task": "x; y", "agents": ["BOB"]}),
        )
        .await;
    assert_eq!(structured(&r)["agents"], json!(["bob"]), "{r}");
    let r = c[1].call_tool(json!(1), "read_inbox", json!({})).await;
    let got = texts(&r);
    assert_eq!(
        got.len(),
        4,
        "two messages and the two subtasks of the plan that was delivered: {r}"
    );
    assert_eq!(&got[..2], ["to \"Bob\"", "to \"bob \""]);
    let mut carol = RawClient::agent(hub.url(), Some(&carol), &[]).await;
    let r = carol.call_tool(json!(1), "read_inbox", json!({})).await;
    assert_eq!(texts(&r), ["to \" CAROL\""], "{r}");
    // Nothing was stored under the names that reach nobody: the one that could connect finds an empty inbox.
    let mut ghost =
        RawClient::agent(hub.url(), Some(&hub.token("nobody-ever", "message")), &[]).await;
    let r = ghost.call_tool(json!(1), "read_inbox", json!({})).await;
    assert_eq!(texts(&r), Vec::<String>::new(), "{r}");
}
