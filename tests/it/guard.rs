//! The loop guard end to end: the built bridge, a test hub, scripted hosts.
//! What a refused call looks like to the model is printed (run with
//! `--nocapture` to read it).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Bridge, FakeHub, FakeHubOptions};

fn refusal_of(reply: &Value) -> &Value {
    assert_eq!(
        reply["result"]["isError"], true,
        "a refusal is a tool result with isError: {reply}"
    );
    &reply["result"]["_meta"]["aicp/guard"]
}

fn calls_to(hub: &FakeHub, tool: &str) -> usize {
    hub.received()
        .iter()
        .filter(|m| m["method"] == "tools/call" && m["params"]["name"] == tool)
        .count()
}

#[tokio::test]
async fn a_repeated_call_is_refused_and_the_model_reads_why() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-06-18").await;
    let args = json!({"text": "same thing again"});
    for i in 1..=5 {
        let r = bridge.call_tool(i, "echo", args.clone()).await;
        assert_eq!(
            r["result"]["content"][0]["text"], "same thing again",
            "call {i} passes"
        );
    }
    let r = bridge.call_tool(6, "echo", args.clone()).await;
    println!(
        "what the model reads on the 6th identical call:\n{}",
        serde_json::to_string_pretty(&r["result"]).unwrap()
    );
    let detail = refusal_of(&r);
    assert_eq!(detail["aixpStatus"], 5005);
    assert_eq!(detail["limit"], "repeat_limit");
    assert_eq!(detail["limitValue"], 5.0);
    assert_eq!(detail["current"], 6.0);
    assert!(detail["resetsInMs"].as_u64().unwrap() > 50_000, "{detail}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("6 times") && text.contains("change the arguments"),
        "{text}"
    );
    assert_eq!(
        calls_to(&hub, "echo"),
        5,
        "the refused call never reached the hub"
    );
    // Key order does not make it a different call; other values do.
    let r = bridge
        .call_tool(7, "echo", json!({"text": "same thing again"}))
        .await;
    assert_eq!(refusal_of(&r)["limit"], "repeat_limit");
    let r = bridge
        .call_tool(8, "echo", json!({"text": "something else"}))
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "something else");
}

#[tokio::test]
async fn every_call_carries_an_envelope_and_a_carried_one_continues() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-06-18").await;
    bridge.call_tool(1, "echo", json!({"text": "a"})).await;
    let seen = hub
        .wait_for("call", |m| m["id"] == 1, Duration::from_secs(5))
        .await;
    let env = &seen["params"]["_meta"]["aicp/aixp"];
    assert_eq!(env["version"], "aixp/1");
    assert_eq!(env["hops"], 0);
    let origin = env["origin"].as_str().unwrap();
    assert!(origin.starts_with("aicp-bridge-"), "{env}");
    assert!(env["id"].as_str().unwrap().starts_with(origin));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let expires = env["expiresAt"].as_u64().unwrap();
    assert!(
        expires > now_ms + 290_000 && expires <= now_ms + 300_000,
        "five minutes by default: {env}"
    );

    // An agent relaying for another: its envelope continues (one more hop, same origin, its expiry).
    let carried = json!({"version": "aixp/1", "id": "up-7", "hops": 2, "origin": "far-away", "expiresAt": now_ms + 60_000});
    let params =
        json!({"name": "echo", "arguments": {"text": "b"}, "_meta": {"aicp/aixp": carried}});
    bridge.request(2, "tools/call", params).await;
    let seen = hub
        .wait_for("call", |m| m["id"] == 2, Duration::from_secs(5))
        .await;
    let env = &seen["params"]["_meta"]["aicp/aixp"];
    assert_eq!(
        (env["hops"].as_u64(), env["origin"].as_str()),
        (Some(3), Some("far-away"))
    );
    assert_eq!(env["expiresAt"], now_ms + 60_000);
}

/// Work passed round a ring of assistants: the first sends the second a
/// message; then each in turn reads its inbox and sends what it got on to the
/// next in the ring, naming the message it answers (`reply_to`), until a
/// bridge refuses. With two players the next is whoever wrote: a conversation.
/// With three, each message goes to someone new: a chain of handoffs. Returns
/// the number of the refused reply (1 = the first answer) and the refusal.
/// `wait`: read with the local hub's long poll (it marks what it returns as
/// read) instead of the test hub's draining read.
async fn pass_around(players: &mut [Bridge], names: &[&str], wait: bool) -> (usize, Value) {
    let n = players.len();
    let r = players[0]
        .call_tool(
            "start",
            "send_message",
            json!({"to": names[1], "text": "please review the release plan"}),
        )
        .await;
    assert_ne!(r["result"]["isError"], true, "{r}");
    let mut reply = 0usize;
    loop {
        reply += 1;
        let me = reply % n;
        let next = names[(me + 1) % n];
        let args = if wait {
            json!({"wait_ms": 5000})
        } else {
            json!({})
        };
        let inbox = players[me]
            .call_tool(format!("read-{reply}"), "read_inbox", args)
            .await;
        let sc = &inbox["result"]["structuredContent"];
        let messages = sc["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{inbox}"));
        assert_eq!(messages.len(), 1, "{} has one message: {inbox}", names[me]);
        let m = &messages[0];
        println!(
            "{} got {} (hops {}, turns {})",
            names[me], m["id"], m["aixp"]["hops"], m["aixp"]["turns"]
        );
        let sent = players[me]
            .call_tool(
                format!("send-{reply}"),
                "send_message",
                json!({"to": next, "text": format!("point #{reply}: the changelog misses item {reply}"), "reply_to": m["id"]}),
            )
            .await;
        if sent["result"]["isError"] == true {
            return (reply, sent);
        }
        assert!(reply < 12, "the loop was never stopped");
    }
}

/// One bridge per name on the test hub, each initialized as that agent.
async fn players_on(hub: &FakeHub, names: &[&str], limits: &[&str]) -> Vec<Bridge> {
    let mut players = Vec::new();
    for name in names {
        let mut p = Bridge::serve(&hub.url(), limits);
        p.initialize_as("2025-06-18", name).await;
        players.push(p);
    }
    players
}

/// Three assistants that keep handing a task on: stopped at max_hops.
#[tokio::test]
async fn three_bridges_handing_work_round_stop_at_max_hops() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let names = ["alice", "bob", "carol"];
    let mut players = players_on(&hub, &names, &["--limit", "max_hops=4"]).await;
    let (reply, refused) = pass_around(&mut players, &names, false).await;
    let detail = refusal_of(&refused);
    println!(
        "refused reply {reply}: {}",
        refused["result"]["content"][0]["text"]
    );
    assert_eq!(detail["limit"], "max_hops");
    assert_eq!(detail["limitValue"], 4.0);
    assert_eq!(detail["current"], 5.0, "the fifth handoff is one over");
    assert_eq!(
        reply, 5,
        "messages with hops 1..=4 were passed on; passing on hops 5 was refused"
    );
}

/// Two assistants answering each other through a hub that counts every reply
/// as a hop (it knows nothing of turns): the bridge counts the hops past
/// max_hops as turns, so the conversation still ends.
#[tokio::test]
async fn a_hub_that_does_not_count_turns_cannot_keep_a_conversation_going() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let names = ["alice", "bob"];
    let limits = ["--limit", "max_hops=2", "--limit", "max_turns=3"];
    let mut players = players_on(&hub, &names, &limits).await;
    let (reply, refused) = pass_around(&mut players, &names, false).await;
    let detail = refusal_of(&refused);
    assert_eq!(detail["limit"], "max_turns", "{refused}");
    assert_eq!(
        (reply, detail["current"].as_u64()),
        (5, Some(4)),
        "messages at hops 3, 4, 5 count as turns 1..=3; answering the third would be turn 4"
    );
}

#[tokio::test]
async fn expired_deliveries_are_dropped_before_the_model_sees_them() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut alice = Bridge::serve(&hub.url(), &[]);
    let mut bob = Bridge::serve(&hub.url(), &[]);
    alice.initialize_as("2025-06-18", "alice").await;
    bob.initialize_as("2025-06-18", "bob").await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Alice relays a message that expires in 300 ms, and one that lives.
    let short = json!({"version": "aixp/1", "id": "x", "hops": 0, "origin": "o", "expiresAt": now_ms + 300});
    let params = json!({"name": "send_message", "arguments": {"to": "bob", "text": "stale soon"}, "_meta": {"aicp/aixp": short}});
    alice.request(1, "tools/call", params).await;
    alice
        .call_tool(2, "send_message", json!({"to": "bob", "text": "fresh"}))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let inbox = bob.call_tool(1, "read_inbox", json!({})).await;
    let messages = inbox["result"]["structuredContent"]["messages"]
        .as_array()
        .unwrap();
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["fresh"], "{inbox}");
    let block: Value =
        serde_json::from_str(inbox["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        block["messages"].as_array().unwrap().len(),
        1,
        "the text block agrees"
    );
    assert!(bob.stderr().contains("dropped expired messages"));
}

#[tokio::test]
async fn a_call_queued_during_an_outage_expires_unsent() {
    // A hub that accepts TCP but never answers the upgrade: the bridge stays
    // in its connection attempt, queueing calls, for the whole connect timeout.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/mcp", blackhole.local_addr().unwrap());
    let mut bridge = Bridge::serve(
        &url,
        &["--connect-timeout", "20", "--limit", "call_ttl=0.5"],
    );
    let started = std::time::Instant::now();
    let r = bridge.call_tool(1, "echo", json!({"text": "late"})).await;
    let waited = started.elapsed();
    let detail = refusal_of(&r);
    assert_eq!(detail["limit"], "call_ttl");
    assert_eq!(detail["aixpStatus"], 5005);
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("was not run")
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    drop(blackhole);
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_hub_failures_and_recovers() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(
        &hub.url(),
        &[
            "--limit",
            "breaker_failures=3",
            "--limit",
            "breaker_cooldown=0.5",
        ],
    );
    bridge.initialize("2025-06-18").await;
    for i in 0..3 {
        let r = bridge.call_tool(i, "crash", json!({"n": i})).await;
        assert_eq!(r["error"]["code"], -32603, "{r}");
    }
    let r = bridge.call_tool(10, "echo", json!({"text": "x"})).await;
    let detail = refusal_of(&r);
    assert_eq!(detail["limit"], "breaker_failures");
    assert_eq!(detail["aixpStatus"], 5003);
    assert_eq!(
        calls_to(&hub, "echo"),
        0,
        "failing fast: the hub never saw it"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = bridge.call_tool(11, "echo", json!({"text": "probe"})).await;
    assert_eq!(
        r["result"]["content"][0]["text"], "probe",
        "half-open: one probe passes"
    );
    let r = bridge
        .call_tool(12, "echo", json!({"text": "closed"}))
        .await;
    assert_eq!(
        r["result"]["content"][0]["text"], "closed",
        "the probe succeeded: closed again"
    );
}

#[tokio::test]
async fn a_flood_of_list_requests_reaches_the_hub_once() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-06-18").await;
    for i in 0..200 {
        bridge
            .send(json!({"jsonrpc": "2.0", "id": i, "method": "tools/list"}))
            .await;
    }
    for _ in 0..200 {
        let r = bridge.recv().await;
        assert!(
            r["result"]["tools"]
                .as_array()
                .is_some_and(|t| !t.is_empty()),
            "{r}"
        );
    }
    let lists = |hub: &FakeHub| {
        hub.received()
            .iter()
            .filter(|m| m["method"] == "tools/list")
            .count()
    };
    assert_eq!(
        lists(&hub),
        1,
        "200 identical requests, one reached the hub"
    );
    // The hub says the list changed: the next request goes through.
    bridge.call_tool("n", "notify", json!({})).await;
    let r = bridge.request("after", "tools/list", json!({})).await;
    assert!(r["result"]["tools"].is_array());
    assert_eq!(lists(&hub), 2);
}

#[tokio::test]
async fn a_bad_limit_is_refused_at_startup_naming_the_keys() {
    let (mut cmd, _home) = crate::support::bridge::command(&[
        "serve",
        "--hub",
        "ws://127.0.0.1:1",
        "--limit",
        "max_hopz=3",
    ]);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown limit") && err.contains("max_hops"),
        "{err}"
    );
}

/// Through the real local hub (`aicp-bridge hub`), users with their own
/// tokens, each behind a bridge with the default limits but one: two who
/// answer each other are a conversation, ended at max_turns however low
/// max_hops is; three who pass the work on are handoffs, ended at max_hops.
#[tokio::test]
async fn through_the_local_hub_conversations_end_at_max_turns_and_handoffs_at_max_hops() {
    let hub = crate::support::local_hub::LocalHub::start(&[]).await;
    let start = |names: &[&str], limits: &[&str]| -> Vec<Bridge> {
        names
            .iter()
            .map(|n| {
                let token = hub.token(n, "share,read,message");
                Bridge::serve_env(hub.url(), limits, &[("AICP_TOKEN", &token)])
            })
            .collect()
    };
    let pair = ["alice", "bob"];
    let mut players = start(&pair, &["--limit", "max_turns=4", "--limit", "max_hops=1"]);
    for p in &mut players {
        p.initialize("2025-11-25").await;
    }
    let (reply, refused) = pass_around(&mut players, &pair, true).await;
    let detail = refusal_of(&refused);
    println!(
        "refused reply {reply}: {}",
        refused["result"]["content"][0]["text"]
    );
    assert_eq!(
        (detail["limit"].as_str(), detail["current"].as_u64()),
        (Some("max_turns"), Some(5))
    );
    assert_eq!(reply, 5, "four answers passed; the fifth is over max_turns");

    let ring = ["carol", "dave", "erin"];
    let mut players = start(&ring, &["--limit", "max_hops=3"]);
    for p in &mut players {
        p.initialize("2025-11-25").await;
    }
    let (reply, refused) = pass_around(&mut players, &ring, true).await;
    let detail = refusal_of(&refused);
    assert_eq!(
        (detail["limit"].as_str(), detail["current"].as_u64()),
        (Some("max_hops"), Some(4))
    );
    assert_eq!(
        reply, 4,
        "passing on hops 1..=3 went through; passing on hops 4 was refused by the bridge"
    );
}
