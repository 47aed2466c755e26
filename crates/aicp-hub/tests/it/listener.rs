//! The local hub's listener under hostile or sloppy clients, over real sockets
//! against the built binary: request heads that never end, sockets that never
//! speak, browser origins, one identity taking every slot, revoked tokens,
//! upgrades that are not GET/HTTP/1.1/`Connection: Upgrade`, and the modes of
//! the files the hub writes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::local_hub::{LocalHub, RawClient, hub_bin, raw_http};

/// The hub's `MAX_HEAD_BYTES` (src/hub/server.rs).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A WebSocket upgrade request as raw bytes: `method`, `version` and extra header lines.
fn upgrade_request(method: &str, version: &str, connection: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} /mcp {version}\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n{connection}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn good_upgrade(extra: &str) -> Vec<u8> {
    upgrade_request("GET", "HTTP/1.1", "Connection: Upgrade\r\n", extra)
}

#[tokio::test]
async fn a_head_one_byte_over_the_limit_gets_431_saying_the_limit() {
    let hub = LocalHub::start(&["--open"]).await;
    // Exactly one byte over, none after it: the hub reads all of it, so its close is a clean FIN.
    let mut req = b"GET /mcp HTTP/1.1\r\nX-Long: ".to_vec();
    req.resize(MAX_HEAD_BYTES + 1, b'a');
    let (status, text) = raw_http(&hub.addr(), &req).await;
    assert_eq!(status, 431, "{text}");
    assert!(text.contains(&MAX_HEAD_BYTES.to_string()), "{text}");
}

#[tokio::test]
async fn a_header_line_without_line_feed_is_cut_off_and_memory_stays_bounded() {
    let hub = LocalHub::start(&["--open"]).await;
    let rss_before = hub.rss_kib();
    let mut s = TcpStream::connect(hub.addr()).await.unwrap();
    s.write_all(b"GET /mcp HTTP/1.1\r\nX-Long: ").await.unwrap();
    // Up to 64 MiB of one header line: the hub must stop reading (and close) long before.
    const TOTAL: usize = 64 << 20;
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    let flood = async {
        while sent < TOTAL {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .expect("the writes end (the hub closed) in time");
    let rss_after = hub.rss_kib();
    eprintln!(
        "flood: sent {sent} bytes before the hub closed; hub RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        sent < TOTAL,
        "the hub read all {TOTAL} bytes of one header line"
    );
    assert!(
        rss_after < 60 * 1024,
        "hub RSS {rss_after} KiB after the flood (before: {rss_before} KiB)"
    );
    // A good client still gets a working session.
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    let r = c
        .request(serde_json::json!(1), "ping", serde_json::json!({}))
        .await;
    assert_eq!(r["result"], serde_json::json!({}), "{r}");
}

#[tokio::test]
async fn upgrades_must_be_get_over_http_1_1_with_connection_upgrade() {
    let hub = LocalHub::start(&["--open"]).await;
    let addr = hub.addr();
    let post = upgrade_request("POST", "HTTP/1.1", "Connection: Upgrade\r\n", "");
    let (status, text) = raw_http(&addr, &post).await;
    assert_eq!(status, 405, "{text}");
    assert!(
        text.contains("Allow: GET") && text.contains("GET"),
        "{text}"
    );

    let no_connection = upgrade_request("GET", "HTTP/1.1", "", "");
    let (status, text) = raw_http(&addr, &no_connection).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Connection: Upgrade"), "{text}");

    let keep_alive = upgrade_request("GET", "HTTP/1.1", "Connection: keep-alive\r\n", "");
    let (status, text) = raw_http(&addr, &keep_alive).await;
    assert_eq!(status, 400, "{text}");

    let http10 = upgrade_request("GET", "HTTP/1.0", "Connection: Upgrade\r\n", "");
    let (status, text) = raw_http(&addr, &http10).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("HTTP/1.1"), "{text}");

    // The token list form browsers send is fine.
    let listed = upgrade_request("GET", "HTTP/1.1", "Connection: keep-alive, Upgrade\r\n", "");
    let (status, text) = raw_http(&addr, &listed).await;
    assert_eq!(status, 101, "{text}");
}

#[tokio::test]
async fn browser_origins_are_refused_unless_allowed() {
    // With --open: any page could otherwise drive the hub from the user's browser.
    let open = LocalHub::start(&["--open"]).await;
    let (status, text) = raw_http(
        &open.addr(),
        &good_upgrade("Origin: https://evil.example\r\n"),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("--allow-origin"), "{text}");
    let (status, text) = raw_http(&open.addr(), &good_upgrade("")).await;
    assert_eq!(
        status, 101,
        "no Origin (bridges, SDKs) is unaffected: {text}"
    );

    // With tokens, and an allow list (normalised: case, trailing slash).
    let hub = LocalHub::start(&["--allow-origin", "https://Good.example/"]).await;
    let token = hub.token("alice", "share,read,message");
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (status, text) = raw_http(
        &hub.addr(),
        &good_upgrade(&format!("{auth}Origin: https://evil.example\r\n")),
    )
    .await;
    assert_eq!(
        status, 403,
        "a valid token does not make a foreign page welcome: {text}"
    );
    let (status, text) = raw_http(
        &hub.addr(),
        &good_upgrade(&format!("{auth}Origin: https://good.example\r\n")),
    )
    .await;
    assert_eq!(status, 101, "{text}");
    let (status, text) = raw_http(
        &hub.addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = raw_http(
        &hub.addr(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (_, metrics) = hub.http_get("/metrics").await;
    assert!(
        metrics.contains("aicp_hub_upgrades_refused_total{reason=\"forbidden_origin\"} 1"),
        "{metrics}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn every_file_the_hub_writes_is_private_whatever_the_dir_mode() {
    use std::os::unix::fs::PermissionsExt;
    // A data dir someone made world-readable, holding a database file an older hub left 0644.
    let hub = LocalHub::start_prepared(&[], |dir| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("hub.sqlite3"), b"").unwrap();
        std::fs::set_permissions(
            dir.join("hub.sqlite3"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    })
    .await;
    let token = hub.token("alice", "share,read,message");
    let mut c = RawClient::agent(hub.url(), Some(&token), &[]).await;
    let r = c
        .call_tool(
            serde_json::json!(1),
            "share_context",
            serde_json::json!({"context_key": "k", "context_value": "secret plan"}),
        )
        .await;
    assert_eq!(r["result"]["isError"], serde_json::json!(false), "{r}");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(hub.data_dir()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "hub.sqlite3",
            "hub.sqlite3-shm",
            "hub.sqlite3-wal",
            "jwt-secret"
        ],
        "the write went through the WAL"
    );
}

#[tokio::test]
async fn a_revoked_subject_s_earlier_tokens_get_401_without_a_restart() {
    let hub = LocalHub::start(&[]).await;
    let old = hub.token("alice", "share,read,message");
    let bob = hub.token("bob", "share,read,message");
    RawClient::agent(hub.url(), Some(&old), &[]).await;
    // `iat` has one-second resolution: a token from the revocation's own second still works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = std::process::Command::new(hub_bin())
        .args(["revoke", "--sub", "alice", "--data-dir"])
        .arg(hub.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match RawClient::try_connect(hub.url(), Some(&old)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("revoked"), "{body}");
        }
        Err(e) => panic!("expected HTTP 401, got {e}"),
        Ok(_) => panic!("a revoked token connected"),
    }
    RawClient::agent(hub.url(), Some(&bob), &[]).await;
    let new = hub.token("alice", "share,read,message");
    let mut c = RawClient::agent(hub.url(), Some(&new), &[]).await;
    let r = c
        .call_tool(serde_json::json!(1), "whoami", serde_json::json!({}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["identity"], "alice", "{r}");
    let (_, metrics) = hub.http_get("/metrics").await;
    assert!(
        metrics.contains("aicp_hub_upgrades_refused_total{reason=\"revoked\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_ttl_that_would_overflow_is_refused_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    for ttl in ["18446744073709551615", "3651d"] {
        let out = std::process::Command::new(hub_bin())
            .args(["token", "--sub", "alice", "--ttl", ttl, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--ttl {ttl} exited 0");
        assert!(out.stdout.is_empty(), "--ttl {ttl} printed a token");
        assert!(stderr.contains("3650 days"), "--ttl {ttl}: {stderr}");
    }
    let out = std::process::Command::new(hub_bin())
        .args(["token", "--sub", "alice", "--ttl", "3650d", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn one_identity_cannot_take_every_connection_slot() {
    let hub = LocalHub::start(&["--max-connections-per-identity", "2"]).await;
    let alice = hub.token("alice", "share,read,message");
    let first = RawClient::agent(hub.url(), Some(&alice), &[]).await;
    let _second = RawClient::agent(hub.url(), Some(&alice), &[]).await;
    match RawClient::try_connect(hub.url(), Some(&alice)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("alice") && body.contains("limit 2"), "{body}");
        }
        Err(e) => panic!("expected HTTP 429, got {e}"),
        Ok(_) => panic!("a third connection of alice was accepted"),
    }
    let bob = hub.token("bob", "share,read,message");
    let mut b = RawClient::agent(hub.url(), Some(&bob), &[]).await;
    let r = b
        .call_tool(serde_json::json!(1), "whoami", serde_json::json!({}))
        .await;
    assert_eq!(r["result"]["structuredContent"]["identity"], "bob", "{r}");
    let (_, metrics) = hub.http_get("/metrics").await;
    assert!(
        metrics.contains(
            "aicp_hub_upgrades_refused_total{reason=\"too_many_connections_per_identity\"} 1"
        ),
        "{metrics}"
    );
    // A closed session gives its slot back.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while RawClient::try_connect(hub.url(), Some(&alice))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "alice's slot was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The hub's pending-handshake pool with `--max-connections 8`: the floor,
/// `MIN_PENDING_HANDSHAKES` (src/hub/server.rs).
const PENDING_HANDSHAKES_AT_8: usize = 16;

#[tokio::test]
async fn silent_sockets_are_bounded_and_cannot_lock_out_a_good_client() {
    let hub = LocalHub::start(&["--open", "--max-connections", "8"]).await;
    let addr = hub.addr();
    let fds_before = hub.fd_count();
    const SILENT: usize = 40;
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    // A good client gets a working session at once, not after the head timeout.
    let started = std::time::Instant::now();
    let mut c = RawClient::agent(hub.url(), None, &[]).await;
    let r = c
        .request(serde_json::json!(1), "ping", serde_json::json!({}))
        .await;
    assert_eq!(r["result"], serde_json::json!({}), "{r}");
    // Well under the 5 s head timeout that a blocked client would wait for.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the good client waited {:?}",
        started.elapsed()
    );
    // The hub closed the oldest silent sockets to stay within its pool, well before its
    // 5 s head timeout: reads see end of file (or a reset) within 2 s.
    let closed = futures_util::future::join_all(silent.iter_mut().map(|s| async move {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await
    .into_iter()
    .filter(|c| *c)
    .count();
    let fds_after = hub.fd_count();
    eprintln!(
        "silent sockets: {SILENT} opened, {closed} closed by the hub within 2 s; hub fds {fds_before} before, {fds_after} with the rest open"
    );
    assert!(
        closed > SILENT - PENDING_HANDSHAKES_AT_8,
        "only {closed} of {SILENT} silent sockets were closed"
    );
    // The pool plus one session (and a little slack for the runtime), not one per silent socket.
    assert!(
        fds_after <= fds_before + PENDING_HANDSHAKES_AT_8 + 1 + 2,
        "hub holds {fds_after} fds (before: {fds_before})"
    );
    // The session is not in the HTTP-phase pool: more silent sockets do not evict it.
    let mut more = Vec::new();
    for _ in 0..SILENT {
        more.push(TcpStream::connect(&addr).await.unwrap());
    }
    let r = c
        .request(serde_json::json!(2), "ping", serde_json::json!({}))
        .await;
    assert_eq!(r["result"], serde_json::json!({}), "{r}");
}
