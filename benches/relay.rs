//! Relay benchmark: the built bridge against a direct WebSocket client to the
//! same test hub, in one process and one run, so that the figures compare as
//! ratios on a shared, noisy machine. Not a timed test: it asserts nothing
//! about speed, it measures and prints.
//!
//! Run: `cargo bench --bench relay` (optionally `-- --calls N --runs N`).
//! Prints a Markdown table; docs/performance.md records one run of it.

#[path = "../tests/it/support/fake_hub.rs"]
#[allow(unused_imports)]
mod fake_hub;

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const BIN: &str = env!("CARGO_BIN_EXE_aicp-bridge");

/// One way to talk MCP to the hub: directly over WebSocket, or through the bridge's stdio.
// Two long-lived values: their size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Peer {
    Direct(WebSocketStream<MaybeTlsStream<TcpStream>>),
    Bridge {
        child: Child,
        stdin: ChildStdin,
        stdout: Lines<BufReader<ChildStdout>>,
    },
}

impl Peer {
    async fn direct(url: &str) -> Peer {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let mut peer = Peer::Direct(ws);
        peer.initialize().await;
        peer
    }

    async fn bridge(url: &str) -> Peer {
        let mut child = spawn_bridge(url);
        let mut peer = Peer::Bridge {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        };
        peer.initialize().await;
        peer
    }

    async fn send(&mut self, text: String) {
        match self {
            Peer::Direct(ws) => ws.send(Message::text(text)).await.unwrap(),
            Peer::Bridge { stdin, .. } => {
                stdin.write_all(text.as_bytes()).await.unwrap();
                stdin.write_all(b"\n").await.unwrap();
                stdin.flush().await.unwrap();
            }
        }
    }

    async fn recv(&mut self) -> String {
        match self {
            Peer::Direct(ws) => loop {
                if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                    return t.as_str().to_owned();
                }
            },
            Peer::Bridge { stdout, .. } => {
                stdout.next_line().await.unwrap().expect("bridge output")
            }
        }
    }

    async fn initialize(&mut self) {
        self.send(json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}).to_string()).await;
        let reply: Value = serde_json::from_str(&self.recv().await).unwrap();
        assert_eq!(reply["result"]["serverInfo"]["name"], "test-hub", "{reply}");
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string())
            .await;
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Peer::Direct(_) => None,
            Peer::Bridge { child, .. } => child.id(),
        }
    }
}

fn spawn_bridge(url: &str) -> Child {
    Command::new(BIN)
        // The benchmark repeats one call thousands of times a minute, which is
        // exactly what the loop guard refuses by default: raise those limits.
        // Every check still runs on every call.
        .args(["serve", "--hub", url, "--log-level", "warn"])
        .args([
            "--limit",
            "repeat_limit=1000000000",
            "--limit",
            "calls_per_minute=1000000000",
        ])
        .args([
            "--limit",
            "tool_calls_per_minute=1000000000",
            "--limit",
            "session_budget=0",
        ])
        .env_remove("AICP_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bridge")
}

fn call(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":"benchmark payload"}}}).to_string()
}

/// Round-trip times of `n` sequential calls.
async fn sequential(peer: &mut Peer, n: u64, first_id: u64) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n as usize);
    for id in first_id..first_id + n {
        let start = Instant::now();
        peer.send(call(id)).await;
        let reply = peer.recv().await;
        times.push(start.elapsed());
        debug_assert!(reply.contains("benchmark payload"));
    }
    times
}

/// Calls per second with `window` calls in flight, `total` calls in all.
async fn throughput(peer: &mut Peer, window: u64, total: u64) -> f64 {
    let start = Instant::now();
    let mut sent = 0;
    for _ in 0..window {
        peer.send(call(1_000_000 + sent)).await;
        sent += 1;
    }
    for _ in 0..total {
        let _ = peer.recv().await;
        if sent < total {
            peer.send(call(1_000_000 + sent)).await;
            sent += 1;
        }
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The default limits with every rate and repeat limit out of the way, so
/// that every check runs and none refuses.
fn no_rate_limits() -> aicp_bridge::guard::Limits {
    aicp_bridge::guard::Limits {
        repeat_limit: u32::MAX,
        calls_per_minute: u32::MAX,
        tool_calls_per_minute: u32::MAX,
        session_budget: 0,
        ..Default::default()
    }
}

/// The guard's own work per `tools/call`, in process: read the call, check
/// it, add the envelope, hear its outcome. Limits are set so that every check
/// runs and none refuses.
fn guard_cost(calls: u64) -> Duration {
    use aicp_bridge::guard::{self, envelope as aixp};
    use aicp_proto::wire;
    let limits = no_rate_limits();
    let mut g = guard::Guard::new(limits, "bench".into());
    let texts: Vec<String> = (0..calls).map(call).collect();
    let start = Instant::now();
    for text in &texts {
        let msg = wire::parse_host(text).unwrap();
        let wire::Kind::Request { id, .. } = msg.kind else {
            unreachable!()
        };
        let params = msg.params.unwrap();
        let c = aixp::read_tool_call(params).unwrap();
        let now = guard::Now::current();
        let info = c.guard_call(false);
        let env = g.check(now, &info).unwrap();
        std::hint::black_box(aixp::with_envelope(&id, params, &env));
        g.finished(now, guard::Outcome::Answered);
    }
    start.elapsed() / calls as u32
}

/// A text of `words` words that differs from every other seed's.
fn prose(seed: u64, words: usize) -> String {
    (0..words)
        .map(|i| format!("w{}", (seed * 7919 + i as u64 * 104_729) % 100_003))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The guard's check of one sending call (`send_message` with a 100-word
/// text) with the forward tracker full (256 delivered texts of 100 words), and
/// without any delivered text: the difference is what recognising forwards costs per send.
fn forward_check_cost(calls: u64) -> (Duration, Duration) {
    use aicp_bridge::guard;
    use aicp_proto::aixp::Envelope;
    let limits = no_rate_limits();
    let timed = |full: bool| {
        let mut g = guard::Guard::new(limits.clone(), "bench".into());
        if full {
            for n in 0..256 {
                let env = Envelope {
                    id: format!("m{n}"),
                    hops: 1,
                    expires_at: u64::MAX,
                    ..Envelope::default()
                };
                g.learn(&env, "alice", &prose(n, 100));
            }
        }
        let texts: Vec<String> = (0..calls).map(|n| prose(1_000 + n, 100)).collect();
        let start = Instant::now();
        for text in &texts {
            let now = guard::Now::current();
            let call = guard::Call {
                tool: "send_message",
                fingerprint: 0,
                incoming: Default::default(),
                refers_to: Vec::new(),
                to: Some("bob"),
                text: Some(text),
                read_only: false,
            };
            std::hint::black_box(g.check(now, &call).unwrap());
            g.finished(now, guard::Outcome::Answered);
        }
        start.elapsed() / calls as u32
    };
    (timed(true), timed(false))
}

/// What checking that a host message decodes as a hub will decode it (depth,
/// surrogates, number range) adds to reading its envelope: `parse_host` minus `parse`.
fn decode_check_cost(calls: u64) -> Duration {
    use aicp_proto::wire;
    let texts: Vec<String> = (0..calls).map(call).collect();
    let timed = |host: bool| {
        let start = Instant::now();
        for text in &texts {
            let msg = if host {
                wire::parse_host(text)
            } else {
                wire::parse(text, true)
            };
            std::hint::black_box(msg.unwrap());
        }
        start.elapsed()
    };
    let (envelope, host) = (timed(false), timed(true));
    host.saturating_sub(envelope) / calls as u32
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls = arg("--calls", 2000);
    let runs = arg("--runs", 5);
    let hub = fake_hub::FakeHub::start(fake_hub::FakeHubOptions::default()).await;
    let url = hub.url();

    let mut direct = Peer::direct(&url).await;
    let mut bridged = Peer::bridge(&url).await;
    // Warm both paths, then interleave rounds so drift on the machine hits both alike.
    sequential(&mut direct, 200, 0).await;
    sequential(&mut bridged, 200, 0).await;
    let (mut d_times, mut b_times) = (Vec::new(), Vec::new());
    for round in 0..runs {
        let first = 10_000 * (round + 1);
        d_times.extend(sequential(&mut direct, calls / runs, first).await);
        b_times.extend(sequential(&mut bridged, calls / runs, first).await);
    }
    d_times.sort();
    b_times.sort();
    let (d50, d99) = (percentile(&d_times, 0.5), percentile(&d_times, 0.99));
    let (b50, b99) = (percentile(&b_times, 0.5), percentile(&b_times, 0.99));

    let mut d_tput = Vec::new();
    let mut b_tput = Vec::new();
    let cpu_before = bridged.pid().and_then(cpu_time);
    for _ in 0..3 {
        d_tput.push(throughput(&mut direct, 16, calls * 2).await);
        b_tput.push(throughput(&mut bridged, 16, calls * 2).await);
    }
    let cpu_per_call = match (cpu_before, bridged.pid().and_then(cpu_time)) {
        (Some(a), Some(b)) => Some((b - a) / (3 * calls * 2) as u32),
        _ => None,
    };
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let (d_tp, b_tp) = (best(&d_tput), best(&b_tput));
    let rss = bridged.pid().and_then(peak_rss_kib);

    // Cold start: spawn to the initialize reply, hub connection included.
    let mut starts = Vec::new();
    for _ in 0..30 {
        let start = Instant::now();
        let peer = Peer::bridge(&url).await;
        starts.push(start.elapsed());
        drop(peer);
    }
    starts.sort();
    // The same handshake without the bridge: connect + initialize directly.
    let mut direct_starts = Vec::new();
    for _ in 0..30 {
        let start = Instant::now();
        let peer = Peer::direct(&url).await;
        direct_starts.push(start.elapsed());
        drop(peer);
    }
    direct_starts.sort();

    let size = std::fs::metadata(BIN).map(|m| m.len()).unwrap_or(0);
    let guard_ns = guard_cost(100_000).as_nanos();
    let decode_ns = decode_check_cost(100_000).as_nanos();
    let (forward_full, forward_empty) = forward_check_cost(5_000);
    println!("| measure | direct WebSocket | through aicp-bridge | difference |");
    println!("|---|---|---|---|");
    println!(
        "| sequential tools/call p50 ({} calls) | {:.1} µs | {:.1} µs | +{:.1} µs |",
        d_times.len(),
        micros(d50),
        micros(b50),
        micros(b50) - micros(d50)
    );
    println!(
        "| sequential tools/call p99 | {:.1} µs | {:.1} µs | +{:.1} µs |",
        micros(d99),
        micros(b99),
        micros(b99) - micros(d99)
    );
    println!(
        "| throughput, 16 in flight (best of 3 × {} calls) | {:.0} calls/s | {:.0} calls/s | {:.1} % of direct |",
        calls * 2,
        d_tp,
        b_tp,
        100.0 * b_tp / d_tp
    );
    println!(
        "| cold start to initialize reply, median (p90) of 30 | {:.2} ms ({:.2}) connect+initialize | {:.2} ms ({:.2}) spawn+connect+initialize | +{:.2} ms |",
        micros(percentile(&direct_starts, 0.5)) / 1000.0,
        micros(percentile(&direct_starts, 0.9)) / 1000.0,
        micros(percentile(&starts, 0.5)) / 1000.0,
        micros(percentile(&starts, 0.9)) / 1000.0,
        (micros(percentile(&starts, 0.5)) - micros(percentile(&direct_starts, 0.5))) / 1000.0
    );
    println!(
        "| loop guard per tools/call (in process, 100 000 calls): parse, check, envelope | | {:.2} µs | {:.1} % of the added p50 |",
        guard_ns as f64 / 1000.0,
        100.0 * (guard_ns as f64 / 1000.0) / (micros(b50) - micros(d50)).max(0.001)
    );
    println!(
        "| of which: host message decoded as a hub would (in process, 100 000 calls) | | {:.2} µs | |",
        decode_ns as f64 / 1000.0
    );
    println!(
        "| guard check of a 100-word send, forward tracker full (256 texts) vs empty (in process, 5 000 calls) | | {:.2} µs vs {:.2} µs | forwards add {:.2} µs per send |",
        micros(forward_full),
        micros(forward_empty),
        micros(forward_full) - micros(forward_empty)
    );
    if let Some(cpu) = cpu_per_call {
        println!(
            "| bridge CPU (user+sys) per relayed call, throughput runs | | {:.1} µs | |",
            micros(cpu)
        );
    }
    match rss {
        Some(kib) => println!(
            "| bridge peak RSS (VmHWM) after all of the above | | {:.1} MiB | |",
            kib as f64 / 1024.0
        ),
        None => println!("| bridge peak RSS | | n/a (no /proc) | |"),
    }
    println!(
        "| binary size ({}) | | {:.2} MiB | |",
        BIN.rsplit('/').nth(2).unwrap_or("?"),
        size as f64 / 1048576.0
    );
    drop(bridged);
    drop(direct);
}
