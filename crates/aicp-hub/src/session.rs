//! One MCP connection. This task owns the WebSocket: it reads frames, answers
//! cheap methods inline, spawns `tools/call` and `resources/read` so pipelined
//! requests run concurrently, and writes every answer and notification that
//! comes back through its channel. Bad input (unparseable, oversized, binary,
//! not JSON-RPC) gets a JSON-RPC error carrying the request's id when one can
//! be found, and the connection lives on. Notifications are never answered.
//!
//! Everything a client can grow here is bounded: every text or binary frame
//! takes a token from the connection's bucket (a sustained flood ends the
//! connection with 1008), requests in flight, subscriptions, id and answer
//! sizes have named limits, and answers leave through a bounded queue written
//! by this task alone: while an answer cannot be written, no new frame is
//! read (backpressure instead of buffering). The hub pings every
//! `--keepalive`; a peer silent for two intervals is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use aicp_proto::aixp::AixpStatus;
// Where the bridge declares its user's capabilities in `initialize` params `_meta`.
use super::auth::Principal;
use super::limits::{RateLimited, TokenBucket};
use super::presence::Agent;
use super::rpc::{self, ErrorData, ErrorDataExt};
use super::store::AgentRecord;
use super::{
    ANSWER_LIMIT_FACTOR, Caller, DRAIN_TIMEOUT, HARD_FRAME_LIMIT_FACTOR, Shared, now_ms, prompts,
    resources, tools,
};
use aicp_proto::codes;
use aicp_proto::meta::AGENT_META_KEY;
use aicp_proto::wire::{self, Id, Kind};

/// Protocol versions the hub speaks, newest first. A client asking for
/// another gets the newest, and decides (MCP version negotiation).
pub(crate) const SUPPORTED_VERSIONS: &[&str] =
    &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Most capabilities one agent may declare, and the longest name kept.
const MAX_CAPABILITIES: usize = 32;
const MAX_CAPABILITY_LEN: usize = 64;
/// Answers written before one flush: pipelined replies leave in few TCP segments.
const WRITE_BATCH: usize = 64;
/// Requests one connection may have running at once (`tools/call`, `resources/read`);
/// each holds a task and, once done, its answer until written. More get an error.
pub(crate) const MAX_INFLIGHT: usize = 64;
/// URIs one connection may subscribe to; each is kept for the connection's life.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 64;
/// Longest request id, in bytes of JSON: an id is kept while its request runs and echoed in the answer.
pub(crate) const MAX_ID_BYTES: usize = 256;
/// Finished answers waiting for this task to write them. When full, spawned
/// requests wait to hand theirs over; the answers in memory stay bounded by
/// `MAX_INFLIGHT`, and the socket is not read while a write is blocked.
const OUTGOING_QUEUE: usize = 16;
/// Frames over the rate limit, in a row, that end the connection (× burst):
/// a client ignoring -32029 this long is flooding, not retrying.
const FLOOD_FACTOR: u32 = 2;
/// Pings unanswered (two intervals of silence) before a peer is considered gone.
const KEEPALIVE_MISSES: u32 = 2;
/// How long a close frame may take to leave; a peer that does not read loses it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, and how many bytes, the hub keeps reading after refusing a frame
/// and sending its close: closing a socket with unread input resets it, and
/// the reset can overtake the close frame the client should read.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// What a spawned request sends back to the session task.
struct Done {
    /// The request's id as text (the in-flight map's key).
    key: String,
    /// The message to write; None when the request was cancelled (no answer is sent).
    text: Option<String>,
}

/// Why the session loop ended, and so how the connection is closed.
enum End {
    /// Hub shutdown: drain in-flight calls, then close with 1001.
    Shutdown,
    /// The client closed (or the socket ended): answer its close.
    Peer,
    /// Unusable: a write failed or the peer went silent; no close frame.
    Lost,
    /// The hub refuses what the client sent: close with this code and reason.
    Refuse(CloseCode, String),
}

pub(crate) async fn run<S>(
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
    joined(&shared, connection, &caller.identity, !anonymous).await;
    info!(connection, identity = %caller.identity, "agent connected");
    let keepalive = shared.settings.keepalive;
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(OUTGOING_QUEUE);
    let mut s = Session {
        ws,
        shared: shared.clone(),
        bucket: TokenBucket::new(
            shared.settings.rate_per_sec,
            shared.settings.burst,
            Instant::now(),
        ),
        over_limit: 0,
        limited: None,
        inflight: HashMap::new(),
        subscriptions: HashMap::new(),
        tracker: TaskTracker::new(),
        done_tx,
        anonymous,
        write_timeout: keepalive.map(|k| k * KEEPALIVE_MISSES),
        broken: false,
    };
    let mut changes = shared.presence.subscribe_changes();
    let mut pings = keepalive.map(|k| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + k, k);
        // After a long blocked write, one late tick, not a burst of them.
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let mut last_heard = Instant::now();
    let end = loop {
        if s.broken {
            break End::Lost;
        }
        tokio::select! {
            // In this order: answers are written before more frames are read (backpressure),
            // and frames already waiting are read before silence is judged.
            biased;
            _ = shutdown.cancelled() => break End::Shutdown,
            Some(done) = done_rx.recv() => {
                if s.write_done(done, &mut done_rx).await.is_err() { break End::Lost; }
            }
            change = changes.recv() => {
                let uris: Vec<String> = match change {
                    // Changes come in canonical form; the client is told in the spelling it subscribed with.
                    Ok(uri) => s.subscriptions.get(&*uri).cloned().into_iter().collect(),
                    // Fell behind: say that everything subscribed may have changed.
                    Err(broadcast::error::RecvError::Lagged(_)) => s.subscriptions.values().cloned().collect(),
                    Err(broadcast::error::RecvError::Closed) => Vec::new(),
                };
                for uri in uris {
                    let n = rpc::notification("notifications/resources/updated", json!({"uri": uri}));
                    if !s.send(Frame::text(n)).await { break; }
                }
            }
            frame = s.ws.next() => {
                // Any frame at all, a pong included, shows the peer is alive.
                last_heard = Instant::now();
                match frame {
                    None | Some(Ok(Frame::Close(_))) => break End::Peer,
                    Some(Err(WsError::Capacity(e))) => {
                        let hard = shared.settings.max_message_bytes.saturating_mul(HARD_FRAME_LIMIT_FACTOR);
                        info!(connection, error = %e, hard, "frame over the hard limit: closing with 1009");
                        break End::Refuse(CloseCode::Size, format!("frame over the hard limit of {hard} bytes"));
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        info!(connection, "text frame is not UTF-8: closing with 1007");
                        break End::Refuse(CloseCode::Invalid, "text frame is not valid UTF-8".into());
                    }
                    Some(Err(e)) => { debug!(connection, error = %e, "connection ended"); break End::Lost; }
                    Some(Ok(Frame::Text(text))) => {
                        if let Err(end) = s.admit() { break end; }
                        if let Some(new_caller) = s.handle_text(text.as_str(), &caller).await {
                            caller = new_caller;
                        }
                    }
                    Some(Ok(Frame::Binary(_))) => {
                        if let Err(end) = s.admit() { break end; }
                        let e = rpc::err(codes::INVALID_REQUEST, "binary frames are not accepted: send JSON-RPC as WebSocket text frames");
                        s.reject(&Value::Null, &e).await;
                    }
                    // Pings and pongs are not charged to the bucket: tungstenite answers pings
                    // itself, and pongs answer the hub's own keepalive pings.
                    Some(Ok(_)) => {}
                }
            }
            _ = tick(&mut pings) => {
                let k = keepalive.unwrap_or_default();
                if last_heard.elapsed() >= k * KEEPALIVE_MISSES {
                    info!(connection, silent_for_ms = last_heard.elapsed().as_millis() as u64, keepalive_ms = k.as_millis() as u64,
                        "no frame for {KEEPALIVE_MISSES} keepalive intervals: dropping the connection");
                    break End::Lost;
                }
                s.send(Frame::Ping(Default::default())).await;
            }
        }
    };
    s.tracker.close();
    let shutting_down = matches!(end, End::Shutdown);
    if !shutting_down {
        // The client left: nobody is waiting for the answers, so in-flight calls
        // (a 30 s long-poll, say) stop now instead of holding the slot.
        for token in s.inflight.values() {
            token.cancel();
        }
    }
    // Shutdown drains: no new requests; in-flight ones finish (bounded) and their answers are written.
    let drain = tokio::time::sleep(DRAIN_TIMEOUT);
    tokio::pin!(drain);
    if shutting_down {
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
    let close = match end {
        End::Shutdown => Some((CloseCode::Away, String::new())),
        // After the client's Close this sends the reply tungstenite queued.
        End::Peer => Some((CloseCode::Normal, String::new())),
        End::Lost => None,
        End::Refuse(code, reason) => Some((code, reason)),
    };
    if let Some((code, reason)) = close {
        let refused = !matches!(code, CloseCode::Away | CloseCode::Normal);
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.ws.close(Some(frame))).await;
        if refused {
            s.linger().await;
        }
    }
    for token in s.inflight.values() {
        token.cancel();
    }
    shared.presence.leave(connection);
    // Offline from now: list_agents shows when this identity was last here.
    let identity = caller.identity.clone();
    if let Err(e) = tools::with_store(&shared, move |s| s.agent_touched(&identity, now_ms())).await
    {
        warn!(error = %e, "recording when the agent left failed");
    }
    info!(connection, identity = %caller.identity, "agent disconnected");
}

/// A session joined `identity` (at connect, or again when `initialize`
/// renamed it): its inbox cursor starts at what is there now (so it is told
/// only about reads by other sessions from now on), and a known identity's
/// `last_seen` moves to now.
async fn joined(shared: &Arc<Shared>, connection: u64, identity: &str, known: bool) {
    let who = identity.to_owned();
    let seq = tools::with_store(shared, move |s| {
        if known {
            s.agent_touched(&who, now_ms())?;
        }
        s.last_seq(&who)
    })
    .await;
    match seq {
        Ok(seq) => shared.presence.start_looking(connection, seq),
        // Without a cursor the session is not told about other sessions' reads; it still reads its inbox.
        Err(e) => warn!(error = %e, "reading the inbox's position failed"),
    }
}

/// The next keepalive tick, or never when keepalive is off.
async fn tick(pings: &mut Option<tokio::time::Interval>) {
    match pings {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A write that may not hang longer than `limit`: a peer that lets the hub's
/// writes stall for two keepalive intervals is not reading, so it is gone.
async fn bounded<F>(limit: Option<Duration>, write: F) -> Result<(), ()>
where
    F: Future<Output = Result<(), WsError>>,
{
    match limit {
        Some(limit) => match tokio::time::timeout(limit, write).await {
            Ok(r) => r.map_err(drop),
            Err(_) => {
                info!(
                    limit_ms = limit.as_millis() as u64,
                    "a write stalled: the peer is not reading"
                );
                Err(())
            }
        },
        None => write.await.map_err(drop),
    }
}

struct Session<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    /// This connection's own rate limit (the original shared one bucket between all).
    /// Every text and binary frame takes a token, well-formed or not.
    bucket: TokenBucket,
    /// Frames refused by the bucket in a row; over `FLOOD_FACTOR` × burst ends the connection.
    over_limit: u32,
    /// Set while handling a frame the bucket refused: a request gets -32029,
    /// anything else (malformed input, notifications) is dropped unanswered.
    limited: Option<RateLimited>,
    /// Spawned requests by id, so `notifications/cancelled` can stop them (at most `MAX_INFLIGHT`).
    inflight: HashMap<String, CancellationToken>,
    /// URIs this session subscribed to; resource changes are filtered by them (at most `MAX_SUBSCRIPTIONS`).
    /// Canonical URI ([`crate::presence::canonical_uri`]) → the spelling the client used.
    subscriptions: HashMap<String, String>,
    /// Spawned requests, waited for on drain.
    tracker: TaskTracker,
    /// Where spawned requests send their answers (this task writes them); bounded by `OUTGOING_QUEUE`.
    done_tx: mpsc::Sender<Done>,
    /// `--open`: the identity comes from clientInfo at initialize.
    anonymous: bool,
    /// Longest a write may stall (two keepalive intervals); None when keepalive is off.
    write_timeout: Option<Duration>,
    /// A write failed or stalled: the loop ends without a close frame.
    broken: bool,
}

/// A request id as the in-flight map keys it: canonical JSON text, as the shared parser gives it.
fn id_key(id: &Value) -> String {
    Id::from_value(id).map_or_else(|| id.to_string(), |id| id.as_json().to_owned())
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Writes and flushes one frame; false (and the session ends) when the write failed or stalled.
    async fn send(&mut self, frame: Frame) -> bool {
        let ok = bounded(self.write_timeout, self.ws.send(frame))
            .await
            .is_ok();
        if !ok {
            debug!("write failed");
            self.broken = true;
        }
        ok
    }

    async fn reply(&mut self, text: String) {
        self.send(Frame::text(text)).await;
    }

    /// Answers malformed input with an error, unless the frame was over the
    /// rate limit: then it is dropped unanswered (and counted), so garbage
    /// cannot buy a reply per frame.
    async fn reject(&mut self, id: &Value, e: &ErrorData) {
        if self.limited.is_some() {
            self.shared.metrics.frames_dropped.inc();
            return;
        }
        self.reply(rpc::error(id, e)).await;
    }

    /// Charges one frame to the bucket. Over the limit the frame is still
    /// looked at (a request gets -32029 with its id), until the client has
    /// ignored the limit for `FLOOD_FACTOR` × burst frames in a row: then it ends.
    fn admit(&mut self) -> Result<(), End> {
        match self.bucket.try_take(Instant::now()) {
            Ok(()) => {
                self.over_limit = 0;
                self.limited = None;
                Ok(())
            }
            Err(limited) => {
                self.over_limit += 1;
                let most = FLOOD_FACTOR.saturating_mul(limited.burst);
                if self.over_limit > most {
                    self.shared.metrics.frames_dropped.inc();
                    warn!(
                        frames = self.over_limit,
                        rate_per_sec = limited.rate_per_sec,
                        burst = limited.burst,
                        "rate limit ignored: closing with 1008"
                    );
                    return Err(End::Refuse(
                        CloseCode::Policy,
                        format!(
                            "{most} frames in a row over the rate limit of {} calls/s (burst {})",
                            limited.rate_per_sec, limited.burst
                        ),
                    ));
                }
                self.limited = Some(limited);
                Ok(())
            }
        }
    }

    /// After refusing a frame: stop writing and read (and discard) what the
    /// client already sent, briefly and up to a bound, so the close frame
    /// arrives before the socket is torn down.
    async fn linger(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let raw = self.ws.get_mut();
        let _ = tokio::time::timeout(LINGER, async {
            let _ = raw.shutdown().await;
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0;
            while total < LINGER_BYTES {
                match raw.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
    }

    /// Writes one answer and any others already waiting, then flushes once.
    async fn write_done(&mut self, first: Done, rx: &mut mpsc::Receiver<Done>) -> Result<(), ()> {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(done) = next.take() {
            self.inflight.remove(&done.key);
            if let Some(text) = done.text {
                bounded(self.write_timeout, self.ws.feed(Frame::text(text))).await?;
            }
            n += 1;
            if n < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        bounded(self.write_timeout, self.ws.flush()).await
    }

    /// One text frame. Returns a new caller when `initialize` changed who this is.
    async fn handle_text(&mut self, text: &str, caller: &Arc<Caller>) -> Option<Arc<Caller>> {
        let start = Instant::now();
        let max = self.shared.settings.max_message_bytes;
        if text.len() > max {
            if self.limited.is_some() {
                // Over the rate limit: not worth parsing to find an id.
                self.shared.metrics.frames_dropped.inc();
                return None;
            }
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").cloned())
                // An id too long to keep is not echoed either.
                .filter(|id| id_key(id).len() <= MAX_ID_BYTES)
                .unwrap_or(Value::Null);
            let e = rpc::err(
                codes::TOO_LARGE,
                format!(
                    "message is {} bytes; this hub accepts at most {max}",
                    text.len()
                ),
            )
            .with_data(json!({"maxBytes": max, "aixpStatus": AixpStatus::DATA_FORMAT}));
            self.reject(&id, &e).await;
            return None;
        }
        // The envelope is read by the parser both ends share: the same rules
        // (and the same refusals) as the bridge applies to its host.
        let (id, method, params) = match wire::parse(text, true) {
            Ok(msg) => match msg.kind {
                Kind::Request { id, method } => (Some(id), method, msg.params),
                Kind::Notification { method } => (None, method, msg.params),
                // A response: the hub sends no requests, so there is nothing to match it to.
                Kind::Response { .. } | Kind::OrphanResponse => return None,
            },
            Err(invalid) => {
                let id = match &invalid {
                    wire::Invalid::Request { id, .. } => id.clone(),
                    _ => wire::extract_id(text.as_bytes()),
                }
                .filter(|id| id.as_json().len() <= MAX_ID_BYTES)
                .map_or(Value::Null, |id| id.to_value());
                let what = match &invalid {
                    wire::Invalid::Batch => {
                        "batches are not supported (removed from MCP in 2025-06-18)".to_owned()
                    }
                    other => other.to_string(),
                };
                self.reject(&id, &rpc::err(invalid.code(), what)).await;
                return None;
            }
        };
        // The envelope parse skipped over params; decoding them is the one full pass.
        let params: Value = match params.map(|p| serde_json::from_str(p.get())) {
            None => json!({}),
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                if let Some(id) = &id {
                    let e = rpc::err(codes::PARSE_ERROR, format!("parse error in params: {e}"));
                    self.reject(&id.to_value(), &e).await;
                }
                return None;
            }
        };
        let method = method.as_ref();
        let params = &params;
        let Some(id) = id else {
            if self.limited.is_some() {
                // Notifications are never answered; over the limit they are not acted on either.
                self.shared.metrics.frames_dropped.inc();
                return None;
            }
            self.notification(method, params);
            return None;
        };
        let key = id.as_json().to_owned();
        if key.len() > MAX_ID_BYTES {
            // Not echoed: the id is the thing that is too large.
            let e = rpc::err(
                codes::TOO_LARGE,
                format!(
                    "request id is {} bytes; this hub accepts ids of at most {MAX_ID_BYTES}",
                    key.len()
                ),
            )
            .with_data(json!({"maxBytes": MAX_ID_BYTES, "aixpStatus": AixpStatus::DATA_FORMAT}));
            self.reject(&Value::Null, &e).await;
            return None;
        }
        let id = id.to_value();
        if !params.is_object() {
            let e = rpc::invalid_params("`params` must be an object");
            self.reject(&id, &e).await;
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
        if let Some(limited) = self.limited.take() {
            let e = rpc::err(codes::RATE_LIMITED, limited.to_string())
                .with_data(json!({"aixpStatus": AixpStatus::COMMUNICATION, "retryAfterMs": limited.retry_after.as_millis().max(1) as u64, "ratePerSec": limited.rate_per_sec, "burst": limited.burst}));
            self.shared
                .metrics
                .call(method, &tool, "rate_limited", start.elapsed().as_secs_f64());
            self.reply(rpc::error(&id, &e)).await;
            return None;
        }
        if self.inflight.contains_key(&key) {
            // Answers are matched by id: a second request under a running one's id
            // would make both answers ambiguous and take over its cancellation.
            let e = rpc::err(
                codes::INVALID_REQUEST,
                format!("request id {key} is already in flight on this connection; use a new id"),
            );
            self.shared
                .metrics
                .call(method, &tool, e.outcome(), start.elapsed().as_secs_f64());
            self.reply(rpc::error(&id, &e)).await;
            return None;
        }

        let mut new_caller = None;
        let inline: Option<Result<Value, ErrorData>> = match method {
            "initialize" => {
                let (result, c) = self.initialize(params, caller).await;
                new_caller = Some(c);
                Some(Ok(result))
            }
            "ping" | "logging/setLevel" => Some(Ok(json!({}))),
            "tools/list" => Some(Ok(tools::list_for(&caller.scopes))),
            "resources/list" => Some(Ok(resources::list(caller))),
            "resources/templates/list" => Some(Ok(resources::templates())),
            "prompts/list" => Some(Ok(prompts::list())),
            "prompts/get" => Some(prompts::get(params)),
            "resources/subscribe" | "resources/unsubscribe" => {
                Some(self.subscription(method, params, caller))
            }
            "tools/call" | "resources/read" => None,
            other => Some(Err(rpc::err(
                codes::METHOD_NOT_FOUND,
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
        if self.inflight.len() >= MAX_INFLIGHT {
            let e = rpc::err(
                codes::LIMIT_REACHED,
                format!(
                    "{MAX_INFLIGHT} requests are already in flight on this connection (the limit); wait for their answers"
                ),
            )
            .with_data(json!({"limit": MAX_INFLIGHT, "aixpStatus": AixpStatus::COMMUNICATION}));
            self.shared
                .metrics
                .call(method, &tool, e.outcome(), start.elapsed().as_secs_f64());
            self.reply(rpc::error(&id, &e)).await;
            return None;
        }
        let answer_limit = self
            .shared
            .settings
            .max_message_bytes
            .saturating_mul(ANSWER_LIMIT_FACTOR);
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
                    let (text, outcome) = if text.len() > answer_limit {
                        (rpc::error(&id, &answer_too_large(&method, text.len(), answer_limit)), "error")
                    } else {
                        (text, outcome)
                    };
                    shared.metrics.call(&method, &tool, outcome, start.elapsed().as_secs_f64());
                    Some(text)
                }
                _ = cancel.cancelled() => None,
            };
            // Waits while the queue is full; fails only when the session is gone.
            let _ = done_tx.send(Done { key, text }).await;
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
    ) -> Result<Value, ErrorData> {
        let uri = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| rpc::invalid_params(format!("{method} needs a string `uri`")))?;
        resources::resolve(caller, uri)?;
        let canonical = crate::presence::canonical_uri(uri);
        if method == "resources/subscribe" {
            if self.subscriptions.len() >= MAX_SUBSCRIPTIONS
                && !self.subscriptions.contains_key(&canonical)
            {
                return Err(rpc::err(
                    codes::LIMIT_REACHED,
                    format!(
                        "this connection already has {MAX_SUBSCRIPTIONS} subscriptions (the limit); unsubscribe from one first"
                    ),
                )
                .with_data(json!({"limit": MAX_SUBSCRIPTIONS})));
            }
            self.subscriptions.insert(canonical, uri.to_owned());
        } else {
            self.subscriptions.remove(&canonical);
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
        // None: the client declared nothing (no `capabilities` key), so this
        // identity keeps what it declared before; a list, even empty, replaces it.
        let declared: Option<Vec<String>> = params
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
            });
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
            joined(&self.shared, new.connection, &new.identity, false).await;
        }
        // `stored_unread`: the stored capabilities could not be read, so this
        // session must not write its empty list over them.
        let (capabilities, stored_unread) = match declared {
            Some(caps) => (caps, false),
            None => {
                let who = new.identity.clone();
                match tools::with_store(&self.shared, move |s| s.agent(&who)).await {
                    Ok(rec) => (rec.map(|r| r.capabilities).unwrap_or_default(), false),
                    Err(e) => {
                        warn!(error = %e, "reading the stored capabilities failed; they are left as they are");
                        (Vec::new(), true)
                    }
                }
            }
        };
        let agent = self.shared.presence.update(new.connection, |a| {
            a.identity = new.identity.clone();
            a.client_name = client_name.clone();
            a.client_version = client_version.clone();
            a.capabilities = capabilities.clone();
        });
        info!(connection = new.connection, identity = %new.identity, client = ?client_name, ?capabilities, version, "initialized");
        if agent.is_some() && !stored_unread {
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
            "instructions": instructions(&new.identity, &capabilities),
        });
        (result, Arc::new(new))
    }
}

/// The server instructions: who the model is here, that work arrives in its
/// inbox and how to answer it, how to wait, and that offline people still get messages.
fn instructions(identity: &str, capabilities: &[String]) -> String {
    let caps = if capabilities.is_empty() {
        "none declared".to_owned()
    } else {
        capabilities.join(", ")
    };
    format!(
        "You are connected to an AICP hub as `{identity}` (capabilities: {caps}), where your teammates' \
         assistants send you work. At the start of a task, and when you finish one, call read_inbox: it returns \
         your unread messages, oldest first, and marks them read (peek: true only looks). Answer a message with \
         send_message(to = its from, reply_to = its id). To wait for an answer, call read_inbox with wait_ms 30000 \
         and repeat it until the answer arrives; do not send the request again. list_agents shows everyone the hub \
         knows: people shown offline still receive messages in their inbox. Share context with share_context and \
         read it with get_context or list_context; hand work to others with send_message, route_to_agent (picks \
         who declared the capability) or orchestrate_collaboration, and follow a plan with plan_status."
    )
}

/// The error that replaces an answer over the connection's answer limit: the
/// model reads it and asks for less.
fn answer_too_large(method: &str, bytes: usize, limit: usize) -> ErrorData {
    let narrower = if method == "resources/read" {
        "read aicp://context/{key} for one value instead of aicp://shared-state"
    } else {
        "narrow the request (ask for fewer or smaller items)"
    };
    rpc::err(
        codes::TOO_LARGE,
        format!("the answer is {bytes} bytes; this hub sends at most {limit}: {narrower}"),
    )
    .with_data(json!({"maxBytes": limit, "aixpStatus": AixpStatus::DATA_FORMAT}))
}

fn outcome_of(result: &Value) -> &'static str {
    if result.get("isError") == Some(&Value::Bool(true)) {
        "tool_error"
    } else {
        "ok"
    }
}
