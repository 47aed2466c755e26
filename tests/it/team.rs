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

/// Appends a line to `who: what` in the transcript and returns the result.
async fn said(
    transcript: &mut Vec<String>,
    who: &str,
    bridge: &mut Bridge,
    name: &str,
    args: Value,
) -> Value {
    let r = tool(bridge, name, args.clone()).await;
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    let shown: String = text.chars().take(400).collect();
    transcript.push(format!("{who} → {name}({args})\n    ← {shown}"));
    r
}

#[tokio::test]
async fn four_people_coordinate_by_what_they_declared() {
    let hub = LocalHub::start(&[]).await;
    let mut alice = assistant(&hub, "alice", &["--capabilities", "writing,analysis"]).await;
    let mut bob = assistant(&hub, "bob", &["--capabilities", "rust,code-review"]).await;
    let mut carol = assistant(&hub, "carol", &["--capabilities", "design,ux"]).await;
    let mut dave = assistant(&hub, "dave", &[]).await;
    let mut t = Vec::new();

    // Dave's UX questions all reach carol, the one who declared design and ux.
    for q in [
        "How should the onboarding flow look for first-time users?",
        "Can someone make a mockup of the settings page?",
        "Is the new dashboard layout accessible enough?",
        "Please audit the usability of the sign-up form",
        "Preview the wireframe for the mobile menu",
    ] {
        let r = said(
            &mut t,
            "dave",
            &mut dave,
            "route_to_agent",
            json!({"message": q}),
        )
        .await;
        assert_eq!(
            (
                structured(&r)["agent"].as_str(),
                structured(&r)["delivered"].as_bool()
            ),
            (Some("carol"), Some(true)),
            "{q}: {r}"
        );
    }
    // A review goes to bob, writing to alice; a request nobody declared says so honestly.
    let r = said(
        &mut t,
        "carol",
        &mut carol,
        "route_to_agent",
        json!({"message": "Please review my pull request for the theme switcher"}),
    )
    .await;
    assert_eq!(structured(&r)["agent"], "bob", "{r}");
    let r = said(
        &mut t,
        "bob",
        &mut bob,
        "route_to_agent",
        json!({"message": "Could someone draft the release announcement?"}),
    )
    .await;
    assert_eq!(structured(&r)["agent"], "alice", "{r}");
    let r = said(
        &mut t,
        "dave",
        &mut dave,
        "route_to_agent",
        json!({"message": "Book a table for six at 7pm"}),
    )
    .await;
    let sc = structured(&r);
    assert_eq!(
        (sc["delivered"].as_bool(), sc["agent"].is_null()),
        (Some(false), true),
        "{r}"
    );
    let hint = sc["suggestion"].as_str().unwrap();
    assert!(
        hint.contains("carol (design, ux; online)") && hint.contains("send_message"),
        "{hint}"
    );

    // Alice's numbered plan: split line by line, "2FA" and "404" intact, a `;`
    // inside a sentence kept; assigned by capability, none to alice herself.
    let task = "Release checklist:\n1. 2FA: add TOTP to the login crate\n2. 404 page redesign\n3. Review the pull request; check the error paths";
    let r = said(
        &mut t,
        "alice",
        &mut alice,
        "orchestrate_collaboration",
        json!({"task": task}),
    )
    .await;
    let plan = structured(&r).clone();
    let steps = plan["subtasks"].as_array().unwrap();
    let got: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["description"].as_str().unwrap(),
                s["agent"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2FA: add TOTP to the login crate", "bob"),
            ("404 page redesign", "carol"),
            ("Review the pull request; check the error paths", "bob"),
        ],
        "{r}"
    );
    // A name nobody has: refused whole, nothing delivered.
    let r = said(
        &mut t,
        "alice",
        &mut alice,
        "orchestrate_collaboration",
        json!({"task": "- fix the login crate", "agents": ["zed"]}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");

    // Bob reads his inbox and answers the 2FA subtask as its message says (reply_to).
    let inbox = said(&mut t, "bob", &mut bob, "read_inbox", json!({})).await;
    let messages = structured(&inbox)["messages"].as_array().unwrap();
    let subtask = messages
        .iter()
        .find(|m| m["text"].as_str().unwrap().contains("2FA: add TOTP"))
        .unwrap_or_else(|| panic!("{inbox}"));
    assert!(
        subtask["text"].as_str().unwrap().contains("reply_to"),
        "{subtask}"
    );
    let r = said(&mut t, "bob", &mut bob, "send_message", json!({"to": "alice", "text": "TOTP is in, behind a feature flag.", "reply_to": subtask["id"]})).await;
    assert_eq!(r["isError"], false, "{r}");
    let r = said(
        &mut t,
        "alice",
        &mut alice,
        "plan_status",
        json!({"plan_id": plan["plan_id"]}),
    )
    .await;
    let sc = structured(&r);
    assert_eq!(
        (sc["done"].as_u64(), sc["pending"].as_u64()),
        (Some(1), Some(2)),
        "{r}"
    );
    assert_eq!(
        sc["subtasks"][0]["answer"]["text"], "TOTP is in, behind a feature flag.",
        "{r}"
    );

    // Shared context a model can read: versions make a stale write a conflict, not a lost update.
    let r = said(
        &mut t,
        "alice",
        &mut alice,
        "share_context",
        json!({"context_key": "release notes", "context_value": ["2FA"]}),
    )
    .await;
    assert_eq!(structured(&r)["version"], 1, "{r}");
    let r = said(
        &mut t,
        "carol",
        &mut carol,
        "get_context",
        json!({"context_key": "release notes"}),
    )
    .await;
    assert_eq!(
        (
            structured(&r)["value"].clone(),
            structured(&r)["version"].as_u64()
        ),
        (json!(["2FA"]), Some(1)),
        "{r}"
    );
    said(&mut t, "carol", &mut carol, "share_context", json!({"context_key": "release notes", "context_value": ["2FA", "404 page"], "if_version": 1})).await;
    let r = said(&mut t, "bob", &mut bob, "share_context", json!({"context_key": "release notes", "context_value": ["2FA", "review"], "if_version": 1})).await;
    assert_eq!(r["isError"], true, "a stale write is a conflict: {r}");
    let r = said(&mut t, "bob", &mut bob, "list_context", json!({})).await;
    assert_eq!(structured(&r)["keys"][0]["version"], 2, "{r}");
    // The per-key resource under its percent-encoded URI, through the bridge.
    let r = carol
        .request(
            "res",
            "resources/read",
            json!({"uri": "aicp://context/release%20notes"}),
        )
        .await;
    assert_eq!(
        r["result"]["contents"][0]["text"], r#"["2FA","404 page"]"#,
        "{r}"
    );
    let r = said(
        &mut t,
        "dave",
        &mut dave,
        "delete_context",
        json!({"context_key": "release notes"}),
    )
    .await;
    assert_eq!(structured(&r)["deleted"], true, "{r}");

    // A read-only token is offered only the tools that read.
    let token = hub.token("erin", "read");
    let mut reader = Bridge::serve_env(hub.url(), &[], &[("AICP_TOKEN", &token)]);
    reader.initialize("2025-11-25").await;
    let tools = reader.request("tools", "tools/list", json!({})).await;
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert!(
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["annotations"]["readOnlyHint"] == true),
        "{tools}"
    );
    assert!(
        names.contains(&"list_agents") && !names.contains(&"send_message"),
        "{names:?}"
    );

    println!("{}", t.join("\n"));
}
