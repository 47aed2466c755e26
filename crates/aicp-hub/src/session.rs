//! One MCP connection. This task owns the WebSocket: it reads frames, answers
//! cheap methods inline, spawns `tools/call` and `resources/read` so pipelined
//! requests run concurrently, and writes every answer and notification that
//! comes back through its channel. Bad input (unparseable, oversized, binary,
//! not JSON-RPC) gets a JSON-RPC error carrying the request's id when one can
//! be found, and the connection lives on. Notifications are never answered.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use aicp_proto::aixp::AixpStatus;
// Where the bridge declares its user's capabilities in `initialize` params `_meta`.
use super::auth::Principal;
use super::limits::TokenBucket;
use super::presence::Agent;
use super::rpc::{self, RpcError};
use super::store::AgentRecord;
use super::{Caller, DRAIN_TIMEOUT, Shared, now_ms, prompts, resources, tools};
use aicp_proto::meta::AGENT_META_KEY;

/// Protocol versions the hub speaks, newest first. A client asking for
/// another gets the newest, and decides (MCP version negotiation).
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Most capabilities one agent may declare, and the longest name kept.
const MAX_CAPABILITIES: usize = 32;
const MAX_CAPABILITY_LEN: usize = 64;
/// Answers written before one flush: pipelined replies leave in few TCP segments.
const WRITE_BATCH: usize = 64;

/// What a spawned request sends back to the session task.
struct Done {
    /// The request's id as text (the in-flight map's key).
    key: String,
    /// The message to write; None when the request was cancelled (no answer is sent).
    text: Option<String>,
}

pub async fn run<S>(
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    principal: Option<Principal>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = shared.presence.next_connection();
    let anonymous = principal.is_none();
    let (identity, scopes) = match principal {
        Some(p) => (p.subject, p.scopes),
        None => (
            format!("anonymous-{connection}"),
            super::auth::Scopes::all(),
        ),
    };
    let mut caller = Arc::new(Caller {
        connection,
        identity,
        scopes,
    });
    shared.presence.join(Agent {
        connection,
        identity: caller.identity.clone(),
        client_name: None,
        client_version: None,
        capabilities: Vec::new(),
        connected_at: now_ms(),
    });
    info!(connection, identity = %caller.identity, "agent connected");
    let mut s = Session {
        ws,
        shared: shared.clone(),
        bucket: TokenBucket::new(
            shared.settings.rate_per_sec,
            shared.settings.burst,
            Instant::now(),
        ),
        inflight: HashMap::new(),
        subscriptions: HashSet::new(),
        tracker: TaskTracker::new(),
        done_tx: mpsc::unbounded_channel().0,
        anonymous,
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    s.done_tx = done_tx;
    let mut changes = shared.presence.subscribe_changes();
    let close_code = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break CloseCode::Away,
            Some(done) = done_rx.recv() => {
                if s.write_done(done, &mut done_rx).await.is_err() { break CloseCode::Abnormal; }
            }
            change = changes.recv() => {
                let uris: Vec<String> = match change {
                    Ok(uri) => s.subscriptions.contains(&*uri).then(|| uri.to_string()).into_iter().collect(),
                    // Fell behind: say that everything subscribed may have changed.
                    Err(broadcast::error::RecvError::Lagged(_)) => s.subscriptions.iter().cloned().collect(),
                    Err(broadcast::error::RecvError::Closed) => Vec::new(),
                };
                for uri in uris {
                    let n = rpc::notification("notifications/resources/updated", json!({"uri": uri}));
                    if s.ws.send(Frame::text(n)).await.is_err() { break; }
                }
            }
            frame = s.ws.next() => match frame {
                None | Some(Ok(Frame::Close(_))) => break CloseCode::Normal,
                Some(Err(e)) => { debug!(connection, error = %e, "connection ended"); break CloseCode::Abnormal; }
                Some(Ok(Frame::Text(text))) => {
                    if let Some(new_caller) = s.handle_text(text.as_str(), &caller).await {
                        caller = new_caller;
                    }
                }
                Some(Ok(Frame::Binary(_))) => {
                    let e = RpcError::new(rpc::INVALID_REQUEST, "binary frames are not accepted: send JSON-RPC as WebSocket text frames");
                    s.reply(rpc::error(&Value::Null, &e)).await;
                }
                Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
            }
        }
    };
    s.tracker.close();
    if close_code != CloseCode::Away {
        // The client left: nobody is waiting for the answers, so in-flight calls
        // (a 30 s long-poll, say) stop now instead of holding the slot.
        for token in s.inflight.values() {
            token.cancel();
        }
    }
    // Shutdown drains: no new requests; in-flight ones finish (bounded) and their answers are written.
    let drain = tokio::time::sleep(DRAIN_TIMEOUT);
    tokio::pin!(drain);
    if close_code == CloseCode::Away {
        loop {
            tokio::select! {
                Some(done) = done_rx.recv() => { if s.write_done(done, &mut done_rx).await.is_err() { break; } }
                _ = s.tracker.wait() => {
                    while let Ok(done) = done_rx.try_recv() {
                        if s.write_done(done, &mut done_rx).await.is_err() { break; }
                    }
                    break;
                }
                _ = &mut drain => { warn!(connection, pending = s.inflight.len(), "drain timed out"); break; }
            }
        }
    }
    if close_code != CloseCode::Abnormal {
        // After the client's Close this sends the reply tungstenite queued; on shutdown, ours (1001).
        let _ =
            s.ws.close(Some(CloseFrame {
                code: close_code,
                reason: "".into(),
            }))
            .await;
    }
    for token in s.inflight.values() {
        token.cancel();
    }
    shared.presence.leave(connection);
    info!(connection, identity = %caller.identity, "agent disconnected");
}

struct Session<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    /// This connection's own rate limit (the original shared one bucket between all).
    bucket: TokenBucket,
    /// Spawned requests by id, so `notifications/cancelled` can stop them.
    inflight: HashMap<String, CancellationToken>,
    /// URIs this session subscribed to; resource changes are filtered by them.
    subscriptions: HashSet<String>,
    /// Spawned requests, waited for on drain.
    tracker: TaskTracker,
    /// Where spawned requests send their answers (this task writes them).
    done_tx: mpsc::UnboundedSender<Done>,
    /// `--open`: the identity comes from clientInfo at initialize.
    anonymous: bool,
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn reply(&mut self, text: String) {
        if let Err(e) = self.ws.send(Frame::text(text)).await {
            debug!(error = %e, "write failed");
        }
    }

    /// Writes one answer and any others already waiting, then flushes once.
    async fn write_done(
        &mut self,
        first: Done,
        rx: &mut mpsc::UnboundedReceiver<Done>,
    ) -> Result<(), ()> {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(done) = next.take() {
            self.inflight.remove(&done.key);
            if let Some(text) = done.text {
                self.ws.feed(Frame::text(text)).await.map_err(drop)?;
            }
            n += 1;
            if n < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        self.ws.flush().await.map_err(drop)
    }

    /// One text frame. Returns a new caller when `initialize` changed who this is.
    async fn handle_text(&mut self, text: &str, caller: &Arc<Caller>) -> Option<Arc<Caller>> {
        let start = Instant::now();
        let max = self.shared.settings.max_message_bytes;
        if text.len() > max {
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            let e = RpcError::new(
                rpc::TOO_LARGE,
                format!(
                    "message is {} bytes; this hub accepts at most {max}",
                    text.len()
                ),
            )
            .with_data(json!({"maxBytes": max, "aixpStatus": AixpStatus::DATA_FORMAT}));
            self.reply(rpc::error(&id, &e)).await;
            return None;
        }
        let msg: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let e = RpcError::new(rpc::PARSE_ERROR, format!("parse error: {e}"));
                self.reply(rpc::error(&Value::Null, &e)).await;
                return None;
            }
        };
        let Value::Object(obj) = msg else {
            let what = if msg.is_array() {
                "batches are not supported (removed from MCP in 2025-06-18)"
            } else {
                "a JSON-RPC message must be an object"
            };
            self.reply(rpc::error(
                &Value::Null,
                &RpcError::new(rpc::INVALID_REQUEST, what),
            ))
            .await;
            return None;
        };
        let id = obj.get("id").cloned();
        let method = match obj.get("method") {
            Some(Value::String(m)) => m.as_str(),
            Some(_) => {
                let e = RpcError::new(rpc::INVALID_REQUEST, "`method` must be a string");
                self.reply(rpc::error(&id.unwrap_or(Value::Null), &e)).await;
                return None;
            }
            // A response: the hub sends no requests, so there is nothing to match it to.
            None if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) => {
                return None;
            }
            None => {
                let e = RpcError::new(rpc::INVALID_REQUEST, "not a JSON-RPC request: no `method`");
                self.reply(rpc::error(&id.unwrap_or(Value::Null), &e)).await;
                return None;
            }
        };
        let empty = json!({});
        let params = obj.get("params").unwrap_or(&empty);
        let Some(id) = id else {
            self.notification(method, params);
            return None;
        };
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            let e = RpcError::new(rpc::INVALID_REQUEST, "`id` must be a string or an integer");
            self.reply(rpc::error(&Value::Null, &e)).await;
            return None;
        }
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            let e = RpcError::new(rpc::INVALID_REQUEST, "`jsonrpc` must be \"2.0\"");
            self.reply(rpc::error(&id, &e)).await;
            return None;
        }
        if !params.is_object() {
            let e = RpcError::invalid_params("`params` must be an object");
            self.reply(rpc::error(&id, &e)).await;
            return None;
        }
        let tool = if method == "tools/call" {
            params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        } else {
            String::new()
        };
        if let Err(limited) = self.bucket.try_take(Instant::now()) {
            let e = RpcError::new(rpc::RATE_LIMITED, limited.to_string())
                .with_data(json!({"aixpStatus": AixpStatus::COMMUNICATION, "retryAfterMs": limited.retry_after.as_millis().max(1) as u64, "ratePerSec": limited.rate_per_sec, "burst": limited.burst}));
            self.shared
                .metrics
                .call(method, &tool, "rate_limited", start.elapsed().as_secs_f64());
            self.reply(rpc::error(&id, &e)).await;
            return None;
        }

        let mut new_caller = None;
        let inline: Option<Result<Value, RpcError>> = match method {
            "initialize" => {
                let (result, c) = self.initialize(params, caller).await;
                new_caller = Some(c);
                Some(Ok(result))
            }
            "ping" | "logging/setLevel" => Some(Ok(json!({}))),
            "tools/list" => Some(Ok(tools::list())),
            "resources/list" => Some(Ok(resources::list(caller))),
            "resources/templates/list" => Some(Ok(resources::templates())),
            "prompts/list" => Some(Ok(prompts::list())),
            "prompts/get" => Some(prompts::get(params)),
            "resources/subscribe" | "resources/unsubscribe" => {
                Some(self.subscription(method, params, caller))
            }
            "tools/call" | "resources/read" => None,
            other => Some(Err(RpcError::new(
                rpc::METHOD_NOT_FOUND,
                format!("method not found: {other}"),
            ))),
        };
        if let Some(result) = inline {
            let (text, outcome) = match result {
                Ok(r) => {
                    let outcome = outcome_of(&r);
                    (rpc::response(&id, r), outcome)
                }
                Err(e) => (rpc::error(&id, &e), e.outcome()),
            };
            self.shared
                .metrics
                .call(method, &tool, outcome, start.elapsed().as_secs_f64());
            self.reply(text).await;
            return new_caller;
        }

        // Spawned: runs concurrently with the requests after it on this connection.
        let key = id_key(&id);
        let cancel = CancellationToken::new();
        self.inflight.insert(key.clone(), cancel.clone());
        let shared = self.shared.clone();
        let caller = caller.clone();
        let params = params.clone();
        let method = method.to_owned();
        let done_tx = self.done_tx.clone();
        self.tracker.spawn(async move {
            let work = async {
                match method.as_str() {
                    "tools/call" => tools::call(&shared, &caller, &params).await,
                    _ => resources::read(&shared, &caller, &params).await,
                }
            };
            let text = tokio::select! {
                r = work => {
                    let (text, outcome) = match r {
                        Ok(v) => {
                            let outcome = outcome_of(&v);
                            (rpc::response(&id, v), outcome)
                        }
                        Err(e) => (rpc::error(&id, &e), e.outcome()),
                    };
                    shared.metrics.call(&method, &tool, outcome, start.elapsed().as_secs_f64());
                    Some(text)
                }
                _ = cancel.cancelled() => None,
            };
            let _ = done_tx.send(Done { key, text });
        });
        None
    }

    fn notification(&mut self, method: &str, params: &Value) {
        match method {
            "notifications/cancelled" => {
                if let Some(id) = params.get("requestId")
                    && let Some(token) = self.inflight.get(&id_key(id))
                {
                    debug!(request = %id, "cancelled by the client");
                    token.cancel();
                }
            }
            "notifications/initialized" | "notifications/roots/list_changed" => {}
            other => debug!(method = other, "notification ignored"),
        }
    }

    fn subscription(
        &mut self,
        method: &str,
        params: &Value,
        caller: &Caller,
    ) -> Result<Value, RpcError> {
        let uri = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params(format!("{method} needs a string `uri`")))?;
        resources::resolve(caller, uri)?;
        if method == "resources/subscribe" {
            self.subscriptions.insert(uri.to_owned());
        } else {
            self.subscriptions.remove(uri);
        }
        Ok(json!({}))
    }

    /// Negotiates the version, records client and capabilities, answers.
    async fn initialize(&mut self, params: &Value, caller: &Arc<Caller>) -> (Value, Arc<Caller>) {
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = SUPPORTED_VERSIONS
            .iter()
            .find(|v| **v == requested)
            .copied()
            .unwrap_or(SUPPORTED_VERSIONS[0]);
        let client_name = params
            .pointer("/clientInfo/name")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(64).collect::<String>());
        let client_version = params
            .pointer("/clientInfo/version")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(64).collect::<String>());
        let capabilities: Vec<String> = params
            .pointer("/_meta")
            .and_then(|m| m.get(AGENT_META_KEY))
            .and_then(|a| a.get("capabilities"))
            .and_then(Value::as_array)
            .map(|caps| {
                caps.iter()
                    .filter_map(Value::as_str)
                    .map(|c| {
                        c.trim()
                            .chars()
                            .take(MAX_CAPABILITY_LEN)
                            .collect::<String>()
                    })
                    .filter(|c| !c.is_empty())
                    .take(MAX_CAPABILITIES)
                    .collect()
            })
            .unwrap_or_default();
        let mut new = (**caller).clone();
        // --open: no token names the agent, so the client does, made unique by the connection number.
        if self.anonymous {
            let base: String = client_name
                .as_deref()
                .unwrap_or("anonymous")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            new.identity = format!("{base}-{}", new.connection);
        }
        let agent = self.shared.presence.update(new.connection, |a| {
            a.identity = new.identity.clone();
            a.client_name = client_name.clone();
            a.client_version = client_version.clone();
            a.capabilities = capabilities.clone();
        });
        info!(connection = new.connection, identity = %new.identity, client = ?client_name, ?capabilities, version, "initialized");
        if agent.is_some() {
            let rec = AgentRecord {
                identity: new.identity.clone(),
                client_name,
                client_version,
                capabilities: capabilities.clone(),
                last_seen: now_ms(),
            };
            if let Err(e) = tools::with_store(&self.shared, move |s| s.agent_seen(&rec)).await {
                warn!(error = %e, "recording the agent failed");
            }
        }
        let result = json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": false},
                "resources": {"subscribe": true, "listChanged": false},
                "prompts": {"listChanged": false},
                "logging": {}
            },
            "serverInfo": {"name": "aicp-bridge-hub", "title": "AICP local hub", "version": env!("CARGO_PKG_VERSION")},
            "instructions": format!(
                "You are connected to an AICP hub as `{}` (capabilities: {}). Share context with share_context, \
                 see who is here with list_agents, hand work to others with route_to_agent, send_message or \
                 orchestrate_collaboration, and read what others sent you with read_inbox.",
                new.identity,
                if capabilities.is_empty() { "none declared".to_owned() } else { capabilities.join(", ") }
            ),
        });
        (result, Arc::new(new))
    }
}

fn outcome_of(result: &Value) -> &'static str {
    if result.get("isError") == Some(&Value::Bool(true)) {
        "tool_error"
    } else {
        "ok"
    }
}
