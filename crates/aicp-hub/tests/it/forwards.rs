//! Forwards recognised by the hub itself: two agents that reach the hub
//! without the bridge (raw WebSocket clients, no AIXP envelope of their own)
//! and pass the same text back and forth, naming no message, are stopped at
//! `--max-hops`, and the refusal says where the text has been. A reply that
//! quotes one line of a long message keeps its count.

use serde_json::{Value, json};

use crate::support::local_hub::{LocalHub, RawClient};

fn structured(r: &Value) -> &Value {
    &r["result"]["structuredContent"]
}

#[tokio::test]
async fn the_hub_stops_a_forwarding_loop_between_clients_without_the_bridge() {
    let hub = LocalHub::start(&["--max-hops", "4"]).await;
    let token = |who: &str| hub.token(who, "share,read,message");
    let mut alice = RawClient::agent(hub.url(), Some(&token("alice")), &[]).await;
    let mut bob = RawClient::agent(hub.url(), Some(&token("bob")), &[]).await;
    let text = "Please review the release plan for version two and pass it on to whoever owns the documentation.";
    let r = alice
        .call_tool(json!(1), "send_message", json!({"to": "bob", "text": text}))
        .await;
    assert_eq!(structured(&r)["aixp"]["hops"], 1, "{r}");
    let mut players = [(&mut bob, "alice"), (&mut alice, "bob")];
    let mut refused = None;
    for forward in 0..10usize {
        let (me, other) = &mut players[forward % 2];
        let inbox = me
            .call_tool(
                json!(format!("r{forward}")),
                "read_inbox",
                json!({"wait_ms": 5000}),
            )
            .await;
        let got = structured(&inbox)["messages"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{inbox}"))
            .to_owned();
        let r = me
            .call_tool(
                json!(format!("s{forward}")),
                "send_message",
                json!({"to": *other, "text": format!("FYI: {got}")}),
            )
            .await;
        if r["result"]["isError"] == true {
            refused = Some((forward, r));
            break;
        }
        assert_eq!(structured(&r)["aixp"]["hops"], forward + 2, "{r}");
    }
    let (forward, r) = refused.expect("the loop was never stopped");
    let why = r["result"]["content"][0]["text"].as_str().unwrap();
    println!("refused after {forward} forwards: {why}");
    assert_eq!(
        forward, 3,
        "hops 2, 3, 4 were made; a fifth is over --max-hops 4"
    );
    assert_eq!(structured(&r)["aixpStatus"], 5005, "{r}");
    assert!(
        why.contains("alice → bob → alice → bob → alice") && why.contains("first sent at"),
        "{why}"
    );
}

#[tokio::test]
async fn a_reply_quoting_one_line_and_distinct_messages_keep_their_counts() {
    let hub = LocalHub::start(&["--max-hops", "4"]).await;
    let token = |who: &str| hub.token(who, "share,read,message");
    let mut alice = RawClient::agent(hub.url(), Some(&token("alice")), &[]).await;
    let mut bob = RawClient::agent(hub.url(), Some(&token("bob")), &[]).await;
    let lines: Vec<String> = (1..=10)
        .map(|n| format!("Point {n}: the item number {n} on the release checklist has its own owner and date."))
        .collect();
    let r = alice
        .call_tool(
            json!(1),
            "send_message",
            json!({"to": "bob", "text": lines.join("\n")}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let inbox = bob.call_tool(json!(2), "read_inbox", json!({})).await;
    let id = structured(&inbox)["messages"][0]["id"].clone();
    // Many replies, each quoting one line, to the writer: turns, never a hop more.
    for (n, line) in lines.iter().enumerate().take(8) {
        let r = bob
            .call_tool(
                json!(format!("q{n}")),
                "send_message",
                json!({"to": "alice", "reply_to": id, "text": format!("> {line}\nAgreed, done.")}),
            )
            .await;
        assert_eq!(structured(&r)["aixp"]["hops"], 1, "{r}");
        // A new message quoting one line, naming nothing: a new chain.
        let r = bob
            .call_tool(
                json!(format!("n{n}")),
                "send_message",
                json!({"to": "alice", "text": format!("About \"{line}\": who owns it?")}),
            )
            .await;
        assert_eq!(structured(&r)["aixp"]["hops"], 1, "{r}");
    }
}
