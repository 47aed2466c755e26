//! Self-tests of the test hub, driven by a plain tokio-tungstenite client:
//! the quirk tests of the bridge mean something only if the quirky hub really
//! misbehaves the way real hubs do.

use std::sync::Arc;
use std::time::Duration;

use crate::support::fake_hub::{FakeHub, FakeHubOptions, test_tls};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(5);

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to test hub");
        Client { ws }
    }

    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    async fn request(&mut self, id: i64, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
    }

    /// The next text frame as JSON; other frames are skipped.
    async fn recv(&mut self) -> Value {
        loop {
            let frame = timeout(WAIT, self.ws.next())
                .await
                .expect("hub answered in time");
            match frame.expect("connection open").expect("frame") {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("hub sends JSON");
                }
                Message::Close(frame) => panic!("hub closed the connection: {frame:?}"),
                _ => {}
            }
        }
    }

    async fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.request(id, method, params).await;
        let answer = self.recv().await;
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    /// Reads until the hub closes; returns the close code, or None if the socket just ended.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            match timeout(WAIT, self.ws.next())
                .await
                .expect("hub closed in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

#[tokio::test]
async fn initialize_lists_tools_and_echoes() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;

    let init = client
        .call(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}}),
        )
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "test-hub");
    assert_eq!(
        init["result"]["capabilities"]["resources"]["subscribe"],
        true
    );
    let init = client
        .call(2, "initialize", json!({"protocolVersion": "1999-01-01"}))
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let list = client.call(3, "tools/list", json!({})).await;
    assert_eq!(list["result"]["x-extra"], 1);
    let echo = &list["result"]["tools"][0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["execution"]["taskSupport"], "optional");

    let answer = client
        .call(4, "tools/call", tool_call("echo", json!({"text": "hi"})))
        .await;
    assert_eq!(answer["result"]["content"][0]["text"], "hi");
    assert_eq!(answer["result"]["structuredContent"]["echo"]["text"], "hi");

    assert_eq!(client.call(5, "ping", json!({})).await["result"], json!({}));
    assert_eq!(
        client.call(6, "x/echo", json!({"a": [1]})).await["result"],
        json!({"a": [1]})
    );
    let missing = client.call(7, "nope", json!({})).await;
    assert_eq!(missing["error"]["code"], -32601);
    let read = client
        .call(8, "resources/read", json!({"uri": "file:///etc"}))
        .await;
    assert_eq!(read["error"]["code"], -32002);

    hub.wait_for("the echo call", |v| v["params"]["name"] == "echo", WAIT)
        .await;
    assert_eq!(hub.connections(), 1);
}

#[tokio::test]
async fn slow_sends_progress_before_its_response() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    let params = json!({"name": "slow", "arguments": {"ms": 80, "steps": 4}, "_meta": {"progressToken": "p"}});
    client.request(1, "tools/call", params).await;
    for step in 1..=4 {
        let progress = client.recv().await;
        assert_eq!(progress["method"], "notifications/progress", "{progress}");
        assert_eq!(progress["params"]["progress"], step);
        assert_eq!(progress["params"]["total"], 4);
        assert_eq!(progress["params"]["progressToken"], "p");
    }
    assert_eq!(client.recv().await["result"]["content"][0]["text"], "done");
}

#[tokio::test]
async fn cancelled_slow_call_stops_and_is_recorded() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    let params = json!({"name": "slow", "arguments": {"ms": 2000, "steps": 4}, "_meta": {"progressToken": 7}});
    client.request(1, "tools/call", params).await;
    assert_eq!(client.recv().await["params"]["progress"], 1);
    client.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})).await;
    client.request(2, "ping", json!({})).await;
    assert_eq!(client.recv().await["id"], 2);
    // Nothing more from the cancelled call, not even progress.
    assert!(
        timeout(Duration::from_millis(1200), client.recv())
            .await
            .is_err()
    );
    assert_eq!(hub.cancelled(), vec![json!(1)]);
}

#[tokio::test]
async fn requests_overlap_unless_quirky() {
    for quirky in [false, true] {
        let hub = FakeHub::start(FakeHubOptions {
            quirky,
            ..FakeHubOptions::default()
        })
        .await;
        let mut client = Client::connect(&hub.url()).await;
        client
            .request(1, "tools/call", tool_call("slow", json!({"ms": 300})))
            .await;
        client
            .request(2, "tools/call", tool_call("echo", json!({"text": "fast"})))
            .await;
        let first = client.recv().await;
        let expected_first = if quirky { 1 } else { 2 };
        assert_eq!(first["id"], expected_first, "quirky={quirky}: {first}");
    }
}

#[tokio::test]
async fn sample_routes_the_client_answer_back() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    client
        .request(1, "tools/call", tool_call("sample", json!({})))
        .await;
    let ask = client.recv().await;
    assert_eq!(ask["method"], "sampling/createMessage");
    assert!(
        ask["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("hub-s-")),
        "{ask}"
    );
    client.send(json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "content": {"type": "text", "text": "hi"}}})).await;
    let answer = client.recv().await;
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .expect("text result");
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap()["content"]["text"],
        "hi"
    );

    client
        .request(2, "tools/call", tool_call("roots", json!({})))
        .await;
    let ask = client.recv().await;
    assert_eq!(ask["method"], "roots/list");
    client.send(json!({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -1, "message": "no roots"}})).await;
    let answer = client.recv().await;
    assert_eq!(answer["result"]["isError"], true);
    assert_eq!(answer["result"]["content"][0]["text"], "no roots");
}

#[tokio::test]
async fn notifications_come_in_order() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    client
        .request(1, "tools/call", tool_call("notify", json!({})))
        .await;
    assert_eq!(client.recv().await["method"], "notifications/message");
    assert_eq!(
        client.recv().await["method"],
        "notifications/tools/list_changed"
    );
    assert_eq!(client.recv().await["id"], 1);

    client
        .request(
            2,
            "resources/subscribe",
            json!({"uri": "aicp://shared-state"}),
        )
        .await;
    assert_eq!(client.recv().await["id"], 2);
    let updated = client.recv().await;
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "aicp://shared-state");
}

#[tokio::test]
async fn malformed_input_gets_errors_and_the_connection_stays() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    client.ws.send(Message::text("{not json")).await.unwrap();
    let parse = client.recv().await;
    assert_eq!(
        (parse["id"].clone(), parse["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    client
        .send(json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]))
        .await;
    assert_eq!(client.recv().await["error"]["code"], -32600);
    client
        .ws
        .send(Message::binary(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(client.recv().await["error"]["code"], -32600);
    assert_eq!(client.call(2, "ping", json!({})).await["result"], json!({}));
    assert_eq!(hub.received()[0], json!("{not json"));
}

#[tokio::test]
async fn quirky_deviations() {
    let hub = FakeHub::start(FakeHubOptions {
        quirky: true,
        ..FakeHubOptions::default()
    })
    .await;
    let mut client = Client::connect(&hub.url()).await;
    let init = client
        .call(1, "initialize", json!({"protocolVersion": "2025-11-25"}))
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(
        client.call(2, "ping", json!({})).await["error"]["code"],
        -32601
    );
    assert_eq!(
        client
            .call(3, "logging/setLevel", json!({"level": "info"}))
            .await["error"]["code"],
        -32601
    );
    assert_eq!(
        client.call(4, "server/discover", json!({})).await["error"]["code"],
        -32601
    );

    client
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let error = client.recv().await;
    assert!(error.get("id").is_none(), "{error}");
    assert_eq!(error["error"]["code"], -32601);

    let prompt = client
        .call(
            5,
            "prompts/get",
            json!({"name": "analyze_task", "arguments": {"task": "x"}}),
        )
        .await;
    assert_eq!(prompt["result"]["messages"][0]["content"], "Analyze: x");
}

#[tokio::test]
async fn quirky_closes_on_malformed_and_oversized_frames() {
    let hub = FakeHub::start(FakeHubOptions {
        quirky: true,
        ..FakeHubOptions::default()
    })
    .await;
    let mut client = Client::connect(&hub.url()).await;
    client.ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(client.closed().await, Some(1011));

    let mut client = Client::connect(&hub.url()).await;
    client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(client.closed().await, Some(1011));

    let mut client = Client::connect(&hub.url()).await;
    let text = "x".repeat(1_048_577);
    client
        .send(json!({"jsonrpc": "2.0", "id": 1, "method": "x/echo", "params": {"text": text}}))
        .await;
    assert_eq!(client.closed().await, Some(1009));
}

#[tokio::test]
async fn normal_hub_closes_1009_over_16_mib() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    client
        .ws
        .send(Message::text("x".repeat((16 << 20) + 1)))
        .await
        .unwrap();
    assert_eq!(client.closed().await, Some(1009));
    // Just under the limit is fine.
    let mut client = Client::connect(&hub.url()).await;
    let text = "x".repeat((16 << 20) - 100);
    let echoed = client.call(1, "x/echo", json!({"t": text})).await;
    assert_eq!(
        echoed["result"]["t"].as_str().map(str::len),
        Some((16 << 20) - 100)
    );
}

#[tokio::test]
async fn subprotocol_is_answered_unless_quirky() {
    for quirky in [false, true] {
        let hub = FakeHub::start(FakeHubOptions {
            quirky,
            ..FakeHubOptions::default()
        })
        .await;
        let mut request = hub.url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
        let connected = tokio_tungstenite::connect_async(request).await;
        // tungstenite's client rejects a server that ignores the offered subprotocol.
        assert_eq!(connected.is_ok(), !quirky, "quirky={quirky}");
        assert_eq!(
            hub.upgrade_headers()[0]
                .iter()
                .find(|(k, _)| k == "sec-websocket-protocol")
                .unwrap()
                .1,
            "mcp"
        );
    }
}

#[tokio::test]
async fn token_is_required() {
    let opts = FakeHubOptions {
        require_token: Some("s3cret".into()),
        ..FakeHubOptions::default()
    };
    let hub = FakeHub::start(opts).await;
    match tokio_tungstenite::connect_async(hub.url()).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    let mut request = hub.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer s3cret"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("right token accepted");
    ws.send(Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
        .await
        .unwrap();
    hub.wait_for("ping", |v| v["method"] == "ping", WAIT).await;
    assert_eq!(hub.connections(), 1);
    let headers = hub.upgrade_headers();
    assert_eq!(headers.len(), 2);
    assert!(!headers[0].iter().any(|(k, _)| k == "authorization"));
    assert!(headers[1].contains(&("authorization".to_owned(), "Bearer s3cret".to_owned())));
}

#[tokio::test]
async fn wss_with_the_test_ca() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let (server, ca_pem) = test_tls();
    let hub = FakeHub::start(FakeHubOptions {
        tls: Some(server),
        ..FakeHubOptions::default()
    })
    .await;
    assert!(hub.url().starts_with("wss://localhost:"));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = Connector::Rustls(Arc::new(client));
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(hub.url(), None, false, Some(connector))
            .await
            .expect("wss handshake");
    let mut client = Client { ws };
    assert_eq!(client.call(1, "ping", json!({})).await["result"], json!({}));
}

#[tokio::test]
async fn stop_frees_the_port_for_a_restart() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let port = hub.port();
    let mut client = Client::connect(&hub.url()).await;
    assert_eq!(client.call(1, "ping", json!({})).await["id"], 1);
    hub.stop().await;
    assert_eq!(client.closed().await, None, "dropped without a close frame");
    assert!(
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/mcp"))
            .await
            .is_err()
    );

    let hub = FakeHub::start_on(port, FakeHubOptions::default()).await;
    assert_eq!(hub.port(), port);
    let mut client = Client::connect(&hub.url()).await;
    assert_eq!(client.call(1, "ping", json!({})).await["id"], 1);
}

#[tokio::test]
async fn drop_connections_keeps_listening() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    assert_eq!(client.call(1, "ping", json!({})).await["id"], 1);
    hub.drop_connections();
    assert_eq!(client.closed().await, None);
    let mut client = Client::connect(&hub.url()).await;
    assert_eq!(client.call(1, "ping", json!({})).await["id"], 1);
    assert_eq!(hub.connections(), 2);
    assert!(
        hub.close_frames().is_empty(),
        "the hub's own drops are not client closes"
    );
}

#[tokio::test]
async fn close_frames_are_recorded() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    client
        .ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    assert_eq!(client.closed().await, Some(1000));
    let client = Client::connect(&hub.url()).await;
    drop(client);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.close_frames().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.close_frames(), vec![Some(1000), None]);
}

#[tokio::test]
async fn silent_hub_answers_initialize_then_no_pong() {
    let hub = FakeHub::start(FakeHubOptions {
        silent_after_init: true,
        ..FakeHubOptions::default()
    })
    .await;
    let mut client = Client::connect(&hub.url()).await;
    assert_eq!(
        client.call(1, "initialize", json!({})).await["result"]["serverInfo"]["name"],
        "test-hub"
    );
    client
        .ws
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(500), client.ws.next())
            .await
            .is_err(),
        "no pong, no close"
    );

    // A normal hub does answer pings.
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    client
        .ws
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = timeout(WAIT, client.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(pong, Message::Pong(_)), "{pong:?}");
}

#[tokio::test]
async fn hub_pings_and_drops_clients_that_do_not_pong() {
    let opts = FakeHubOptions {
        ws_ping_every: Some(Duration::from_millis(100)),
        ..FakeHubOptions::default()
    };
    let hub = FakeHub::start(opts).await;

    // A client that keeps reading answers the pings and stays.
    let mut lively = Client::connect(&hub.url()).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(450);
    while let Ok(frame) = tokio::time::timeout_at(until, lively.ws.next()).await {
        if matches!(frame, Some(Ok(Message::Ping(_)))) {
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings} pings");
    assert_eq!(lively.call(1, "ping", json!({})).await["id"], 1);

    // A client that reads nothing cannot pong: after two periods it is dropped.
    let mut asleep = Client::connect(&hub.url()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(asleep.closed().await, None);
}

#[tokio::test]
async fn the_other_methods() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let mut client = Client::connect(&hub.url()).await;
    let big = client
        .call(1, "tools/call", tool_call("big", json!({"bytes": 70000})))
        .await;
    assert_eq!(
        big["result"]["content"][0]["text"].as_str().map(str::len),
        Some(70000)
    );
    let fail = client
        .call(2, "tools/call", tool_call("fail", json!({})))
        .await;
    assert_eq!(fail["result"]["isError"], true);
    let prompt = client
        .call(
            3,
            "prompts/get",
            json!({"name": "analyze_task", "arguments": {"task": "x"}}),
        )
        .await;
    assert_eq!(
        prompt["result"]["messages"][0]["content"]["text"],
        "Analyze: x"
    );
    let done = client.call(4, "completion/complete", json!({})).await;
    assert_eq!(
        done["result"]["completion"]["values"],
        json!(["alpha", "alpine"])
    );
    let discover = client.call(5, "server/discover", json!({})).await;
    assert_eq!(discover["result"]["supportedVersions"][2], "2026-07-28");
    let read = client
        .call(6, "resources/read", json!({"uri": "aicp://context/a"}))
        .await;
    assert_eq!(read["result"]["contents"][0]["text"], "{\"k\":1}");
    assert_eq!(
        client
            .call(7, "logging/setLevel", json!({"level": "debug"}))
            .await["result"],
        json!({})
    );
    for (id, method) in [
        (8, "resources/list"),
        (9, "resources/templates/list"),
        (10, "prompts/list"),
    ] {
        assert!(
            client
                .call(id, method, json!({}))
                .await
                .get("result")
                .is_some()
        );
    }
    // Notifications get no answer in normal mode.
    client
        .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    assert_eq!(client.call(11, "ping", json!({})).await["id"], 11);
}
