//! Waiting for a colleague is not a loop: through `aicp-bridge serve` with its
//! default limits, a host may ask the hub the same read-only question (its
//! inbox, who is online) as often as the rates allow, while a genuine loop of
//! writes is still refused, and a hub cannot lift the rates by calling a
//! write a read. The waiting test runs three minutes of wall time, as a user
//! would wait; run it with `--nocapture` to read the transcript.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::local_hub::LocalHub;
use crate::support::{Bridge, FakeHub, FakeHubOptions};

/// How long the host polls, and when the colleague appears and answers.
const POLL_FOR: Duration = Duration::from_secs(180);
const ANSWER_AT: Duration = Duration::from_secs(120);

/// A bridge for `who` against the local hub, initialized, its tools listed
/// (as every host does first: that is where the bridge learns which are reads).
async fn user(hub: &LocalHub, who: &str) -> Bridge {
    let token = hub.token(who, "share,read,message");
    let mut bridge = Bridge::serve_env(hub.url(), &[], &[("AICP_TOKEN", &token)]);
    bridge.initialize_as("2025-11-25", who).await;
    let tools = bridge.request("tools", "tools/list", json!({})).await;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    bridge
}

fn refused(r: &Value) -> bool {
    r["result"]["_meta"].get("aicp/guard").is_some() || r.get("error").is_some()
}

/// Calls `tool` with the same arguments once a second for the whole of
/// `POLL_FOR`, as a host left waiting would; returns when `until` first held,
/// how many calls were made, and every refusal.
async fn poll(
    bridge: &mut Bridge,
    who: &str,
    tool: &str,
    started: Instant,
    mut until: impl FnMut(&Value) -> bool,
) -> (Option<Duration>, u64, Vec<Value>) {
    let mut refusals = Vec::new();
    let mut got = None;
    let mut n = 0u64;
    while started.elapsed() < POLL_FOR {
        n += 1;
        let r = bridge.call_tool(n, tool, json!({})).await;
        let at = started.elapsed().as_secs_f64();
        if refused(&r) {
            println!("{at:>6.1} s  {who}: {tool} #{n} REFUSED: {r}");
            refusals.push(r);
        } else if got.is_none() && until(&r) {
            println!(
                "{at:>6.1} s  {who}: {tool} #{n} has it: {}",
                r["result"]["structuredContent"]
            );
            got = Some(started.elapsed());
        } else if n % 30 == 1 {
            let seen = if got.is_some() {
                "still there"
            } else {
                "nothing yet"
            };
            println!("{at:>6.1} s  {who}: {tool} #{n}: {seen}");
        }
        let next = started + Duration::from_secs(n);
        tokio::time::sleep_until(next.into()).await;
    }
    println!(
        "{:>6.1} s  {who}: {n} calls to {tool}, {} refused",
        started.elapsed().as_secs_f64(),
        refusals.len()
    );
    (got, n, refusals)
}

#[tokio::test]
async fn waiting_for_a_colleague_is_not_a_loop() {
    let hub = LocalHub::start(&[]).await;
    // Bob must be known to the hub for alice's request to reach him: he was here before.
    drop(user(&hub, "bob").await);
    let mut alice = user(&hub, "alice").await;
    let mut carol = user(&hub, "carol").await;
    let r = alice
        .call_tool(
            "ask",
            "send_message",
            json!({"to": "bob", "text": "Could you review the release plan?"}),
        )
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["status"], "delivered",
        "{r}"
    );
    let started = Instant::now();
    println!(
        "   0.0 s  alice: sent bob a review request; alice polls read_inbox, carol polls list_agents, once a second"
    );

    let colleague = async {
        tokio::time::sleep(ANSWER_AT).await;
        let mut bob = user(&hub, "bob").await;
        let inbox = bob.call_tool(1, "read_inbox", json!({})).await;
        let request = &inbox["result"]["structuredContent"]["messages"][0];
        let r = bob
            .call_tool(
                2,
                "send_message",
                json!({"to": "alice", "text": "Reviewed: ship it.", "reply_to": request["id"]}),
            )
            .await;
        println!(
            "{:>6.1} s  bob: came online, read the request, answered: {}",
            started.elapsed().as_secs_f64(),
            r["result"]["structuredContent"]["status"]
        );
        bob
    };
    let alice_waits = poll(&mut alice, "alice", "read_inbox", started, |r| {
        r["result"]["structuredContent"]["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["text"] == "Reviewed: ship it."))
    });
    let carol_waits = poll(&mut carol, "carol", "list_agents", started, |r| {
        r["result"]["structuredContent"]["agents"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|a| a["identity"] == "bob" && a["status"] == "online")
            })
    });
    let (_bob, (alice_got, alice_calls, alice_refused), (carol_got, carol_calls, carol_refused)) =
        tokio::join!(colleague, alice_waits, carol_waits);
    // Once a second for three minutes: about 180 calls each, none refused.
    assert!(
        alice_calls >= 170 && carol_calls >= 170,
        "{alice_calls} / {carol_calls} calls"
    );

    assert!(
        alice_refused.is_empty(),
        "alice's polls were refused: {alice_refused:?}"
    );
    assert!(
        carol_refused.is_empty(),
        "carol's polls were refused: {carol_refused:?}"
    );
    let alice_got = alice_got.expect("alice received bob's answer");
    let carol_got = carol_got.expect("carol saw bob come online");
    assert!(alice_got >= ANSWER_AT && carol_got >= ANSWER_AT);
}

#[tokio::test]
async fn the_same_message_sent_again_and_again_is_still_a_loop() {
    let hub = LocalHub::start(&[]).await;
    drop(user(&hub, "bob").await);
    let mut alice = user(&hub, "alice").await;
    let args = json!({"to": "bob", "text": "Please pass this on"});
    for i in 1..=5 {
        let r = alice.call_tool(i, "send_message", args.clone()).await;
        assert!(!refused(&r), "send {i} passes: {r}");
    }
    let r = alice.call_tool(6, "send_message", args.clone()).await;
    let detail = &r["result"]["_meta"]["aicp/guard"];
    assert_eq!(detail["limit"], "repeat_limit", "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("will not give a different result"), "{text}");
    let r = alice.call_tool(7, "send_message", args).await;
    assert_eq!(
        r["result"]["_meta"]["aicp/guard"]["limit"], "repeat_limit",
        "{r}"
    );
}

#[tokio::test]
async fn a_write_that_claims_to_be_read_only_still_meets_the_rates() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    bridge.initialize("2025-11-25").await;
    bridge.request("tools", "tools/list", json!({})).await;
    // `stamp` is annotated readOnlyHint: true. Repeats pass (no repeat_limit at 6)...
    for i in 1..=90 {
        let r = bridge.call_tool(i, "stamp", json!({})).await;
        assert!(!refused(&r), "stamp {i} passes: {r}");
    }
    // ...but the per-tool rate (90 a minute by default) still stops the 91st.
    let r = bridge.call_tool(91, "stamp", json!({})).await;
    assert_eq!(
        r["result"]["_meta"]["aicp/guard"]["limit"], "tool_calls_per_minute",
        "{r}"
    );
}
