//! Drives the built `aicp-bridge` binary over real pipes, the way an MCP host
//! does. Every line the bridge writes to stdout is checked to be a JSON-RPC
//! 2.0 message: stdout is the protocol, and a stray log line fails the test.
//! The environment is cleared of AICP_* variables and HOME/XDG dirs point at a
//! temp dir, so a test never reads the developer's own settings.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_aicp-bridge");

pub use super::env::{PATIENCE, isolate};

pub struct Bridge {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    stderr: Arc<Mutex<String>>,
    _home: tempfile::TempDir,
}

pub fn command(args: &[&str]) -> (Command, tempfile::TempDir) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    let home = isolate(&mut cmd);
    (cmd, home)
}

impl Bridge {
    /// `aicp-bridge serve --hub URL` plus `extra` flags, logging at debug level.
    pub fn serve(url: &str, extra: &[&str]) -> Bridge {
        Bridge::serve_env(url, extra, &[])
    }

    pub fn serve_env(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Bridge {
        let mut args = vec!["serve", "--hub", url];
        args.extend_from_slice(extra);
        let (mut cmd, home) = command(&args);
        cmd.env("AICP_LOG", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn aicp-bridge");
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("bridge wrote a non-JSON line to stdout ({e}): {line}")
                });
                assert_eq!(
                    value["jsonrpc"], "2.0",
                    "stdout line is not JSON-RPC 2.0: {line}"
                );
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Bridge {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            _home: home,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub async fn send_raw(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_raw(&msg.to_string()).await;
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await;
    }

    /// The next message from the bridge.
    pub async fn recv(&mut self) -> Value {
        match tokio::time::timeout(PATIENCE, self.lines.recv()).await {
            Ok(Some(v)) => v,
            Ok(None) => panic!("bridge closed stdout; stderr:\n{}", self.stderr()),
            Err(_) => panic!(
                "no message from the bridge within {PATIENCE:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Nothing arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some(v)) = tokio::time::timeout(wait, self.lines.recv()).await {
            panic!("expected no message, got {v}");
        }
    }

    /// Collects messages until the response to `id`; returns (others, response).
    pub async fn until_response(&mut self, id: &Value) -> (Vec<Value>, Value) {
        let mut others = Vec::new();
        loop {
            let msg = self.recv().await;
            if msg.get("method").is_none() && &msg["id"] == id {
                return (others, msg);
            }
            others.push(msg);
        }
    }

    /// Sends a request and returns its response, skipping notifications.
    pub async fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) -> Value {
        let id = id.into();
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.until_response(&id).await.1
    }

    pub async fn call_tool(&mut self, id: impl Into<Value>, name: &str, args: Value) -> Value {
        self.request(id, "tools/call", json!({"name": name, "arguments": args}))
            .await
    }

    pub async fn initialize(&mut self, version: &str) -> Value {
        self.initialize_as(version, "it-host").await
    }

    /// Initializes with `name` as clientInfo.name (the test hub's agent identity).
    pub async fn initialize_as(&mut self, version: &str, name: &str) -> Value {
        let params = json!({
            "protocolVersion": version,
            "capabilities": {"sampling": {}, "roots": {"listChanged": true}},
            "clientInfo": {"name": name, "version": "1.0"}
        });
        let reply = self.request("init", "initialize", params).await;
        self.notify("notifications/initialized", json!({})).await;
        reply
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "bridge did not exit within {within:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Messages already received, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(v) = self.lines.try_recv() {
            out.push(v);
        }
        out
    }
}
