//! A team coordinating through the hub, as a black box: alice (writing,
//! analysis), bob and frank (rust, code-review), carol (design, ux) and dave
//! (nothing declared), each a raw client acting only on what the tools say.
//! Routing by declared capabilities, plans and their answers, versioned shared
//! context, and which tools a token sees.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::local_hub::{LocalHub, RawClient};

const TEAM: [(&str, &[&str]); 5] = [
    ("alice", &["writing", "analysis"]),
    ("bob", &["rust", "code-review"]),
    ("carol", &["design", "ux"]),
    ("dave", &[]),
    ("frank", &["rust", "code-review"]),
];

/// The hub and the team, connected in TEAM's order.
async fn team() -> (LocalHub, Vec<RawClient>) {
    let hub = LocalHub::start(&[]).await;
    let mut clients = Vec::new();
    for (name, caps) in TEAM {
        let token = hub.token(name, "share,read,message");
        clients.push(RawClient::agent(hub.url(), Some(&token), caps).await);
    }
    (hub, clients)
}

fn sc(r: &Value) -> &Value {
    &r["result"]["structuredContent"]
}

async fn route(c: &mut RawClient, message: &str) -> Value {
    let r = c
        .call_tool(
            json!("route"),
            "route_to_agent",
            json!({"message": message}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    sc(&r).clone()
}

/// Every unread message (a read marks them read).
async fn drain(c: &mut RawClient) -> Vec<Value> {
    let r = c.call_tool(json!("read"), "read_inbox", json!({})).await;
    sc(&r)["messages"].as_array().unwrap().clone()
}

/// Waits until the hub reports `who` offline (a no-match route lists everyone's presence).
async fn until_offline(c: &mut RawClient, who: &str) {
    for _ in 0..100 {
        let r = route(c, "zzz qqq").await;
        let gone = r["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["identity"] == who && a["presence"] == "offline");
        if gone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{who} still online");
}

#[tokio::test]
async fn requests_reach_who_declared_it_or_say_nobody_fits() {
    let (_hub, mut c) = team().await;
    let (alice, rest) = c.split_first_mut().unwrap();
    let dave = &mut rest[2];

    let r = route(
        dave,
        "Can someone improve the onboarding flow for new users?",
    )
    .await;
    assert_eq!(
        (r["agent"].as_str(), r["delivered"].as_bool()),
        (Some("carol"), Some(true)),
        "{r}"
    );
    assert_eq!(r["presence"], "online", "{r}");
    let r = route(dave, "Please proofread the release announcement").await;
    assert_eq!(r["agent"], "alice", "{r}");
    // Nobody declared anything about dinner: nothing delivered, everyone listed, no invented agent.
    let r = route(dave, "Book a table for six at 7pm").await;
    assert_eq!(
        (r["status"].as_str(), r["delivered"].as_bool()),
        (Some("no_match"), Some(false)),
        "{r}"
    );
    assert!(r["agent"].is_null(), "{r}");
    let listed: Vec<&str> = r["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identity"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["alice", "bob", "carol", "frank"], "{r}");
    assert_eq!(
        r["agents"][1]["capabilities"],
        json!(["rust", "code-review"]),
        "{r}"
    );
    let hint = r["suggestion"].as_str().unwrap();
    assert!(
        hint.contains("send_message") && hint.contains("carol (design, ux; online)"),
        "{hint}"
    );
    // Substrings are not words: "preview" is no review, "trust" no rust.
    let r = route(dave, "Preview it, I trust you").await;
    assert_eq!(r["delivered"], false, "{r}");
    // Never to the caller: alice is the only writer, so her writing request fits nobody else.
    let r = route(alice, "Draft the blog post").await;
    assert_eq!(r["delivered"], false, "{r}");

    // Five review requests between two equal reviewers: spread, not all to one.
    let mut got = Vec::new();
    for i in 0..5 {
        let r = route(dave, &format!("Please review pull request #{i}")).await;
        got.push(r["agent"].as_str().unwrap().to_owned());
    }
    let bobs = got.iter().filter(|a| *a == "bob").count();
    let franks = got.iter().filter(|a| *a == "frank").count();
    assert_eq!(bobs + franks, 5, "{got:?}");
    assert!(bobs >= 2 && franks >= 2, "{got:?}");

    // The messages really arrived where the results said.
    let carol_msgs = drain(&mut rest[1]).await;
    assert_eq!(carol_msgs.len(), 1, "{carol_msgs:?}");
    assert!(
        carol_msgs[0]["text"]
            .as_str()
            .unwrap()
            .contains("onboarding")
    );
    assert!(carol_msgs[0]["text"].as_str().unwrap().contains("reply_to"));
    assert_eq!(drain(&mut rest[0]).await.len(), bobs);

    // Offline people are the fallback, and the result says they are offline.
    let frank = c.pop().unwrap();
    let bob = c.remove(1);
    drop((frank, bob));
    let dave = &mut c[2];
    until_offline(dave, "bob").await;
    until_offline(dave, "frank").await;
    let r = route(dave, "my cargo build fails").await;
    assert_eq!(r["delivered"], true, "{r}");
    assert_eq!(r["presence"], "offline", "{r}");
    assert!(
        ["bob", "frank"].contains(&r["agent"].as_str().unwrap()),
        "{r}"
    );
}

#[tokio::test]
async fn a_plan_splits_lists_assigns_by_capability_and_collects_answers() {
    let (hub, mut c) = team().await;
    // frank goes offline; his declared capabilities are remembered.
    drop(c.pop());
    until_offline(&mut c[0], "frank").await;
    let task = "Launch checklist:\n\
        1. 2FA: add TOTP to the login crate\n\
        2) 404 page redesign\n\
        3. Review the pull request; check the error paths\n\
        - Proofread the docs; keep it short";
    let r = c[0]
        .call_tool(json!(1), "orchestrate_collaboration", json!({"task": task}))
        .await;
    let plan = sc(&r).clone();
    assert_eq!(plan["status"], "delegated", "{r}");
    let steps = plan["subtasks"].as_array().unwrap();
    let desc: Vec<&str> = steps
        .iter()
        .map(|s| s["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        desc,
        [
            "2FA: add TOTP to the login crate",
            "404 page redesign",
            "Review the pull request; check the error paths",
            "Proofread the docs; keep it short"
        ]
    );
    let who: Vec<&str> = steps.iter().map(|s| s["agent"].as_str().unwrap()).collect();
    // Online bob before offline frank; carol for design; never alice, the caller, though she is the writer.
    assert_eq!(&who[..3], ["bob", "carol", "bob"], "{r}");
    assert_ne!(who[3], "alice", "{r}");
    assert!(
        steps
            .iter()
            .all(|s| s["presence"] == "online" && s["delivered"] == true),
        "{r}"
    );
    let plan_id = plan["plan_id"].as_str().unwrap().to_owned();

    // Named people: frank is offline and flagged; an unknown name refuses the whole plan.
    let r = c[0]
        .call_tool(
            json!(2),
            "orchestrate_collaboration",
            json!({"task": "- fix the crate", "agents": ["frank"]}),
        )
        .await;
    assert_eq!(sc(&r)["subtasks"][0]["agent"], "frank", "{r}");
    assert_eq!(sc(&r)["subtasks"][0]["presence"], "offline", "{r}");
    let r = c[0]
        .call_tool(
            json!(3),
            "orchestrate_collaboration",
            json!({"task": "- a\n- b", "agents": ["bob", "zed"]}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        sc(&r)["known_agents"]
            .as_array()
            .unwrap()
            .contains(&json!("frank")),
        "{r}"
    );

    let status = |r: &Value| (sc(r)["done"].as_u64(), sc(r)["pending"].as_u64());
    let r = c[0]
        .call_tool(json!(4), "plan_status", json!({"plan_id": plan_id}))
        .await;
    assert_eq!(status(&r), (Some(0), Some(4)), "{r}");
    assert_eq!(sc(&r)["subtasks"][0]["status"], "pending", "{r}");

    // Bob reads both subtasks (acknowledging them), then answers one with reply_to.
    let bob_msgs = drain(&mut c[1]).await;
    assert_eq!(
        bob_msgs.len(),
        2,
        "nothing of the refused plan arrived: {bob_msgs:?}"
    );
    let first = &bob_msgs[0];
    let text = first["text"].as_str().unwrap();
    assert!(
        text.contains("2FA: add TOTP")
            && text.contains("reply_to")
            && text.contains("to=\"alice\""),
        "{text}"
    );
    let r = c[1]
        .call_tool(
            json!(1),
            "send_message",
            json!({"to": "alice", "text": "TOTP is in", "reply_to": first["id"]}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    // A reply_to naming no message is refused.
    let r = c[1]
        .call_tool(
            json!(2),
            "send_message",
            json!({"to": "alice", "text": "?", "reply_to": "msg-nope"}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        sc(&r)["error"]
            .as_str()
            .unwrap()
            .contains("names no message"),
        "{r}"
    );

    let r = c[0]
        .call_tool(json!(5), "plan_status", json!({"plan_id": plan_id}))
        .await;
    assert_eq!(status(&r), (Some(1), Some(3)), "{r}");
    let answer = &sc(&r)["subtasks"][0]["answer"];
    assert_eq!(
        (answer["from"].as_str(), answer["text"].as_str()),
        (Some("bob"), Some("TOTP is in")),
        "{r}"
    );
    assert!(answer["sent_at"].as_str().unwrap().ends_with('Z'), "{r}");
    assert_eq!(sc(&r)["subtasks"][1]["status"], "pending", "{r}");
    // Only the owner reads a plan.
    let r = c[2]
        .call_tool(json!(1), "plan_status", json!({"plan_id": plan_id}))
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    drop(hub);
}

/// Appends `item` to the list under `key`: read, write with if_version, retry on a conflict.
async fn append(c: &mut RawClient, key: &str, item: String) -> usize {
    let mut conflicts = 0;
    loop {
        let r = c
            .call_tool(json!("get"), "get_context", json!({"context_key": key}))
            .await;
        let (mut list, version) = if r["result"]["isError"] == true {
            (Vec::new(), 0)
        } else {
            (
                sc(&r)["value"].as_array().unwrap().clone(),
                sc(&r)["version"].as_u64().unwrap(),
            )
        };
        list.push(json!(item));
        let r = c
            .call_tool(
                json!("put"),
                "share_context",
                json!({"context_key": key, "context_value": list, "if_version": version}),
            )
            .await;
        if r["result"]["isError"] == false {
            return conflicts;
        }
        assert!(sc(&r)["current_version"].is_u64(), "{r}");
        conflicts += 1;
    }
}

#[tokio::test]
async fn shared_context_is_versioned_listed_and_loses_no_concurrent_append() {
    let (hub, mut c) = team().await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let token = hub.token(&format!("writer{w}"), "share,read");
        let mut client = RawClient::agent(hub.url(), Some(&token), &[]).await;
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..5 {
                conflicts += append(&mut client, "log", format!("w{w}-{i}")).await;
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let r = c[0]
        .call_tool(json!(1), "get_context", json!({"context_key": "log"}))
        .await;
    let mut items: Vec<String> = sc(&r)["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    items.sort();
    assert_eq!(
        items.len(),
        20,
        "lost appends ({conflicts} conflicts retried): {r}"
    );
    items.dedup();
    assert_eq!(items.len(), 20, "{r}");
    assert_eq!(sc(&r)["version"], 20, "{r}");
    println!("20 concurrent appends, {conflicts} conflicts retried");

    // list_context: sizes and versions, filtered by prefix; delete_context removes.
    let key = "team notes/2025 é";
    c[0].call_tool(
        json!(2),
        "share_context",
        json!({"context_key": key, "context_value": "hi"}),
    )
    .await;
    let r = c[0]
        .call_tool(json!(3), "list_context", json!({"prefix": "team "}))
        .await;
    let keys = sc(&r)["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{r}");
    assert_eq!(
        (keys[0]["size_bytes"].as_u64(), keys[0]["version"].as_u64()),
        (Some(4), Some(1)),
        "{r}"
    );
    assert_eq!(
        keys[0]["uri"], "aicp://context/team%20notes%2F2025%20%C3%A9",
        "{r}"
    );

    // Both the canonical (percent-encoded) URI and the key as typed resolve; a change is notified canonically.
    let canonical = "aicp://context/team%20notes%2F2025%20%C3%A9";
    for uri in [
        canonical,
        "aicp://context/team notes/2025 é",
        "aicp://context/team%20notes%2f2025%20%c3%a9",
    ] {
        let r = c[1]
            .request(json!("read"), "resources/read", json!({"uri": uri}))
            .await;
        assert_eq!(r["result"]["contents"][0]["text"], "\"hi\"", "{uri}: {r}");
    }
    let r = c[1]
        .request(
            json!("sub"),
            "resources/subscribe",
            json!({"uri": canonical}),
        )
        .await;
    assert!(r.get("result").is_some(), "{r}");
    // Another subscribes with the lower-case escapes a hand-written URI might have.
    let lower = "aicp://context/team%20notes%2f2025%20%c3%a9";
    let r = c[2]
        .request(json!("sub"), "resources/subscribe", json!({"uri": lower}))
        .await;
    assert!(r.get("result").is_some(), "{r}");
    c[0].call_tool(
        json!(4),
        "share_context",
        json!({"context_key": key, "context_value": "ho"}),
    )
    .await;
    // Each is told, in the spelling it subscribed with.
    for (who, uri) in [(1, canonical), (2, lower)] {
        let n = loop {
            let m = c[who].recv().await;
            if m["method"] == "notifications/resources/updated"
                && m["params"]["uri"] != "aicp://shared-state"
            {
                break m;
            }
        };
        assert_eq!(n["params"]["uri"], uri, "{n}");
    }

    let r = c[0]
        .call_tool(json!(5), "delete_context", json!({"context_key": key}))
        .await;
    assert_eq!(sc(&r)["deleted"], true, "{r}");
    let r = c[0]
        .call_tool(json!(6), "get_context", json!({"context_key": key}))
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
}

#[tokio::test]
async fn a_token_sees_only_its_tools_and_refusals_are_readable() {
    let hub = LocalHub::start(&[]).await;
    let mut reader = RawClient::agent(hub.url(), Some(&hub.token("reader", "read")), &[]).await;
    let r = reader.request(json!(1), "tools/list", json!({})).await;
    let mut names: Vec<&str> = r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["get_context", "list_agents", "list_context", "whoami"],
        "{r}"
    );
    let r = reader
        .call_tool(
            json!(2),
            "share_context",
            json!({"context_key": "k", "context_value": 1}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("`share`"), "{text}");

    let mut full = RawClient::agent(
        hub.url(),
        Some(&hub.token("bob", "share,read,message")),
        &[],
    )
    .await;
    let r = full.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(r["result"]["tools"].as_array().unwrap().len(), 11, "{r}");
    // A misspelt argument is refused, naming the accepted ones; nothing is stored.
    let r = full
        .call_tool(
            json!(2),
            "share_context",
            json!({"context_key": "k", "context_value": 1, "if_versoin": 0}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let why = sc(&r)["error"].as_str().unwrap();
    assert!(
        why.contains("if_versoin") && why.contains("context_key, context_value, if_version"),
        "{why}"
    );
    let r = full
        .call_tool(json!(3), "get_context", json!({"context_key": "k"}))
        .await;
    assert_eq!(r["result"]["isError"], true, "nothing was stored: {r}");
    // An unknown tool stays a protocol error, listing the tools there are.
    let r = full.call_tool(json!(4), "share_contxt", json!({})).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("share_context"),
        "{r}"
    );
    assert!(
        r["error"]["data"]["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("plan_status")),
        "{r}"
    );
}
