//! Hub benchmark: the built `aicp-hub` (release) in its own
//! process, driven by 16 WebSocket connections from this one. Measures
//! calls/s and latency percentiles for `ping` (the protocol floor), a cheap
//! tool (`whoami`) and `list_agents` (16 entries), then store write
//! throughput through the hub (`share_context`, each a SQLite transaction;
//! `send_message`, a transaction plus the forward check)
//! and directly on the store. Not a timed test: it measures and prints.
//!
//! Run: `cargo bench -p aicp-hub --bench hub` (options after `--`: --calls N per
//! connection, default 4000; --connections N, default 16; --window N
//! requests in flight per connection, default 1). docs/performance.md records one run.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use aicp_hub::store::{SqliteStore, Store, StoreLimits};

const BIN: &str = env!("CARGO_BIN_EXE_aicp-hub");

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// Builds request number `i` for connection `c` (the id is filled in by `load`).
type MakeRequest = Arc<dyn Fn(usize, u64) -> Value + Send + Sync>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connect(url: &str, token: &str, n: usize) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": format!("bench-{n}"), "version": "1"},
        "_meta": {"aicp/agent": {"capabilities": ["bench"]}}}});
    ws.send(Message::text(init.to_string())).await.unwrap();
    recv(&mut ws).await;
    ws
}

/// The fields the benchmark checks; the rest is skipped without building a tree, so
/// parsing the answers costs this process (which shares the 2 cores with the hub) little.
#[derive(serde::Deserialize)]
struct Reply {
    method: Option<String>,
    result: Option<ReplyResult>,
    error: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ReplyResult {
    #[serde(rename = "isError", default)]
    is_error: bool,
}

async fn recv_light(ws: &mut Ws) -> Reply {
    loop {
        match ws.next().await.expect("open").expect("frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("open").expect("frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Every connection sends `calls` requests built by `make`, `window` in flight;
/// returns (calls/s over all, sorted latencies).
async fn load(
    conns: &mut Vec<Ws>,
    calls: u64,
    window: u64,
    make: MakeRequest,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut ws) in std::mem::take(conns).into_iter().enumerate() {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(calls as usize);
            let mut sent_at = std::collections::VecDeque::new();
            let mut sent = 0;
            while (lat.len() as u64) < calls {
                while sent < calls && (sent_at.len() as u64) < window {
                    let mut req = make(c, sent);
                    req["id"] = json!(sent + 1);
                    sent_at.push_back(Instant::now());
                    ws.send(Message::text(req.to_string())).await.unwrap();
                    sent += 1;
                }
                let r = recv_light(&mut ws).await;
                if r.method.is_some() {
                    continue;
                }
                assert!(r.error.is_none(), "a JSON-RPC error");
                assert!(!r.result.expect("a result").is_error, "a tool error");
                lat.push(sent_at.pop_front().unwrap().elapsed());
            }
            (ws, lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (ws, lat) = t.await.unwrap();
        conns.push(ws);
        all.extend(lat);
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let calls = arg("--calls", 4000);
    let n = arg("--connections", 16) as usize;
    let window = arg("--window", 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    // The bucket stays on (so its cost is measured) but set high enough not to trip;
    // so are the per-identity quotas.
    let mut hub = tokio::process::Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--rate-limit",
            "10000000",
            "--burst",
            "10000000",
            // Every connection is the one identity `bench`: its per-identity
            // limits (sessions, keys, bytes) would otherwise stop the run.
            "--max-connections-per-identity",
            "100000",
            "--max-keys",
            "1000000",
            "--max-keys-per-identity",
            "1000000",
            "--max-context-bytes-per-identity",
            "1000000000",
            // Messages go to `bench` itself, all unread.
            "--max-inbox",
            "100000000",
            "--max-pending-bytes-per-sender",
            "100000000000",
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn hub");
    let url = BufReader::new(hub.stdout.take().unwrap())
        .lines()
        .next_line()
        .await
        .unwrap()
        .expect("hub URL");
    let token = String::from_utf8(
        std::process::Command::new(BIN)
            .args(["token", "--sub", "bench", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let mut conns = Vec::new();
    for i in 0..n {
        conns.push(connect(&url, &token, i).await);
    }

    println!(
        "local hub benchmark: {n} connections, {calls} calls each, {window} in flight per connection\n"
    );
    println!("| measure | calls/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let cases: Vec<(&str, MakeRequest)> = vec![
        (
            "ping",
            Arc::new(|_, _| json!({"jsonrpc": "2.0", "method": "ping"})),
        ),
        (
            "tools/call whoami (cheap tool)",
            Arc::new(
                |_, _| json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
            ),
        ),
        (
            "tools/call list_agents (16 agents, ~4 KB answer)",
            Arc::new(
                |_, _| json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "list_agents", "arguments": {}}}),
            ),
        ),
        (
            "tools/call share_context (store write)",
            Arc::new(|c, i| {
                json!({"jsonrpc": "2.0", "method": "tools/call",
            "params": {"name": "share_context", "arguments": {"context_key": format!("k{c}-{}", i % 512), "context_value": {"n": i, "by": c}}}})
            }),
        ),
        (
            "tools/call send_message (store write; the text checked against the 64 texts received last)",
            Arc::new(|c, i| {
                let text: Vec<String> = (0..30u64)
                    .map(|w| format!("w{}", (c as u64 * 1_000_003 + i * 31 + w) % 99_991))
                    .collect();
                json!({"jsonrpc": "2.0", "method": "tools/call",
            "params": {"name": "send_message", "arguments": {"to": "bench", "text": text.join(" ")}}})
            }),
        ),
    ];
    // Warm-up: connections, allocator, SQLite page cache.
    load(&mut conns, 200, window, cases[0].1.clone()).await;
    for (name, make) in cases {
        let (rate, lat) = load(&mut conns, calls, window, make).await;
        println!(
            "| {name} | {rate:.0} | {:.3} | {:.3} | {:.3} |",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().unwrap().as_secs_f64() * 1e3
        );
    }

    // The store alone, one writer, no network: what SQLite (WAL, synchronous=NORMAL) sustains here.
    let direct = tempfile::tempdir().unwrap();
    // 4096 keys from one writer: over the default per-identity key quota, so it is raised.
    let limits = StoreLimits {
        max_keys_per_identity: 1_000_000,
        ..StoreLimits::default()
    };
    let store = SqliteStore::open(direct.path(), limits).unwrap();
    let writes = calls * 4;
    let start = Instant::now();
    for i in 0..writes {
        store
            .put_state(&format!("k{}", i % 4096), &json!({"n": i}), "bench", i)
            .unwrap();
    }
    let per_s = writes as f64 / start.elapsed().as_secs_f64();
    println!(
        "\nstore alone (SqliteStore::put_state, one thread): {per_s:.0} writes/s over {writes} writes"
    );
    drop(conns);
    let pid = hub.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(15), hub.wait()).await;
    println!(
        "hub exit after SIGTERM: {:?}",
        status.map(|s| s.map(|s| s.code()))
    );
}
