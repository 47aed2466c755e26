//! Everything relays, unchanged: a well-behaved hub, the built bridge, raw
//! JSON-RPC on its stdio.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Bridge, FakeHub, FakeHubOptions};

async fn setup() -> (FakeHub, Bridge) {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    let init = bridge.initialize("2025-06-18").await;
    assert_eq!(init["result"]["serverInfo"]["name"], "test-hub", "{init}");
    (hub, bridge)
}

#[tokio::test]
async fn initialize_reaches_the_hub_and_its_version_choice_reaches_the_host() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    for (asked, chosen) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let mut bridge = Bridge::serve(&hub.url(), &[]);
        let init = bridge.initialize(asked).await;
        assert_eq!(init["result"]["protocolVersion"], chosen, "{init}");
        assert_eq!(init["result"]["instructions"], "test hub");
    }
    // The hub saw the host's own initialize: clientInfo untouched.
    let seen = hub
        .wait_for(
            "initialize",
            |m| m["method"] == "initialize",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(seen["params"]["clientInfo"]["name"], "it-host");
    assert_eq!(seen["params"]["capabilities"]["sampling"], json!({}));
}

#[tokio::test]
async fn unknown_fields_and_ids_pass_through_unchanged() {
    let (hub, mut bridge) = setup().await;
    let list = bridge.request(7, "tools/list", json!({})).await;
    assert_eq!(
        list["result"]["x-extra"], 1,
        "extra result field kept: {list}"
    );
    let echo = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap();
    assert_eq!(
        echo["execution"],
        json!({"taskSupport": "optional"}),
        "unknown tool field kept"
    );

    // A custom method with unknown params comes back exactly as sent.
    let params =
        json!({"nested": {"a": [1, 2.5, "x"], "big": 12345678901234567u64}, "_meta": {"k": "v"}});
    let reply = bridge.request("custom-1", "x/echo", params.clone()).await;
    assert_eq!(reply["result"], params);

    // String, negative and large ids keep their type and value on the hub and back.
    for id in [json!("a-string-id"), json!(-5), json!(9007199254740993u64)] {
        let reply = bridge
            .call_tool(id.clone(), "echo", json!({"text": "x"}))
            .await;
        assert_eq!(reply["id"], id);
        hub.wait_for(
            "id on the hub",
            |m| m["id"] == id && m["method"] == "tools/call",
            Duration::from_secs(5),
        )
        .await;
    }
}

#[tokio::test]
async fn every_capability_relays() {
    let (hub, mut bridge) = setup().await;
    let r = bridge.call_tool(1, "echo", json!({"text": "hi"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "hi");
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"echo": {"text": "hi"}})
    );

    let r = bridge.call_tool(2, "fail", json!({})).await;
    assert_eq!(
        r["result"]["isError"], true,
        "tool errors stay results: {r}"
    );

    let r = bridge.request(3, "resources/list", json!({})).await;
    assert_eq!(r["result"]["resources"][0]["uri"], "aicp://shared-state");
    let r = bridge
        .request(4, "resources/templates/list", json!({}))
        .await;
    assert_eq!(
        r["result"]["resourceTemplates"][0]["uriTemplate"],
        "aicp://context/{key}"
    );
    let r = bridge
        .request(5, "resources/read", json!({"uri": "aicp://shared-state"}))
        .await;
    assert_eq!(r["result"]["contents"][0]["text"], "{\"k\":1}");
    let r = bridge
        .request(6, "resources/read", json!({"uri": "file:///nope"}))
        .await;
    assert_eq!(
        r["error"]["code"], -32002,
        "hub errors relay unchanged: {r}"
    );

    bridge.send(json!({"jsonrpc":"2.0","id":7,"method":"resources/subscribe","params":{"uri":"aicp://shared-state"}})).await;
    let reply = bridge.recv().await;
    assert_eq!(reply["id"], 7);
    let update = bridge.recv().await;
    assert_eq!(update["method"], "notifications/resources/updated");
    assert_eq!(update["params"]["uri"], "aicp://shared-state");
    let r = bridge
        .request(
            8,
            "resources/unsubscribe",
            json!({"uri": "aicp://shared-state"}),
        )
        .await;
    assert_eq!(r["result"], json!({}));

    let r = bridge.request(9, "prompts/list", json!({})).await;
    assert_eq!(r["result"]["prompts"][0]["name"], "analyze_task");
    let r = bridge
        .request(
            10,
            "prompts/get",
            json!({"name": "analyze_task", "arguments": {"task": "t"}}),
        )
        .await;
    assert_eq!(
        r["result"]["messages"][0]["content"],
        json!({"type": "text", "text": "Analyze: t"})
    );

    let r = bridge
        .request(11, "completion/complete", json!({"ref": {"type": "ref/prompt", "name": "analyze_task"}, "argument": {"name": "task", "value": "al"}}))
        .await;
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["alpha", "alpine"])
    );
    let r = bridge
        .request(12, "logging/setLevel", json!({"level": "debug"}))
        .await;
    assert_eq!(r["result"], json!({}));

    // Hub notifications reach the host in order, before the result.
    bridge.send(json!({"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"notify","arguments":{}}})).await;
    let (before, reply) = bridge.until_response(&json!(13)).await;
    let methods: Vec<&str> = before
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["notifications/message", "notifications/tools/list_changed"]
    );
    assert!(reply["result"].is_object());

    // Host notifications reach the hub.
    bridge
        .notify("notifications/roots/list_changed", json!({}))
        .await;
    hub.wait_for(
        "roots/list_changed",
        |m| m["method"] == "notifications/roots/list_changed",
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn stateless_era_discover_without_initialize() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(&hub.url(), &[]);
    let meta = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
    let r = bridge.request(1, "server/discover", meta.clone()).await;
    assert!(
        r["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{r}"
    );
    let mut params = json!({"name": "echo", "arguments": {"text": "stateless"}});
    params["_meta"] = meta["_meta"].clone();
    let r = bridge.request(2, "tools/call", params).await;
    assert_eq!(r["result"]["content"][0]["text"], "stateless");
    let seen = hub
        .wait_for("_meta kept", |m| m["id"] == 2, Duration::from_secs(5))
        .await;
    let sent = &seen["params"]["_meta"];
    assert_eq!(
        sent["io.modelcontextprotocol/protocolVersion"], "2026-07-28",
        "the host's _meta kept: {sent}"
    );
    assert_eq!(
        sent["aicp/aixp"]["hops"], 0,
        "the AIXP envelope added beside it: {sent}"
    );
}

#[tokio::test]
async fn progress_arrives_in_order_before_its_response() {
    let (_hub, mut bridge) = setup().await;
    for round in 0..20 {
        let id = json!(format!("p{round}"));
        let token = json!(format!("tok-{round}"));
        bridge
            .send(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"slow","arguments":{"ms":20,"steps":5,"round":round},"_meta":{"progressToken":token}}}))
            .await;
        let (before, reply) = bridge.until_response(&id).await;
        let progress: Vec<&Value> = before
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), 5, "round {round}: {before:?}");
        for (i, p) in progress.iter().enumerate() {
            assert_eq!(p["params"]["progressToken"], token, "the host's own token");
            // Integers stay integers.
            assert_eq!(p["params"]["progress"], json!(i as u64 + 1));
        }
        assert_eq!(reply["result"]["content"][0]["text"], "done");
    }
}

#[tokio::test]
async fn cancellation_reaches_the_hub_with_the_same_id() {
    let (hub, mut bridge) = setup().await;
    bridge.send(json!({"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"slow","arguments":{"ms":3000,"steps":3}}})).await;
    hub.wait_for("call arrived", |m| m["id"] == "c-1", Duration::from_secs(5))
        .await;
    bridge
        .notify(
            "notifications/cancelled",
            json!({"requestId": "c-1", "reason": "user"}),
        )
        .await;
    crate::support::eventually("hub recorded the cancel", Duration::from_secs(5), || {
        hub.cancelled().contains(&json!("c-1"))
    })
    .await;
    let r = bridge.call_tool(2, "echo", json!({"text": "next"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "next");
    // No reply for the cancelled request ever reaches the host.
    bridge.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn hub_requests_to_the_host_and_their_replies() {
    let (hub, mut bridge) = setup().await;
    bridge.send(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sample","arguments":{}}})).await;
    let req = bridge.recv().await;
    assert_eq!(req["method"], "sampling/createMessage", "{req}");
    let hub_id = req["id"].clone();
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": "hello hub"}, "model": "m"});
    bridge
        .send(json!({"jsonrpc":"2.0","id":hub_id,"result":answer}))
        .await;
    let (_, reply) = bridge.until_response(&json!(1)).await;
    assert!(
        reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hello hub"),
        "{reply}"
    );

    // An error reply from the host reaches the hub too.
    bridge.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"roots","arguments":{}}})).await;
    let req = bridge.recv().await;
    assert_eq!(req["method"], "roots/list");
    bridge.send(json!({"jsonrpc":"2.0","id":req["id"],"error":{"code":-32601,"message":"no roots here"}})).await;
    let (_, reply) = bridge.until_response(&json!(2)).await;
    assert_eq!(reply["result"]["isError"], true);
    hub.wait_for(
        "error reply on the hub",
        |m| m["error"]["message"] == "no roots here",
        Duration::from_secs(5),
    )
    .await;

    // A reply to a request the hub never made is not forwarded.
    bridge
        .send(json!({"jsonrpc":"2.0","id":"never-asked","result":{}}))
        .await;
    bridge.call_tool(3, "echo", json!({"text": "x"})).await;
    assert!(!hub.received().iter().any(|m| m["id"] == "never-asked"));
}

#[tokio::test]
async fn pipelined_calls_all_come_back_to_their_callers() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    // 64 at once is over the default max_in_flight (16) and per-tool rate (60/min);
    // this test is about the relay.
    let mut bridge = Bridge::serve(
        &hub.url(),
        &[
            "--limit",
            "max_in_flight=64",
            "--limit",
            "tool_calls_per_minute=100",
        ],
    );
    bridge.initialize("2025-06-18").await;
    for i in 0..64 {
        bridge.send(json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"echo","arguments":{"text":format!("m{i}")}}})).await;
    }
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 64 {
        let r = bridge.recv().await;
        let id = r["id"].as_u64().unwrap();
        assert_eq!(r["result"]["content"][0]["text"], format!("m{id}"));
        seen.insert(id, ());
    }
}

#[tokio::test]
async fn a_duplicate_id_in_flight_is_refused() {
    let (_hub, mut bridge) = setup().await;
    bridge.send(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"ms":300,"steps":1}}})).await;
    bridge.send(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"dup"}}})).await;
    let first = bridge.recv().await;
    assert_eq!(first["id"], 5);
    assert_eq!(first["error"]["code"], -32600, "{first}");
    assert!(
        first["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    let (_, done) = bridge.until_response(&json!(5)).await;
    assert_eq!(done["result"]["content"][0]["text"], "done");
}

#[tokio::test]
async fn capabilities_are_declared_in_initialize_meta_and_kept_on_reconnect() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut bridge = Bridge::serve(
        &hub.url(),
        &[
            "--capabilities",
            "rust, code-review",
            "--max-backoff",
            "0.2",
        ],
    );
    let init = bridge.initialize("2025-06-18").await;
    assert_eq!(init["id"], "init");
    let seen = hub
        .wait_for(
            "initialize",
            |m| m["method"] == "initialize",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        seen["params"]["_meta"]["aicp/agent"],
        json!({"capabilities": ["rust", "code-review"]})
    );
    assert_eq!(
        seen["params"]["clientInfo"]["name"], "it-host",
        "the rest of the params untouched"
    );
    hub.drop_connections();
    bridge.recv().await; // list_changed after the re-initialize
    let all: Vec<Value> = hub
        .received()
        .into_iter()
        .filter(|m| m["method"] == "initialize")
        .collect();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1]["params"]["_meta"]["aicp/agent"]["capabilities"][0],
        "rust"
    );
}
