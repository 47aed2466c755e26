//! The relay session: one loop between the host (stdio) and the upstream task.
//!
//! Like rmcp's service loop, it is one `select!` over an event stream with a
//! map of pending requests keyed by id. Unlike rmcp, it never types payloads:
//! each message is classified by its envelope ([`aicp_proto::wire`]) and its
//! original text is forwarded, so ids, unknown fields, progress tokens and
//! the hub's protocol version reach the other side unchanged. The relay
//! changes a message only for a stated reason:
//! - the host's `ping` is answered here (real hubs answer it with -32601);
//! - invalid or oversized host lines are refused here, with the right id,
//!   and never reach the hub (real hubs close the socket on them);
//! - the hub's slips are repaired by the rules in [`crate::relay::normalize`];
//! - while the hub is down, [`crate::relay::offline`] answers;
//! - requests pending when a connection drops fail at once, naming the cause,
//!   and are never replayed on the next connection (they may have side effects).
//!
//! Order is kept in both directions: one task writes stdout, one writes the
//! socket, and this loop is the only producer for both. So a hub's progress
//! notifications reach the host before the response they belong to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{ServeConfig, redact_url};
use crate::guard::envelope;
use crate::guard::{self, Guard, Now, Outcome};
use crate::relay::host::{self, Line, LineReader};
use crate::relay::list_cache::ListCache;
use crate::relay::normalize;
use crate::relay::offline;
use crate::relay::upstream::{self, HubError, HubEvent, Outgoing};
use crate::relay::validate;
use crate::state::Live;
use aicp_proto::aixp::AixpStatus;
use aicp_proto::codes;
use aicp_proto::meta::{AGENT_META_KEY, AUTH_META_KEY};
use aicp_proto::wire::{self, Id, Kind, Method};

/// After the host closes stdin, answers already on their way are still
/// delivered for this long; then the bridge closes the hub connection and exits.
pub const EOF_DRAIN: Duration = Duration::from_millis(500);

/// Runs the relay until the host closes its input or `shutdown` fires, then
/// closes the hub connection with code 1000 and flushes what the host is owed.
pub async fn run<R, W>(
    cfg: &ServeConfig,
    input: R,
    output: W,
    live: Arc<Live>,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // The hub task gets its own token: it must close the socket only after
    // this loop has finished handing the host what it is owed.
    let hub_shutdown = CancellationToken::new();
    let link = upstream::spawn(cfg.hub.clone(), hub_shutdown.clone());

    let (host_tx, host_rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_host(input, cfg.max_host_message, host_tx));

    let (out_tx, out_rx) = mpsc::channel(256);
    let writer_shutdown = shutdown.clone();
    let writer = tokio::spawn(async move {
        let result = host::write_lines(output, out_rx).await;
        if result.is_err() {
            // Stdout is gone: the host is gone. Nothing left to serve.
            writer_shutdown.cancel();
        }
        result
    });

    let mut session = Session {
        out: out_tx,
        outbox: link.outbox,
        init_params: link.init_params,
        hub: HubState::Connecting,
        queue: Vec::new(),
        pending: HashMap::new(),
        progress: HashMap::new(),
        hub_requests: HashSet::new(),
        initialized_locally: false,
        hub_url: redact_url(&cfg.hub.url),
        max_host_message: cfg.max_host_message,
        request_timeout: cfg.request_timeout,
        strict: cfg.strict,
        lists: ListCache::new(cfg.limits.list_cache),
        list_waiters: HashMap::new(),
        read_only_tools: HashMap::new(),
        stranded: Vec::new(),
        guard: Guard::new(cfg.limits.clone(), cfg.origin.clone()),
        init_meta: init_meta(cfg),
        live,
    };
    session.run(host_rx, link.events, &shutdown).await;
    drop(session);

    hub_shutdown.cancel();
    let _ = timeout(Duration::from_secs(1), link.task).await;
    reader.abort();
    match timeout(Duration::from_secs(1), writer).await {
        Ok(Ok(Err(e))) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn read_host<R: AsyncBufRead + Unpin>(input: R, limit: usize, tx: mpsc::Sender<Line>) {
    let mut lines = LineReader::new(input, limit);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot read from the host; treating it as end of input");
                return;
            }
        }
    }
}

enum HubState {
    /// An attempt is in progress: host messages wait in the queue for it.
    Connecting,
    Up {
        generation: u64,
    },
    /// Requests are answered locally (see [`crate::relay::offline`]) until the next attempt.
    Down {
        cause: Arc<HubError>,
    },
}

struct Pending {
    method: Method,
    /// When the request times out; pushed back by each progress notification.
    deadline: Option<Instant>,
    progress_token: Option<String>,
    /// A `tools/call` the guard allowed: the guard must hear how it ended.
    guarded: bool,
    /// Still in the queue, waiting for a connection attempt.
    queued: bool,
    /// When its AIXP envelope expires: a queued call is dropped then, never sent late.
    expires: Option<Instant>,
    /// For `*/list` requests: where the answer goes in the list cache.
    cache_key: Option<String>,
}

struct Session {
    /// To the stdout writer task (bounded: a host that stops reading slows us down).
    out: mpsc::Sender<String>,
    /// To the hub task (unbounded: this loop must never wait on the hub while the hub waits on it).
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// The host's `initialize` params, which the hub task replays on reconnect.
    init_params: watch::Sender<Option<Arc<str>>>,
    hub: HubState,
    /// Host frames held during a connection attempt, with the request id if any.
    queue: Vec<(Option<Id>, String)>,
    /// Host requests the hub has not answered yet.
    pending: HashMap<Id, Pending>,
    /// Progress token (as JSON text) to the request it reports on.
    progress: HashMap<String, Id>,
    /// Hub requests to the host (sampling, roots, elicitation) awaiting the host's reply, by id.
    hub_requests: HashSet<Id>,
    /// The host's `initialize` was answered locally: announce `list_changed` once the hub is up.
    initialized_locally: bool,
    hub_url: String,
    max_host_message: usize,
    request_timeout: Option<Duration>,
    strict: bool,
    /// Added to the host's `initialize` params `_meta`: `aicp/agent` (capabilities)
    /// and, with `--token-in-initialize` only, `aicp/auth` (the token).
    init_meta: Vec<(&'static str, serde_json::Value)>,
    /// The loop guard every `tools/call` passes (docs/limits.md).
    guard: Guard,
    /// What the hub's `tools/list` answers declared: tool name to `readOnlyHint`.
    /// Learnt from every answer relayed (cached answers were relayed first).
    read_only_tools: HashMap<String, bool>,
    /// Recent `*/list` answers, reused for identical requests (a host flood guard).
    lists: ListCache,
    /// Identical list requests that arrived while the first was in flight, by cache key:
    /// they get its answer instead of going to the hub again.
    list_waiters: HashMap<String, Vec<Id>>,
    /// Waiters whose request ended without an answer (cancelled, timed out): told so after the event.
    stranded: Vec<Id>,
    /// Counters and connection state for the state file `status` reads.
    live: Arc<Live>,
}

impl Session {
    async fn run(
        &mut self,
        mut host: mpsc::Receiver<Line>,
        mut hub: mpsc::Receiver<HubEvent>,
        shutdown: &CancellationToken,
    ) {
        let mut draining: Option<Instant> = None;
        loop {
            if let Some(until) = draining
                && (self.pending.is_empty() || Instant::now() >= until)
            {
                return;
            }
            let wake = self.next_deadline().into_iter().chain(draining).min();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = hub.recv() => match event {
                    Some(event) => self.on_hub(event).await,
                    None => return,
                },
                line = host.recv(), if draining.is_none() => match line {
                    Some(line) => self.on_host(line).await,
                    None => {
                        debug!(pending = self.pending.len(), "host closed its input");
                        draining = Some(Instant::now() + EOF_DRAIN);
                    }
                },
                _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => self.expire().await,
            }
            for id in std::mem::take(&mut self.stranded) {
                let msg = "the identical list request this one was waiting on ended without an answer; ask again";
                self.send_host(wire::error_response(
                    Some(&id),
                    codes::HUB_UNAVAILABLE,
                    msg,
                    None,
                ))
                .await;
            }
        }
    }

    async fn send_host(&self, text: String) {
        // A send error means the writer is gone; it has already signalled shutdown.
        let _ = self.out.send(text).await;
    }

    fn send_hub(&mut self, id: Option<Id>, text: String) {
        match self.hub {
            HubState::Up { generation } => {
                let _ = self.outbox.send(Outgoing { generation, text });
            }
            HubState::Connecting => self.queue.push((id, text)),
            HubState::Down { .. } => debug!("hub down: dropped a host notification"),
        }
    }

    // ---- host → hub ----

    async fn on_host(&mut self, line: Line) {
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong { len, id } => {
                let msg = format!(
                    "message of {len} bytes exceeds the {}-byte limit (--max-message-bytes); it was not sent to the hub",
                    self.max_host_message
                );
                warn!(id = ?id, bytes = len, "refused an oversized host message");
                let data = json!({ "aixpStatus": AixpStatus::DATA_FORMAT, "limit": self.max_host_message, "size": len });
                return self
                    .send_host(wire::error_response(
                        id.as_ref(),
                        codes::INVALID_REQUEST,
                        &msg,
                        Some(data),
                    ))
                    .await;
            }
            Line::NotUtf8 { id } => {
                return self
                    .send_host(wire::error_response(
                        id.as_ref(),
                        codes::PARSE_ERROR,
                        "parse error: message is not UTF-8",
                        None,
                    ))
                    .await;
            }
        };
        if text.trim().is_empty() {
            return;
        }
        let action = match wire::parse_host(&text) {
            Err(invalid) => {
                warn!(error = %invalid, "refused an invalid host message");
                let id = match &invalid {
                    wire::Invalid::Request { id, .. } => id.clone(),
                    _ => wire::extract_id(text.as_bytes()),
                };
                return self
                    .send_host(wire::error_response(
                        id.as_ref(),
                        invalid.code(),
                        &invalid.to_string(),
                        None,
                    ))
                    .await;
            }
            Ok(msg) => HostAction::from(msg),
        };
        match action {
            HostAction::Request {
                id,
                method,
                name,
                params,
                progress_token,
            } => {
                self.host_request(id, method, &name, params, progress_token, text)
                    .await
            }
            HostAction::Cancel { id } => self.host_cancel(id, text),
            HostAction::Notification => self.send_hub(None, text),
            HostAction::Reply { id } => {
                if self.hub_requests.remove(&id) {
                    self.send_hub(None, text);
                } else {
                    warn!(%id, "dropped a host reply to a hub request that is unknown or from a lost connection");
                }
            }
        }
    }

    async fn host_request(
        &mut self,
        id: Id,
        method: Method,
        name: &str,
        params: Option<Box<RawValue>>,
        progress_token: Option<String>,
        text: String,
    ) {
        if method == Method::Ping {
            // Answered here: real hubs answer ping with -32601, and the host
            // wants to know the bridge is alive, which it is.
            return self.send_host(wire::response(&id, "{}")).await;
        }
        if self.pending.contains_key(&id) {
            let msg = format!("id {id} is already used by a request in flight");
            return self
                .send_host(wire::error_response(
                    Some(&id),
                    codes::INVALID_REQUEST,
                    &msg,
                    None,
                ))
                .await;
        }
        let mut text = text;
        if method == Method::Initialize {
            let mut init: Arc<str> = params.as_deref().map_or("{}", RawValue::get).into();
            if !self.init_meta.is_empty() {
                // Declare this user's agent, and the token for hubs that read it at
                // initialize (docs/relay.md, "What the bridge adds to initialize").
                init = with_meta(&init, &self.init_meta).into();
                text = wire::request(&id, "initialize", &init);
            }
            self.init_params.send_replace(Some(init));
        }
        if let HubState::Down { cause } = &self.hub {
            debug!(%id, method = name, "hub down: answering locally");
            if method == Method::Initialize {
                self.initialized_locally = true;
            }
            let reply = offline::answer(&id, method, params.as_deref(), cause, &self.hub_url);
            return self.send_host(reply).await;
        }
        debug!(%id, method = name, "host request");
        let now = Now::current();
        let mut pending = Pending {
            method,
            deadline: self.request_timeout.map(|t| now.mono + t),
            progress_token,
            guarded: false,
            queued: matches!(self.hub, HubState::Connecting),
            expires: None,
            cache_key: None,
        };
        if method.is_list() && self.lists.enabled() {
            let key = format!("{name}\n{}", params.as_deref().map_or("", RawValue::get));
            if self.list_from_cache(&id, &key, now).await {
                return;
            }
            pending.cache_key = Some(key);
        }
        if method == Method::ToolsCall
            && let Some(params) = params.as_deref()
        {
            match self.guard_call(&id, params, now) {
                Err(refusal) => return self.send_host(refusal).await,
                Ok(None) => {}
                Ok(Some((with_envelope, expires))) => {
                    pending.guarded = true;
                    pending.expires = Some(expires);
                    text = with_envelope;
                }
            }
        }
        if let Some(token) = &pending.progress_token {
            self.progress.insert(token.clone(), id.clone());
        }
        self.pending.insert(id.clone(), pending);
        self.send_hub(Some(id), text);
    }

    /// Answers a list request from the cache, or parks it behind an identical
    /// one in flight. `false`: it must go to the hub (and its answer fills the cache).
    async fn list_from_cache(&mut self, id: &Id, key: &str, now: Now) -> bool {
        if let Some(result) = self.lists.get(key, now.mono) {
            let reply = wire::response(id, result);
            self.guard.count_cached_list();
            self.live.record(self.guard.stats());
            self.send_host(reply).await;
            return true;
        }
        if let Some(waiters) = self.list_waiters.get_mut(key) {
            waiters.push(id.clone());
            self.guard.count_cached_list();
            return true;
        }
        self.list_waiters.insert(key.to_owned(), Vec::new());
        false
    }

    /// Puts a `tools/call` to the loop guard. `Err` is the refusal to send the
    /// host; `Ok(Some(..))` the request with its AIXP envelope, and when that
    /// envelope expires; `Ok(None)` params the guard cannot read (the hub will
    /// answer them with its own error).
    fn guard_call(
        &mut self,
        id: &Id,
        params: &RawValue,
        now: Now,
    ) -> Result<Option<(String, Instant)>, String> {
        let Some(call) = envelope::read_tool_call(params) else {
            return Ok(None);
        };
        // Unknown tools count as writes: only what the hub declared read-only is one.
        let read_only = self
            .read_only_tools
            .get(&call.tool)
            .copied()
            .unwrap_or(false);
        let call_info = call.guard_call(read_only);
        let decision = self.guard.check(now, &call_info);
        self.live.record(self.guard.stats());
        let envelope = decision.map_err(|refusal| {
            info!(%id, tool = %call.tool, limit = refusal.limit, current = refusal.current, "refused a call");
            envelope::refusal_result(id, &refusal)
        })?;
        let ttl = Duration::from_millis(envelope.expires_at.saturating_sub(now.wall_ms));
        // The guard counts the call in flight from here, so a call whose text
        // cannot be rewritten still goes out (without the envelope) and is finished normally.
        let text = envelope::with_envelope(id, params, &envelope)
            .unwrap_or_else(|| wire::request(id, "tools/call", params.get()));
        Ok(Some((text, now.mono + ttl)))
    }

    /// `notifications/cancelled` from the host: the hub still sees the same
    /// id it was sent. A request still queued is simply never sent.
    fn host_cancel(&mut self, id: Option<Id>, text: String) {
        if let Some(id) = &id {
            self.finish(id, Outcome::Abandoned);
            if let Some(at) = self
                .queue
                .iter()
                .position(|(queued, _)| queued.as_ref() == Some(id))
            {
                self.queue.remove(at);
                debug!(%id, "cancelled before it was sent");
                return;
            }
        }
        self.send_hub(None, text);
    }

    /// Removes a pending request; the guard hears how a call it allowed ended.
    fn finish(&mut self, id: &Id, outcome: Outcome) -> Option<Pending> {
        let pending = self.pending.remove(id)?;
        if let Some(token) = &pending.progress_token {
            self.progress.remove(token);
        }
        if pending.guarded {
            self.guard.finished(Now::current(), outcome);
        }
        if outcome != Outcome::Answered
            && let Some(waiters) = pending
                .cache_key
                .as_ref()
                .and_then(|k| self.list_waiters.remove(k))
        {
            self.stranded.extend(waiters);
        }
        Some(pending)
    }

    // ---- hub → host ----

    async fn on_hub(&mut self, event: HubEvent) {
        match event {
            HubEvent::Connecting => self.hub = HubState::Connecting,
            HubEvent::Up {
                generation,
                reinitialized,
            } => {
                self.hub = HubState::Up { generation };
                self.live.connected(true);
                self.lists.clear();
                // Anything past its expiry goes first, so that nothing is sent late.
                self.expire().await;
                for (id, text) in std::mem::take(&mut self.queue) {
                    if let Some(p) = id.and_then(|id| self.pending.get_mut(&id)) {
                        p.queued = false;
                    }
                    let _ = self.outbox.send(Outgoing { generation, text });
                }
                if reinitialized || std::mem::take(&mut self.initialized_locally) {
                    // The hub may have restarted with other tools: let the host look again.
                    info!(
                        "hub session (re)initialized; telling the host its lists may have changed"
                    );
                    for method in [
                        "notifications/tools/list_changed",
                        "notifications/resources/list_changed",
                        "notifications/prompts/list_changed",
                    ] {
                        self.send_host(wire::notification(method, None)).await;
                    }
                }
            }
            HubEvent::Down { cause, retry_in } => self.hub_down(cause, retry_in).await,
            HubEvent::Frame { generation, text } => match self.hub {
                HubState::Up {
                    generation: current,
                } if current == generation => self.hub_message(text).await,
                _ => debug!(generation, "dropped a frame from an earlier connection"),
            },
        }
    }

    /// The connection failed or could not be made: nothing pending can be answered by it.
    async fn hub_down(&mut self, cause: Arc<HubError>, retry_in: Duration) {
        self.lists.clear();
        let mut failure_counted = false;
        // Requests queued for the attempt that failed were never sent:
        // answer them as if the hub had been down when they came.
        for (id, text) in std::mem::take(&mut self.queue) {
            let Some(id) = id else { continue };
            self.lose(&id, &mut failure_counted);
            let Ok(msg) = wire::parse(&text, true) else {
                continue;
            };
            let Kind::Request { method, .. } = &msg.kind else {
                continue;
            };
            let method = Method::from_name(method);
            if method == Method::Initialize {
                self.initialized_locally = true;
            }
            let reply = offline::answer(&id, method, msg.params, &cause, &self.hub_url);
            self.send_host(reply).await;
        }
        // Requests already sent are lost with the connection.
        let ids: Vec<Id> = self.pending.keys().cloned().collect();
        for id in ids {
            self.lose(&id, &mut failure_counted);
            let message = format!(
                "connection to the AICP hub lost before it answered: {cause}. The request was not retried \
                 because it may have had side effects; check its effect before calling again"
            );
            let data = json!({ "aixpStatus": cause.aixp_status(), "retryInMs": retry_in.as_millis() as u64 });
            let reply =
                wire::error_response(Some(&id), codes::HUB_UNAVAILABLE, &message, Some(data));
            self.send_host(reply).await;
        }
        self.hub_requests.clear();
        self.live.connected(false);
        self.hub = HubState::Down { cause };
    }

    /// Ends a request lost with a connection. One lost connection is one hub
    /// failure for the breaker, however many calls it took along.
    fn lose(&mut self, id: &Id, failure_counted: &mut bool) {
        let guarded = self.pending.get(id).is_some_and(|p| p.guarded);
        let outcome = if guarded && !std::mem::replace(failure_counted, true) {
            Outcome::HubFailed
        } else {
            Outcome::Abandoned
        };
        self.finish(id, outcome);
    }

    async fn hub_message(&mut self, text: String) {
        if text.trim_start().starts_with('[') {
            // Normalisation: MCP has no batches since 2025-06-18; relay each element.
            match serde_json::from_str::<Vec<Box<RawValue>>>(&text) {
                Ok(items) => {
                    debug!(count = items.len(), "split a batch from the hub");
                    for item in items {
                        Box::pin(self.hub_message(item.get().to_owned())).await;
                    }
                }
                Err(e) => warn!(error = %e, "dropped an unreadable batch from the hub"),
            }
            return;
        }
        let (kind, reply, has_version) = match wire::parse(&text, false) {
            Err(e) => return warn!(error = %e, "dropped an unreadable message from the hub"),
            Ok(msg) => {
                let reply = self.read_reply(&msg);
                (HubKind::from(&msg), reply, msg.has_version)
            }
        };
        let text = if has_version {
            text
        } else {
            debug!(rule = ?normalize::Rule::MissingVersion, "normalised a hub message");
            normalize::add_version(&text)
        };
        match kind {
            HubKind::Response { id } => {
                let outcome = if reply.hub_failed {
                    Outcome::HubFailed
                } else {
                    Outcome::Answered
                };
                let Some(pending) = self.finish(&id, outcome) else {
                    return debug!(%id, "dropped a hub reply to an unknown or cancelled request");
                };
                if pending.guarded && !reply.hub_failed {
                    debug!(%id, aixp = %AixpStatus::DELIVERED, "call delivered and answered");
                }
                let mut out = match reply.fix {
                    ResultFix::Replace(result, rule) => {
                        info!(%id, rule = ?rule, "normalised a hub reply");
                        wire::response(&id, &result)
                    }
                    ResultFix::None => text,
                };
                let waiters = pending
                    .cache_key
                    .as_ref()
                    .and_then(|k| self.list_waiters.remove(k));
                for waiter in waiters.into_iter().flatten() {
                    let copy = match wire::parse(&out, false) {
                        Ok(wire::Message {
                            result: Some(r), ..
                        }) => wire::response(&waiter, r.get()),
                        Ok(wire::Message { error: Some(e), .. }) => {
                            wire::error_with(&waiter, e.get())
                        }
                        _ => continue,
                    };
                    self.send_host(copy).await;
                }
                if pending.method == Method::ToolsList
                    && let Some(result) = &reply.result
                {
                    for (tool, read_only) in envelope::read_only_hints(result) {
                        self.read_only_tools.insert(tool, read_only);
                    }
                }
                if let Some(result) = reply.result {
                    if let Some(key) = pending.cache_key {
                        self.lists.put(key, result, Instant::now());
                    } else if pending.guarded {
                        let guard = &mut self.guard;
                        if let Some(screened) =
                            envelope::screen_delivered(&result, Now::current(), |e, from, text| {
                                guard.learn(e, from, text)
                            })
                        {
                            out = wire::response(&id, &screened);
                        }
                    }
                }
                if self.strict
                    && let Err(why) = strict_check(pending.method, &out)
                {
                    warn!(%id, method = ?pending.method, "hub result {why}");
                }
                self.send_host(out).await;
            }
            HubKind::Orphan => {
                debug!("dropped a hub response without an id (an answer to a notification)")
            }
            HubKind::Request { id } => {
                self.hub_requests.insert(id);
                self.send_host(text).await;
            }
            HubKind::Progress { token } => {
                if let (Some(timeout), Some(id)) = (
                    self.request_timeout,
                    token.and_then(|t| self.progress.get(&t)),
                ) && let Some(p) = self.pending.get_mut(id)
                {
                    p.deadline = Some(Instant::now() + timeout);
                }
                self.send_host(text).await;
            }
            HubKind::Cancel { id } => {
                if let Some(id) = id {
                    self.hub_requests.remove(&id);
                }
                self.send_host(text).await;
            }
            HubKind::ListChanged => {
                self.lists.clear();
                self.send_host(text).await;
            }
            HubKind::Notification => self.send_host(text).await,
        }
    }

    /// Reads what the relay needs from a reply while the message is still
    /// borrowed: whether a normalisation rule applies, the result text when the
    /// list cache or the guard wants it, and whether the hub itself failed.
    fn read_reply(&self, msg: &wire::Message<'_>) -> Reply {
        let mut reply = Reply {
            fix: ResultFix::None,
            result: None,
            hub_failed: false,
        };
        let Kind::Response { id, is_error } = &msg.kind else {
            return reply;
        };
        let Some(pending) = self.pending.get(id) else {
            return reply;
        };
        if *is_error {
            reply.hub_failed = msg.error.is_some_and(|e| is_hub_failure(e.get()));
            if let Some((result, rule)) = normalize::error_to_result(pending.method) {
                reply.fix = ResultFix::Replace(result.to_owned(), rule);
            }
            return reply;
        }
        if pending.method == Method::PromptsGet
            && let Some(fixed) = msg.result.and_then(|r| normalize::prompt_result(r.get()))
        {
            reply.fix = ResultFix::Replace(fixed, normalize::Rule::BareStringPromptContent);
        }
        if pending.cache_key.is_some() || pending.guarded {
            reply.result = msg.result.map(|r| r.get().to_owned());
        }
        reply
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timeouts = self.request_timeout.is_some();
        let queued = !self.queue.is_empty();
        if !timeouts && !queued {
            return None;
        }
        self.pending
            .values()
            .flat_map(|p| {
                [
                    p.deadline.filter(|_| timeouts),
                    p.expires.filter(|_| p.queued),
                ]
            })
            .flatten()
            .min()
    }

    async fn expire(&mut self) {
        let now = Instant::now();
        // Queued calls past their AIXP expiry: dropped, never sent late.
        let stale: Vec<Id> = self
            .pending
            .iter()
            .filter(|(_, p)| p.queued && p.expires.is_some_and(|e| e <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            warn!(%id, "a queued call expired before the hub could take it");
            self.queue
                .retain(|(queued, _)| queued.as_ref() != Some(&id));
            self.finish(&id, Outcome::Abandoned);
            let ttl = self.guard.limits().call_ttl.as_secs_f64();
            let refusal = guard::Refusal {
                aixp_status: AixpStatus::COMMUNICATION,
                limit: "call_ttl",
                limit_value: ttl,
                current: ttl,
                resets_in_ms: None,
                message: format!(
                    "aicp-bridge dropped this call unsent: the hub could not be reached within its {ttl} s \
                     time-to-live (call_ttl). It was not run. Try again if it is still wanted."
                ),
            };
            self.send_host(envelope::refusal_result(&id, &refusal))
                .await;
        }
        let expired: Vec<Id> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let secs = self.request_timeout.map_or(0.0, |t| t.as_secs_f64());
        for id in expired {
            warn!(%id, "request timed out");
            // Tell the hub to stop; a queued request is simply never sent.
            let cancel =
                json!({ "requestId": id.to_value(), "reason": "timed out in aicp-bridge" })
                    .to_string();
            // Timeouts count against the hub in the breaker.
            self.finish(&id, Outcome::HubFailed);
            self.host_cancel(
                Some(id.clone()),
                wire::notification("notifications/cancelled", Some(&cancel)),
            );
            let msg = format!(
                "no reply or progress from the AICP hub for {secs} s (--request-timeout); the request was cancelled"
            );
            let data = json!({ "aixpStatus": AixpStatus::COMMUNICATION, "timeoutSeconds": secs });
            self.send_host(wire::error_response(
                Some(&id),
                codes::REQUEST_TIMEOUT,
                &msg,
                Some(data),
            ))
            .await;
        }
    }
}

fn init_meta(cfg: &ServeConfig) -> Vec<(&'static str, serde_json::Value)> {
    let mut meta = Vec::new();
    if !cfg.capabilities.is_empty() {
        meta.push((AGENT_META_KEY, json!({ "capabilities": cfg.capabilities })));
    }
    if let Some(cred) = cfg
        .hub
        .credential
        .as_ref()
        .filter(|_| cfg.token_in_initialize)
    {
        use secrecy::ExposeSecret;
        meta.push((
            AUTH_META_KEY,
            json!({ "type": "bearer", "token": cred.token.expose_secret() }),
        ));
    }
    meta
}

fn with_meta(params: &str, entries: &[(&'static str, serde_json::Value)]) -> String {
    let mut params: serde_json::Value = serde_json::from_str(params).unwrap_or_else(|_| json!({}));
    if let Some(obj) = params.as_object_mut() {
        let meta = obj.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            for (key, value) in entries {
                meta.insert((*key).to_owned(), value.clone());
            }
        }
    }
    params.to_string()
}

fn strict_check(method: Method, response: &str) -> Result<(), String> {
    match wire::parse(response, false) {
        Ok(wire::Message {
            result: Some(result),
            ..
        }) => validate::check(method, result.get()),
        _ => Ok(()),
    }
}

/// What to do with a host message, extracted so the borrowed parse can end
/// before the text is moved on.
enum HostAction {
    Request {
        id: Id,
        method: Method,
        name: String,
        params: Option<Box<RawValue>>,
        progress_token: Option<String>,
    },
    Cancel {
        id: Option<Id>,
    },
    Notification,
    Reply {
        id: Id,
    },
}

impl From<wire::Message<'_>> for HostAction {
    fn from(msg: wire::Message<'_>) -> HostAction {
        match msg.kind {
            Kind::Request { id, method } => {
                let m = Method::from_name(&method);
                // Params are kept only where the relay reads them (initialize,
                // tools/call, list cache keys); only requests that mention a
                // progress token have their params parsed here.
                let keep = matches!(m, Method::Initialize | Method::ToolsCall) || m.is_list();
                let params = keep.then(|| msg.params.map(|p| p.to_owned())).flatten();
                let progress_token = msg
                    .params
                    .filter(|p| p.get().contains("\"progressToken\""))
                    .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
                    .and_then(|p| p.pointer("/_meta/progressToken").map(|t| t.to_string()));
                HostAction::Request {
                    id,
                    method: m,
                    name: method.into_owned(),
                    params,
                    progress_token,
                }
            }
            Kind::Notification { method } if method == "notifications/cancelled" => {
                HostAction::Cancel {
                    id: request_id_param(msg.params),
                }
            }
            Kind::Notification { .. } => HostAction::Notification,
            Kind::Response { id, .. } => HostAction::Reply { id },
            Kind::OrphanResponse => HostAction::Notification,
        }
    }
}

fn request_id_param(params: Option<&RawValue>) -> Option<Id> {
    let params: serde_json::Value = serde_json::from_str(params?.get()).ok()?;
    Id::from_value(params.get("requestId")?)
}

/// Whether a hub error says the hub itself failed (internal or server
/// error), as opposed to a request it rightly refused (unknown method, bad params).
fn is_hub_failure(error: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(error)
        .ok()
        .and_then(|e| e.get("code").and_then(serde_json::Value::as_i64))
        .is_some_and(codes::is_server_failure)
}

struct Reply {
    fix: ResultFix,
    result: Option<String>,
    hub_failed: bool,
}

enum ResultFix {
    None,
    Replace(String, normalize::Rule),
}

enum HubKind {
    Response { id: Id },
    Orphan,
    Request { id: Id },
    Progress { token: Option<String> },
    Cancel { id: Option<Id> },
    ListChanged,
    Notification,
}

impl From<&wire::Message<'_>> for HubKind {
    fn from(msg: &wire::Message<'_>) -> HubKind {
        match &msg.kind {
            Kind::Response { id, .. } => HubKind::Response { id: id.clone() },
            Kind::OrphanResponse => HubKind::Orphan,
            Kind::Request { id, .. } => HubKind::Request { id: id.clone() },
            Kind::Notification { method } if method == "notifications/progress" => {
                HubKind::Progress {
                    token: msg
                        .params
                        .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
                        .and_then(|p| p.get("progressToken").map(|t| t.to_string())),
                }
            }
            Kind::Notification { method } if method == "notifications/cancelled" => {
                HubKind::Cancel {
                    id: request_id_param(msg.params),
                }
            }
            Kind::Notification { method } if method.ends_with("/list_changed") => {
                HubKind::ListChanged
            }
            Kind::Notification { .. } => HubKind::Notification,
        }
    }
}
