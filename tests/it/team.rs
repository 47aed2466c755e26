//! A small team on the local hub: four people's assistants, each through
//! `aicp-bridge serve` with the default limits, doing what the tools tell
//! them. Messages outlast the call that sent them, a long reply thread is a
//! conversation and a courtesy ping-pong is not, an inbox read marks what it
//! returned, a second session of one person loses nothing, a frozen laptop
//! leaves presence, offline colleagues are listed, and a one-shot command
//! does not overwrite who you are.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Bridge;
use crate::support::cli::Cli;
use crate::support::local_hub::LocalHub;

const SCOPES: &str = "share,read,message";

/// One person's assistant: a bridge with the default limits (plus `extra`),
/// initialized as the host `client`.
async fn assistant(hub: &LocalHub, who: &str, extra: &[&str]) -> Bridge {
    let token = hub.token(who, SCOPES);
    let mut bridge = Bridge::serve_env(hub.url(), extra, &[("AICP_TOKEN", &token)]);
    let init = bridge.initialize("2025-11-25").await;
    assert!(init["result"].is_object(), "{init}");
    // As every host does before calling a tool: the bridge learns which tools only read.
    let tools = bridge.request("tools", "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    bridge
}

/// A tool call's `structuredContent`, failing the test on a protocol error.
async fn tool(bridge: &mut Bridge, name: &str, args: Value) -> Value {
    let id = format!("{name}-{}", fastrand::u32(..));
    let r = bridge.call_tool(id, name, args).await;
    assert!(r["result"].is_object(), "{name}: {r}");
    r["result"].clone()
}

fn structured(result: &Value) -> &Value {
    &result["structuredContent"]
}

/// `list_agents`' entry for `who`.
fn entry<'a>(agents: &'a Value, who: &str) -> &'a Value {
    structured(agents)["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("{agents}"))
        .iter()
        .find(|a| a["identity"] == who)
        .unwrap_or_else(|| panic!("{who} not listed: {agents}"))
}

#[tokio::test]
async fn a_message_to_a_colleague_who_connects_later_is_waiting_for_them() {
    let hub = LocalHub::start(&[]).await;
    // Bob worked yesterday, with his capabilities declared, then closed his laptop.
    let mut bob = assistant(&hub, "bob", &["--capabilities", "rust,code-review"]).await;
    bob.close_stdin();
    bob.wait_exit(Duration::from_secs(10)).await;
    // Alice's bridge gives its calls one second to live (the default is five
    // minutes): a call's time-to-live must not become the message's lifetime.
    let mut alice = assistant(&hub, "alice", &["--limit", "call_ttl=1"]).await;
    let agents = tool(&mut alice, "list_agents", json!({})).await;
    let b = entry(&agents, "bob");
    assert_eq!(b["status"], "offline", "{agents}");
    assert_eq!(
        b["capabilities"],
        json!(["rust", "code-review"]),
        "{agents}"
    );
    assert!(b["last_seen"].as_str().unwrap().ends_with('Z'), "{agents}");
    let sent = tool(
        &mut alice,
        "send_message",
        json!({"to": "bob", "text": "Can you review the release branch when you are back?"}),
    )
    .await;
    assert_eq!(sent["isError"], false, "{sent}");
    assert_eq!(structured(&sent)["recipient_online"], false, "{sent}");
    println!("alice's assistant reads: {}", sent["content"][0]["text"]);
    // Well past the call's time-to-live, bob comes back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut bob = assistant(&hub, "bob", &[]).await;
    let inbox = tool(&mut bob, "read_inbox", json!({})).await;
    let messages = structured(&inbox)["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{inbox}");
    assert_eq!(messages[0]["from"], "alice");
    assert!(messages[0]["sent_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_thirty_turn_thread_is_a_conversation_and_a_courtesy_ping_pong_is_stopped() {
    let hub = LocalHub::start(&[]).await;
    let mut alice = assistant(&hub, "alice", &[]).await;
    let mut bob = assistant(&hub, "bob", &[]).await;
    let first = tool(
        &mut alice,
        "send_message",
        json!({"to": "bob", "text": "Let's go through the release checklist item by item."}),
    )
    .await;
    assert_eq!(first["isError"], false, "{first}");
    // Thirty replies, each answering the last, alternating: never refused.
    let mut players = [(&mut bob, "alice"), (&mut alice, "bob")];
    let mut last_id = Value::Null;
    for turn in 1..=30usize {
        let (me, other) = &mut players[(turn - 1) % 2];
        let inbox = tool(me, "read_inbox", json!({"wait_ms": 5000})).await;
        let messages = structured(&inbox)["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "turn {turn}: {inbox}");
        last_id = messages[0]["id"].clone();
        let sent = tool(
            me,
            "send_message",
            json!({"to": *other, "text": format!("Item {turn}: checked, and the notes for item {turn} are in the doc."), "reply_to": last_id}),
        )
        .await;
        assert_eq!(sent["isError"], false, "turn {turn} refused: {sent}");
        assert_eq!(structured(&sent)["aixp"]["hops"], 1, "{sent}");
        assert_eq!(structured(&sent)["aixp"]["turns"], turn, "{sent}");
    }
    // Bob has alice's thirtieth reply waiting. He thanks her; she must not thank him back.
    let inbox = tool(&mut bob, "read_inbox", json!({"wait_ms": 5000})).await;
    let last = structured(&inbox)["messages"][0]["id"].clone();
    assert!(last.is_string() && last != last_id, "{inbox}");
    let thanks = tool(
        &mut bob,
        "send_message",
        json!({"to": "alice", "text": "Thanks a lot!", "reply_to": last}),
    )
    .await;
    assert_eq!(thanks["isError"], false, "a first thanks is fine: {thanks}");
    let inbox = tool(&mut alice, "read_inbox", json!({"wait_ms": 5000})).await;
    let thanks_id = structured(&inbox)["messages"][0]["id"].clone();
    assert!(thanks_id.is_string(), "{inbox}");
    let welcome = tool(
        &mut alice,
        "send_message",
        json!({"to": "bob", "text": "You're welcome!", "reply_to": thanks_id}),
    )
    .await;
    assert_eq!(welcome["isError"], true, "{welcome}");
    assert_eq!(
        welcome["_meta"]["aicp/guard"]["limit"], "courtesy",
        "{welcome}"
    );
    println!("alice's assistant reads: {}", welcome["content"][0]["text"]);
}

#[tokio::test]
async fn a_naive_reader_sees_each_message_once_and_can_find_it_again() {
    let hub = LocalHub::start(&[]).await;
    let mut carol = assistant(&hub, "carol", &[]).await;
    let mut dave = assistant(&hub, "dave", &[]).await;
    for n in 1..=3 {
        let sent = tool(
            &mut carol,
            "send_message",
            json!({"to": "dave", "text": format!("request {n}: please look at mockup {n}")}),
        )
        .await;
        assert_eq!(sent["isError"], false, "{sent}");
    }
    // Dave's assistant never passes any acknowledgement.
    let first = tool(&mut dave, "read_inbox", json!({})).await;
    let sc = structured(&first);
    assert_eq!(sc["messages"].as_array().unwrap().len(), 3, "{first}");
    assert_eq!(
        (sc["marked_read"].as_bool(), sc["pending"].as_u64()),
        (Some(true), Some(0)),
        "{first}"
    );
    assert!(sc["next"].as_str().unwrap().contains("reply_to"), "{first}");
    let again = tool(&mut dave, "read_inbox", json!({})).await;
    assert_eq!(structured(&again)["messages"], json!([]), "{again}");
    let history = tool(&mut dave, "read_inbox", json!({"include_read": true})).await;
    let read: Vec<&Value> = structured(&history)["read_earlier"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["read_at"].is_string())
        .collect();
    assert_eq!(read.len(), 3, "nothing lost: {history}");
    // The argument the old contract had is refused, naming the ones that exist.
    let old = tool(&mut dave, "read_inbox", json!({"since": 3})).await;
    assert_eq!(old["isError"], true, "{old}");
    assert!(
        old["content"][0]["text"].as_str().unwrap().contains("peek"),
        "{old}"
    );
}

#[tokio::test]
async fn two_sessions_of_one_person_lose_nothing() {
    let hub = LocalHub::start(&[]).await;
    let mut alice = assistant(&hub, "alice", &[]).await;
    let mut desk = assistant(&hub, "bob", &[]).await;
    let mut laptop = assistant(&hub, "bob", &[]).await;
    let agents = tool(&mut alice, "list_agents", json!({})).await;
    assert_eq!(
        entry(&agents, "bob")["sessions"].as_array().unwrap().len(),
        2,
        "{agents}"
    );
    let sent = tool(
        &mut alice,
        "send_message",
        json!({"to": "bob", "text": "The demo moved to 3pm, please tell the customer."}),
    )
    .await;
    let id = structured(&sent)["message_id"].clone();
    let on_desk = tool(&mut desk, "read_inbox", json!({})).await;
    assert_eq!(structured(&on_desk)["messages"][0]["id"], id, "{on_desk}");
    // The laptop's session is told the desk read it: not silently gone.
    let on_laptop = tool(&mut laptop, "read_inbox", json!({})).await;
    let sc = structured(&on_laptop);
    assert_eq!(sc["messages"], json!([]), "{on_laptop}");
    assert_eq!(sc["read_by_other_sessions"][0]["id"], id, "{on_laptop}");
    assert!(
        sc["read_by_other_sessions"][0]["read_by"].is_string(),
        "{on_laptop}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_frozen_laptop_leaves_presence_within_two_keepalive_intervals() {
    // Keepalive 1 s (the default is 20 s): dropped after two silent intervals.
    let hub = LocalHub::start(&["--keepalive", "1"]).await;
    let mut alice = assistant(&hub, "alice", &[]).await;
    let carol = assistant(&hub, "carol", &["--capabilities", "design,ux"]).await;
    let agents = tool(&mut alice, "list_agents", json!({})).await;
    assert_eq!(entry(&agents, "carol")["status"], "online", "{agents}");
    // The lid closes: the process stops answering anything, pings included.
    let pid = carol.pid().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let frozen = std::time::Instant::now();
    let mut gone = None;
    while frozen.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let agents = tool(&mut alice, "list_agents", json!({})).await;
        if entry(&agents, "carol")["status"] == "offline" {
            assert_eq!(
                entry(&agents, "carol")["capabilities"],
                json!(["design", "ux"]),
                "{agents}"
            );
            gone = Some(frozen.elapsed());
            break;
        }
    }
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert!(cont.success());
    let gone = gone.expect("carol stayed online for 10 s while frozen");
    println!("frozen client offline after {gone:?}");
    // Two silent intervals, then the next check: well inside five seconds even on a loaded machine.
    assert!(gone <= Duration::from_secs(5), "{gone:?}");
}

#[tokio::test]
async fn a_one_shot_share_leaves_the_users_capabilities_as_they_were() {
    let hub = LocalHub::start(&[]).await;
    let mut bob = assistant(&hub, "bob", &["--capabilities", "rust,code-review"]).await;
    bob.close_stdin();
    bob.wait_exit(Duration::from_secs(10)).await;
    let mut cli = Cli::new();
    cli.env("AICP_TOKEN", &hub.token("bob", SCOPES));
    let out = cli
        .run(&[
            "share",
            "release",
            r#"{"state":"frozen"}"#,
            "--hub",
            hub.url(),
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut alice = assistant(&hub, "alice", &[]).await;
    let agents = tool(&mut alice, "list_agents", json!({})).await;
    assert_eq!(
        entry(&agents, "bob")["capabilities"],
        json!(["rust", "code-review"]),
        "{agents}"
    );
}
