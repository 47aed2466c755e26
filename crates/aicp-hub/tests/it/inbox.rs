//! The local hub's inbox and the limits around it, as a black box: the built
//! `aicp-hub` on 127.0.0.1:0 driven by raw WebSocket clients. The inbox
//! contract (marking read, peek, include_read, two sessions of one identity),
//! how large one answer may get, per-identity quotas, and which names a
//! message may be addressed to.

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
async fn a_naive_client_gets_each_message_once_and_can_still_find_it() {
    let (_hub, mut c) = hub_with(&[], &["alice", "bob"]).await;
    let send = |text: &str| json!({"to": "bob", "text": text});
    c[0].call_tool(json!(1), "send_message", send("one")).await;
    c[0].call_tool(json!(2), "send_message", send("two")).await;
    // A peek looks without marking.
    let r = c[1]
        .call_tool(json!(1), "read_inbox", json!({"peek": true}))
        .await;
    assert_eq!(texts(&r), ["one", "two"], "{r}");
    assert_eq!(structured(&r)["marked_read"], false, "{r}");
    // A client that never passes any acknowledgement: the first read returns them, marked read.
    let r = c[1].call_tool(json!(2), "read_inbox", json!({})).await;
    assert_eq!(texts(&r), ["one", "two"], "{r}");
    let sc = structured(&r);
    assert_eq!(
        (sc["marked_read"].as_bool(), sc["pending"].as_u64()),
        (Some(true), Some(0))
    );
    assert!(sc["messages"][0]["read_at"].is_string(), "{r}");
    assert!(sc["next"].as_str().unwrap().contains("marked read"), "{r}");
    // The second read does not return them again.
    let r = c[1].call_tool(json!(3), "read_inbox", json!({})).await;
    assert_eq!(texts(&r), Vec::<String>::new(), "{r}");
    // They are kept: include_read shows them, with when and by which session.
    let r = c[1]
        .call_tool(json!(4), "read_inbox", json!({"include_read": true}))
        .await;
    let earlier = &structured(&r)["read_earlier"];
    assert_eq!(earlier[0]["text"], "one", "{r}");
    assert!(
        earlier[0]["read_at"].as_str().unwrap().ends_with('Z'),
        "{r}"
    );
    assert!(
        earlier[0]["read_by"]
            .as_str()
            .unwrap()
            .starts_with("connection "),
        "{r}"
    );
    // The inbox resource is a peek too: it never marks.
    c[0].call_tool(json!(3), "send_message", send("three"))
        .await;
    for id in ["res1", "res2"] {
        let r = c[1]
            .request(
                json!(id),
                "resources/read",
                json!({"uri": "aicp://inbox/bob"}),
            )
            .await;
        let body: Value =
            serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["messages"][0]["text"], "three", "{r}");
    }
    let r = c[1].call_tool(json!(5), "read_inbox", json!({})).await;
    assert_eq!(texts(&r), ["three"], "{r}");
}

#[tokio::test]
async fn the_old_cursor_is_refused_by_name_and_a_long_wait_is_clamped_with_a_note() {
    let (_hub, mut c) = hub_with(&[], &["alice", "bob"]).await;
    c[0].call_tool(json!(1), "send_message", json!({"to": "bob", "text": "hi"}))
        .await;
    let r = c[1]
        .call_tool(json!(1), "read_inbox", json!({"since": 0}))
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let why = structured(&r)["error"].as_str().unwrap();
    assert!(
        why.contains("`since`")
            && why.contains("include_read, peek, wait_ms")
            && why.contains("nothing to acknowledge"),
        "{why}"
    );
    let r = c[1]
        .call_tool(json!(2), "read_inbox", json!({"wait_ms": 120_000}))
        .await;
    assert_eq!(texts(&r), ["hi"], "the refused call took nothing: {r}");
    let note = structured(&r)["note"].as_str().unwrap();
    assert!(note.contains("maximum of 30000"), "{note}");
}

#[tokio::test]
async fn two_sessions_of_one_identity_each_take_a_message_once_and_hear_of_the_rest() {
    let (hub, mut c) = hub_with(&[], &["alice"]).await;
    let bob = hub.token("bob", "share,read,message");
    let mut laptop = RawClient::agent(hub.url(), Some(&bob), &[]).await;
    let mut phone = RawClient::agent(hub.url(), Some(&bob), &[]).await;
    // 20 KB each: a page (256 KiB) holds about a dozen, so the reads below interleave.
    let total = 40;
    for i in 0..total {
        let r = c[0]
            .call_tool(
                json!(i),
                "send_message",
                json!({"to": "bob", "text": format!("m{i} {}", "x".repeat(20_000))}),
            )
            .await;
        assert_eq!(r["result"]["isError"], false, "{r}");
    }
    let name = |t: &str| t.split(' ').next().unwrap().to_owned();
    // Both read at once, pipelined, several times each: every message is new to exactly one.
    let mut new = [Vec::new(), Vec::new()];
    let mut told = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (k, s) in [&mut laptop, &mut phone].into_iter().enumerate() {
            s.send(
                json!(format!("r{round}-{k}")),
                "tools/call",
                json!({"name": "read_inbox", "arguments": {}}),
            )
            .await;
        }
        for (k, s) in [&mut laptop, &mut phone].into_iter().enumerate() {
            let r = s.recv().await;
            assert_eq!(r["id"], format!("r{round}-{k}"), "{r:.300}");
            new[k].extend(texts(&r).iter().map(|t| name(t)));
            for m in structured(&r)["read_by_other_sessions"].as_array().unwrap() {
                told[k].push(name(m["text"].as_str().unwrap()));
                assert!(m["read_by"].is_string(), "{m:.200}");
            }
        }
    }
    // A last look by each: whatever the other read since is reported now.
    for (k, s) in [&mut laptop, &mut phone].into_iter().enumerate() {
        let r = s.call_tool(json!("last"), "read_inbox", json!({})).await;
        assert_eq!(texts(&r), Vec::<String>::new(), "{r:.300}");
        for m in structured(&r)["read_by_other_sessions"].as_array().unwrap() {
            told[k].push(name(m["text"].as_str().unwrap()));
        }
    }
    let mut all: Vec<String> = new[0].iter().chain(&new[1]).cloned().collect();
    all.sort_by_key(|t| t[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..total).map(|i| format!("m{i}")).collect();
    assert_eq!(
        all, expected,
        "each message new to exactly one session, none lost"
    );
    assert!(
        !new[0].is_empty() && !new[1].is_empty(),
        "both sessions took some: {new:?}"
    );
    // Each session heard of exactly what the other took.
    for k in 0..2 {
        let mut heard = told[k].clone();
        heard.sort();
        let mut other = new[1 - k].clone();
        other.sort();
        assert_eq!(heard, other, "session {k}");
    }
    let r = laptop.call_tool(json!("who"), "whoami", json!({})).await;
    assert_eq!(structured(&r)["sessions"], 2, "{r}");
}

#[tokio::test]
async fn reading_releases_the_senders_unread_quota() {
    let (_hub, mut c) = hub_with(
        &["--max-pending-bytes-per-sender", "1000"],
        &["alice", "bob"],
    )
    .await;
    let text = "q".repeat(600);
    let send = json!({"to": "bob", "text": text});
    let r = c[0].call_tool(json!(1), "send_message", send.clone()).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let r = c[0].call_tool(json!(2), "send_message", send.clone()).await;
    assert_eq!(r["result"]["isError"], true, "alice is at her quota: {r}");
    // A peek releases nothing; a read does, though the message is kept.
    c[1].call_tool(json!(1), "read_inbox", json!({"peek": true}))
        .await;
    let r = c[0].call_tool(json!(3), "send_message", send.clone()).await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    c[1].call_tool(json!(2), "read_inbox", json!({})).await;
    let r = c[0].call_tool(json!(4), "send_message", send).await;
    assert_eq!(
        r["result"]["isError"], false,
        "bob read it: alice may send again: {r}"
    );
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
        assert_eq!(sc["recipient_online"], canonical == "bob", "{r}");
        if canonical == "carol" {
            let note = sc["note"].as_str().unwrap();
            assert!(
                note.contains("carol is offline") && note.contains("kept 7 days"),
                "{note}"
            );
        }
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
            json!({"task": "- x\n- y", "agents": ["BOB", "ghost"]}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    let r = c[0]
        .call_tool(
            json!("o2"),
            "orchestrate_collaboration",
            json!({"task": "- x\n- y", "agents": ["BOB"]}),
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

#[tokio::test]
async fn a_share_only_user_cannot_fill_the_store_for_everyone() {
    let (hub, mut c) = hub_with(
        &[
            "--max-store-bytes",
            "2097152",
            "--max-value-bytes",
            "60000",
            "--max-context-bytes-per-identity",
            "200000",
            "--max-pending-bytes-per-sender",
            "100000",
        ],
        &["alice", "bob", "carol"],
    )
    .await;
    let mut mallory = RawClient::agent(hub.url(), Some(&hub.token("mallory", "share")), &[]).await;
    let r = mallory
        .call_tool(
            json!("long"),
            "share_context",
            json!({"context_key": "k".repeat(257), "context_value": 1}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        structured(&r)["error"]
            .as_str()
            .unwrap()
            .contains("at most 256"),
        "{r}"
    );
    // Mallory writes until refused: her own quota stops her, long before the store is full.
    let value = "x".repeat(59_000);
    let mut written = 0;
    let refusal = loop {
        let r = mallory
            .call_tool(
                json!(written),
                "share_context",
                json!({"context_key": format!("junk-{written}"), "context_value": value}),
            )
            .await;
        if r["result"]["isError"] == true {
            break r;
        }
        written += 1;
        assert!(written < 40, "mallory was never stopped");
    };
    assert_eq!(written, 3, "{refusal}");
    let why = structured(&refusal)["error"].as_str().unwrap().to_owned();
    assert!(
        why.contains("at most 200000") && why.contains("mallory"),
        "{why}"
    );
    // Everyone else still shares and messages.
    let r = c[0]
        .call_tool(
            json!(1),
            "share_context",
            json!({"context_key": "plan", "context_value": value}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let r = c[0]
        .call_tool(
            json!(2),
            "send_message",
            json!({"to": "bob", "text": "still works"}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    // delete_context (scope share) frees mallory's quota; a token without `share` may not delete.
    let r = mallory
        .call_tool(
            json!("del"),
            "delete_context",
            json!({"context_key": "junk-0"}),
        )
        .await;
    assert_eq!(structured(&r)["deleted"], true, "{r}");
    let r = mallory
        .call_tool(
            json!("again"),
            "share_context",
            json!({"context_key": "junk-9", "context_value": value}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let mut reader = RawClient::agent(hub.url(), Some(&hub.token("reader", "read")), &[]).await;
    let r = reader
        .call_tool(json!(1), "delete_context", json!({"context_key": "plan"}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["scope"], "share", "{r}");
    // Pending message bytes are per sender: alice's flood stops at her quota, carol's mail still arrives.
    let text = "y".repeat(30_000);
    let mut sent = 0;
    let refusal = loop {
        let r = c[0]
            .call_tool(
                json!(format!("f{sent}")),
                "send_message",
                json!({"to": "bob", "text": text}),
            )
            .await;
        if r["result"]["isError"] == true {
            break r;
        }
        sent += 1;
        assert!(sent < 40, "alice was never stopped");
    };
    assert_eq!(sent, 3, "{refusal}");
    let why = structured(&refusal)["error"].as_str().unwrap();
    assert!(
        why.contains("at most 100000") && why.contains("alice"),
        "{why}"
    );
    let r = c[2]
        .call_tool(json!(1), "send_message", json!({"to": "bob", "text": text}))
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let (_, m) = hub.http_get("/metrics").await;
    assert!(
        m.contains(
            "aicp_hub_calls_total{method=\"tools/call\",tool=\"delete_context\",outcome=\"ok\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn one_answer_stays_bounded_however_large_the_inbox() {
    let (_hub, mut c) = hub_with(
        &[
            "--max-pending-bytes-per-sender",
            "100000000",
            "--max-message-bytes",
            "3000000",
        ],
        &["alice", "bob"],
    )
    .await;
    // 34 messages of 1 MB: carried twice in one answer they were over the bridge's 64 MiB limit.
    let big = "m".repeat(1_000_000);
    for i in 0..34 {
        let r = c[0]
            .call_tool(json!(i), "send_message", json!({"to": "bob", "text": big}))
            .await;
        assert_eq!(r["result"]["isError"], false, "{i}");
    }
    let mut read = 0;
    let mut largest = 0;
    loop {
        let r = c[1].call_tool(json!(read), "read_inbox", json!({})).await;
        let size = r.to_string().len();
        largest = largest.max(size);
        let sc = structured(&r);
        let n = sc["messages"].as_array().unwrap().len();
        assert_eq!(n, 1, "a page over 256 KiB holds one message");
        read += n;
        assert_eq!(sc["pending"].as_u64(), Some(34 - read as u64));
        if sc["more"] == false {
            break;
        }
    }
    assert_eq!(read, 34);
    println!("largest read_inbox answer for 1 MB messages: {largest} bytes");
    assert!(largest < 1_100_000, "{largest}");

    // One 1 MB orchestrate_collaboration of 32 subtasks stores about 1 MB, not 32 copies of the task.
    let task: String = (0..32)
        .map(|i| format!("{i}. part {i}: {}\n", "t".repeat(31_000)))
        .collect();
    let r = c[0]
        .call_tool(
            json!("plan"),
            "orchestrate_collaboration",
            json!({"task": task, "agents": ["bob"]}),
        )
        .await;
    assert_eq!(structured(&r)["status"], "delegated");
    let mut stored = 0;
    let mut count = 0;
    loop {
        let r = c[1].call_tool(json!("p"), "read_inbox", json!({})).await;
        let sc = structured(&r);
        for m in sc["messages"].as_array().unwrap() {
            stored += m["text"].as_str().unwrap().len();
            count += 1;
        }
        if sc["more"] == false {
            break;
        }
    }
    println!(
        "a {} byte task in 32 subtasks stored {stored} bytes of messages",
        task.len()
    );
    assert_eq!(count, 32);
    // Each subtask message adds its reply instructions (about 500 bytes), not the task.
    assert!(stored < task.len() + 32 * 700, "{stored}");
    // The per-plan byte bound (MAX_PLAN_BYTES) is the unit test's
    // (tools::plans): each subtask is stored once now, so a task within this
    // hub's 3 MB message limit cannot reach 4 MiB of subtasks.
}
