//! The same message, passed around, is one message: two assistants that
//! forward what they receive to each other, naming no message id, are
//! stopped at max_hops, whether they send the text as it came, with "FYI:"
//! before it, or quoted inside a longer message. Distinct messages and a
//! reply quoting one line keep their counts. Through bridges with the default
//! limits except the repeat limit, raised so that only hop tracking can stop
//! the loop, against the local hub.

use serde_json::{Value, json};

use crate::support::Bridge;
use crate::support::local_hub::LocalHub;

const SCOPES: &str = "share,read,message";

/// One person's assistant behind a bridge whose repeat limit is out of the way.
async fn assistant(hub: &LocalHub, who: &str) -> Bridge {
    let token = hub.token(who, SCOPES);
    let mut bridge = Bridge::serve_env(
        hub.url(),
        &["--limit", "repeat_limit=1000"],
        &[("AICP_TOKEN", &token)],
    );
    bridge.initialize("2025-11-25").await;
    let tools = bridge.request("tools", "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    bridge
}

/// Alice sends bob `first`; then each in turn reads the one message waiting
/// and sends `wrap(text)` on to the other, with no `reply_to`, until a send is
/// refused. Returns how many forwards went through and the refused result.
async fn forward_back_and_forth(
    hub: &LocalHub,
    first: &str,
    wrap: impl Fn(&str) -> String,
) -> (usize, Value) {
    let mut alice = assistant(hub, "alice").await;
    let mut bob = assistant(hub, "bob").await;
    let sent = alice
        .call_tool("first", "send_message", json!({"to": "bob", "text": first}))
        .await;
    assert_eq!(sent["result"]["isError"], false, "{sent}");
    let mut players = [(&mut bob, "alice"), (&mut alice, "bob")];
    for forward in 0..20usize {
        let (me, other) = &mut players[forward % 2];
        let inbox = me
            .call_tool(
                format!("read-{forward}"),
                "read_inbox",
                json!({"wait_ms": 5000}),
            )
            .await;
        let messages = inbox["result"]["structuredContent"]["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{inbox}"));
        assert_eq!(messages.len(), 1, "{inbox}");
        let m = &messages[0];
        let sent = me
            .call_tool(
                format!("send-{forward}"),
                "send_message",
                json!({"to": *other, "text": wrap(m["text"].as_str().unwrap())}),
            )
            .await;
        if sent["result"]["isError"] == true {
            return (forward, sent["result"].clone());
        }
        assert_eq!(
            sent["result"]["structuredContent"]["aixp"]["hops"],
            forward + 2,
            "each forward is one hop further: {sent}"
        );
    }
    panic!("twenty forwards went through");
}

const PLAN: &str = "Please review the release plan for version two and pass it on to whoever owns the documentation.";

fn assert_stopped_at_max_hops(forwards: usize, refused: &Value) {
    let guard = &refused["_meta"]["aicp/guard"];
    let text = refused["content"][0]["text"].as_str().unwrap();
    println!("refused after {forwards} forwards: {text}");
    assert_eq!(
        (guard["limit"].as_str(), guard["current"].as_u64()),
        (Some("max_hops"), Some(9)),
        "{refused}"
    );
    assert_eq!(
        forwards, 8,
        "hops 2..=9 were made; passing on hops 9 is over max_hops 8"
    );
    assert!(
        text.contains("alice → bob → alice → bob") && text.contains("first sent by alice at"),
        "{text}"
    );
}

#[tokio::test]
async fn the_same_text_forwarded_back_and_forth_stops_at_max_hops() {
    let hub = LocalHub::start(&[]).await;
    let (forwards, refused) = forward_back_and_forth(&hub, PLAN, str::to_owned).await;
    assert_stopped_at_max_hops(forwards, &refused);
}

#[tokio::test]
async fn a_prefix_added_on_each_round_still_stops_at_max_hops() {
    let hub = LocalHub::start(&[]).await;
    let (forwards, refused) = forward_back_and_forth(&hub, PLAN, |t| format!("FYI: {t}")).await;
    assert_stopped_at_max_hops(forwards, &refused);
}

#[tokio::test]
async fn the_text_quoted_inside_a_longer_message_still_stops_at_max_hops() {
    let hub = LocalHub::start(&[]).await;
    let (forwards, refused) = forward_back_and_forth(&hub, PLAN, |t| {
        let quoted: Vec<String> = t.lines().map(|l| format!("> {l}")).collect();
        format!(
            "Hi, I got this from a colleague and I think it is for you:\n\n{}\n\nLet me know if not.",
            quoted.join("\n")
        )
    })
    .await;
    assert_stopped_at_max_hops(forwards, &refused);
}

#[tokio::test]
async fn distinct_messages_and_a_reply_quoting_one_line_keep_their_counts() {
    let hub = LocalHub::start(&[]).await;
    let mut alice = assistant(&hub, "alice").await;
    let mut bob = assistant(&hub, "bob").await;
    let report = "Release status, week 48:\n\
        The build is green on all three platforms since Tuesday morning.\n\
        Two flaky tests in the network suite were quarantined by carol.\n\
        The changelog still misses the entries for the new keyring backends.\n\
        Documentation for the hub's inbox contract was reviewed and merged.\n\
        Performance numbers were refreshed on the shared build machine.\n\
        The installer script now checks the signature of both binaries.\n\
        We still need a decision on dropping the old configuration format.\n\
        Dave asked for a demo of the dashboard before the end of the month.\n\
        The next release candidate is planned for Thursday afternoon.";
    let sent = alice
        .call_tool(1, "send_message", json!({"to": "bob", "text": report}))
        .await;
    assert_eq!(sent["result"]["isError"], false, "{sent}");
    let inbox = bob
        .call_tool(2, "read_inbox", json!({"wait_ms": 5000}))
        .await;
    let id = inbox["result"]["structuredContent"]["messages"][0]["id"].clone();
    // Bob answers quoting one line: a turn of their conversation, not a forward.
    let reply = bob
        .call_tool(
            3,
            "send_message",
            json!({"to": "alice", "reply_to": id, "text": "> We still need a decision on dropping the old configuration format.\nLet's drop it in version three; I will write the migration note."}),
        )
        .await;
    let env = &reply["result"]["structuredContent"]["aixp"];
    assert_eq!(
        (env["hops"].as_u64(), env["turns"].as_u64()),
        (Some(1), Some(1)),
        "{reply}"
    );
    // And a new message to someone else quoting that line starts its own chain.
    let carol = assistant(&hub, "carol").await;
    drop(carol);
    let new = bob
        .call_tool(
            4,
            "send_message",
            json!({"to": "carol", "text": "Alice's status says: \"Two flaky tests in the network suite were quarantined by carol.\" Can you tell me which ones?"}),
        )
        .await;
    assert_eq!(
        new["result"]["structuredContent"]["aixp"]["hops"], 1,
        "{new}"
    );
    // Ten distinct messages in a row from alice to bob are ten new chains.
    for n in 0..10 {
        let sent = alice
            .call_tool(
                format!("d{n}"),
                "send_message",
                json!({"to": "bob", "text": format!("Note {n}: item {n} of the checklist is done and its notes are in section {n} of the doc.")}),
            )
            .await;
        assert_eq!(
            sent["result"]["structuredContent"]["aixp"]["hops"], 1,
            "{sent}"
        );
    }
}
