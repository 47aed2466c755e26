//! The built `aicp-hub` as a child process on 127.0.0.1:0 with a temp
//! data dir, plus a raw WebSocket MCP client for what a bridge would never
//! send (garbage, binary frames, pipelined requests, forged envelopes).
//! Shared by the hub's tests and the bridge's, each of which uses part of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::env::{PATIENCE, isolate};

/// The built `aicp-hub`. Cargo names it for the hub's own tests; the bridge's
/// tests find it beside `aicp-bridge`, where a workspace build puts both.
pub fn hub_bin() -> PathBuf {
    if let Some(hub) = option_env!("CARGO_BIN_EXE_aicp-hub") {
        return hub.into();
    }
    let Some(bridge) = option_env!("CARGO_BIN_EXE_aicp-bridge") else {
        panic!("neither aicp-hub nor aicp-bridge was built for this test");
    };
    let hub = Path::new(bridge).with_file_name(if cfg!(windows) {
        "aicp-hub.exe"
    } else {
        "aicp-hub"
    });
    assert!(
        hub.is_file(),
        "{} is missing: build the workspace (`cargo test --workspace` or `cargo build --workspace`)",
        hub.display()
    );
    hub
}

/// `aicp-hub` with no arguments yet, in no particular environment.
pub fn hub_command() -> tokio::process::Command {
    tokio::process::Command::new(hub_bin())
}

pub struct LocalHub {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
    data_dir: PathBuf,
    extra: Vec<String>,
    _home: tempfile::TempDir,
}

impl LocalHub {
    /// `aicp-hub --listen 127.0.0.1:0 --data-dir <temp>` plus `extra`.
    pub async fn start(extra: &[&str]) -> LocalHub {
        let home = tempfile::tempdir().unwrap();
        let data_dir = home.path().join("hub-data");
        LocalHub::start_in(
            home,
            data_dir,
            extra.iter().map(|s| s.to_string()).collect(),
        )
        .await
    }

    async fn start_in(home: tempfile::TempDir, data_dir: PathBuf, extra: Vec<String>) -> LocalHub {
        let mut args = vec![
            "--listen".to_string(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let mut cmd = hub_command();
        cmd.args(&args);
        // isolate() makes its own temp home; point everything at ours, which lives as long as the hub.
        let _its_home = isolate(&mut cmd);
        cmd.env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_CONFIG_HOME", home.path().join("config"));
        cmd.env("AICP_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn aicp-bridge hub");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = match tokio::time::timeout(PATIENCE, lines.next_line()).await {
            Ok(Ok(Some(url))) => url,
            other => panic!(
                "hub printed no URL ({other:?}); stderr:\n{}",
                stderr.lock().unwrap()
            ),
        };
        assert!(
            url.starts_with("ws://127.0.0.1:") && url.ends_with("/mcp"),
            "{url}"
        );
        // Nothing else may appear on stdout.
        tokio::spawn(async move {
            if let Ok(Some(extra)) = lines.next_line().await {
                panic!("hub wrote a second stdout line: {extra}");
            }
        });
        LocalHub {
            child,
            url,
            stderr,
            data_dir,
            extra,
            _home: home,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `aicp-hub token --sub SUB --scopes SCOPES` against this hub's data dir.
    pub fn token(&self, sub: &str, scopes: &str) -> String {
        let out = std::process::Command::new(hub_bin())
            .args(["token", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--sub", sub, "--scopes", scopes, "--ttl", "1h"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.lines().count(),
            1,
            "token prints one line: {stdout:?}"
        );
        stdout.trim().to_owned()
    }

    /// SIGTERM, and the exit status within `within`.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!(
                "hub did not exit within {within:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Stops this hub cleanly and starts a new one on the same data dir (a new port).
    pub async fn restart(mut self) -> LocalHub {
        let status = self.terminate(Duration::from_secs(15)).await;
        assert!(
            status.success(),
            "hub exit {status:?}; stderr:\n{}",
            self.stderr()
        );
        let LocalHub {
            data_dir,
            extra,
            _home,
            ..
        } = self;
        LocalHub::start_in(_home, data_dir, extra).await
    }

    pub async fn http_get(&self, path: &str) -> (u16, String) {
        use tokio::io::AsyncWriteExt;
        let addr = self
            .url
            .trim_start_matches("ws://")
            .trim_end_matches("/mcp")
            .to_owned();
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = String::new();
        tokio::time::timeout(PATIENCE, s.read_to_string(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let status = buf
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

/// A raw MCP client on one WebSocket.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    pub async fn try_connect(
        url: &str,
        token: Option<&str>,
    ) -> Result<RawClient, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("Authorization", format!("Bearer {t}").parse().unwrap());
        }
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "mcp".parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
        assert_eq!(
            resp.headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap()),
            Some("mcp")
        );
        Ok(RawClient { ws })
    }

    pub async fn connect(url: &str, token: Option<&str>) -> RawClient {
        RawClient::try_connect(url, token)
            .await
            .expect("connect to the local hub")
    }

    /// Connects and initializes, declaring `capabilities` as the bridge does.
    pub async fn agent(url: &str, token: Option<&str>, capabilities: &[&str]) -> RawClient {
        let mut c = RawClient::connect(url, token).await;
        let r = c
            .request(
                json!("init"),
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"},
                    "_meta": {"aicp/agent": {"capabilities": capabilities}}
                }),
            )
            .await;
        assert!(r.get("result").is_some(), "{r}");
        c.send_text(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
            .await;
        c
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    pub async fn send(&mut self, id: Value, method: &str, params: Value) {
        self.send_text(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
        .await;
    }

    /// The next JSON message (pings and pongs skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message from the hub in time")
                .expect("connection open")
                .expect("frame");
            match frame {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("hub sends JSON");
                }
                Message::Close(c) => panic!("hub closed the connection: {c:?}"),
                _ => {}
            }
        }
    }

    /// Sends a request and returns its response; notifications in between are kept in `seen`.
    pub async fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(id.clone(), method, params).await;
        loop {
            let m = self.recv().await;
            if m.get("method").is_none() && m["id"] == id {
                return m;
            }
        }
    }

    pub async fn call_tool(&mut self, id: Value, name: &str, args: Value) -> Value {
        self.request(id, "tools/call", json!({"name": name, "arguments": args}))
            .await
    }
}

// Helpers for the hardening tests (hub_listener.rs, hub_session.rs).
impl LocalHub {
    /// `127.0.0.1:PORT`, for raw TCP clients.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("ws://")
            .trim_end_matches("/mcp")
            .to_owned()
    }

    /// The hub child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the hub is running")
    }

    /// The hub's resident memory in KiB (`VmRSS` in /proc/PID/status; Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {status}"))
    }

    /// How many file descriptors the hub holds open (/proc/PID/fd; Linux only).
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Like [`LocalHub::start`], after `prepare` has run on the (not yet created) data dir's path.
    pub async fn start_prepared(extra: &[&str], prepare: impl FnOnce(&Path)) -> LocalHub {
        let home = tempfile::tempdir().unwrap();
        let data_dir = home.path().join("hub-data");
        prepare(&data_dir);
        LocalHub::start_in(
            home,
            data_dir,
            extra.iter().map(|s| s.to_string()).collect(),
        )
        .await
    }
}

impl RawClient {
    /// Sends any frame, raw ones included (`Message::Frame`); false when the connection is gone.
    pub async fn try_send(&mut self, frame: Message) -> bool {
        self.ws.send(frame).await.is_ok()
    }

    /// The next frame within `within`: None on timeout, Some(None) when the stream ended.
    pub async fn next_frame(
        &mut self,
        within: Duration,
    ) -> Option<Option<Result<Message, tokio_tungstenite::tungstenite::Error>>> {
        tokio::time::timeout(within, self.ws.next()).await.ok()
    }

    /// Keeps reading (so pings are answered) for `d`; panics if the hub closes or sends a message.
    pub async fn idle(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(frame) = tokio::time::timeout_at(until, self.ws.next()).await {
            match frame {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("an idle client got {other:?}"),
            }
        }
    }
}

/// Sends `request` on a new TCP connection and returns the status code and the
/// raw response read until the hub closes (or, for a 101, until the head ends).
pub async fn raw_http(addr: &str, request: &[u8]) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.starts_with(b"HTTP/1.1 101") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the hub answers in time");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
