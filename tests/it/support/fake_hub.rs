//! The fake hub: a scriptable MCP hub for tests of aicp-bridge (not the real hub, which is
//! `aicp-hub`). It speaks MCP (JSON-RPC 2.0) in WebSocket
//! text frames on 127.0.0.1, over ws or wss, records everything clients send (frames, upgrade
//! headers, close codes, cancellations) and can reproduce the deviations of real hubs
//! (`quirky`), hang after `initialize`, demand a bearer token, ping its clients, drop every
//! connection abruptly or stop and restart on the same port. It depends only on std, tokio,
//! tokio-util, serde_json, futures-util, tokio-tungstenite, rustls, tokio-rustls and rcgen, so
//! the same file can be included by tests, benchmarks and examples.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

/// Versions the normal hub negotiates; anything else is answered with the latest.
const SUPPORTED_VERSIONS: [&str; 2] = ["2025-06-18", "2025-11-25"];
const LATEST_VERSION: &str = "2025-11-25";
/// What quirky hubs answer whatever the client asked for.
const QUIRKY_VERSION: &str = "2024-11-05";
const MAX_MESSAGE: usize = 16 << 20;
/// Larger than a message may be, so an oversized single frame is read whole and can be
/// answered with a clean 1009 close instead of a reset with unread bytes in the socket.
const MAX_FRAME: usize = 64 << 20;
/// Quirky hubs close with 1009 on text frames larger than this.
const QUIRKY_MAX_FRAME: usize = 1_048_576;

type Outcome = Result<Value, (i64, String)>;

#[derive(Clone, Debug, Default)]
pub struct FakeHubOptions {
    /// Reproduce sloppy real-hub behaviour: see the `quirky` branches below.
    pub quirky: bool,
    /// Send a WS Ping this often and drop a client that sends no Pong within the same duration.
    pub ws_ping_every: Option<Duration>,
    /// Serve wss with this configuration (see [`test_tls`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The upgrade must carry `Authorization: Bearer <token>`, else HTTP 401.
    pub require_token: Option<String>,
    /// After answering `initialize`, never poll that socket again but keep it open.
    pub silent_after_init: bool,
    /// Accept the upgrade, then close the connection at once (a hub that is up but broken).
    pub close_after_upgrade: bool,
}

pub struct FakeHub {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    accept_task: Option<JoinHandle<()>>,
}

/// What the connection tasks record for the test to inspect.
#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Value>>,
    connections: AtomicUsize,
    upgrade_headers: Mutex<Vec<Vec<(String, String)>>>,
    close_frames: Mutex<Vec<Option<u16>>>,
    cancelled: Mutex<Vec<Value>>,
    /// Here rather than in the accept task so `drop_connections` can abort them from sync code.
    conns: Mutex<JoinSet<()>>,
    next_hub_request: AtomicU64,
    /// Messages waiting per agent name (`send_message`/`read_inbox`), across connections.
    inboxes: Mutex<HashMap<String, Vec<Value>>>,
    next_message: AtomicU64,
}

impl FakeHub {
    /// Starts a hub on a free port of 127.0.0.1.
    pub async fn start(opts: FakeHubOptions) -> FakeHub {
        Self::start_on(0, opts).await
    }

    /// Starts a hub on `port`, e.g. the port of a hub that was just stopped.
    pub async fn start_on(port: u16, opts: FakeHubOptions) -> FakeHub {
        let listener = bind(port).await;
        let addr = listener.local_addr().expect("test hub: local address");
        let shared = Arc::new(Shared::default());
        let shutdown = CancellationToken::new();
        let tls = opts.tls.is_some();
        let accept_task = tokio::spawn(accept_loop(
            listener,
            opts,
            shared.clone(),
            shutdown.clone(),
        ));
        FakeHub {
            addr,
            tls,
            shared,
            shutdown,
            accept_task: Some(accept_task),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name `localhost` for wss, because that is what the test certificate is checked against.
    pub fn url(&self) -> String {
        if self.tls {
            format!("wss://localhost:{}/mcp", self.port())
        } else {
            format!("ws://127.0.0.1:{}/mcp", self.port())
        }
    }

    /// Every text frame received so far, in order, over all connections; a frame that is not
    /// JSON is recorded as a JSON string holding the raw text.
    pub fn received(&self) -> Vec<Value> {
        lock(&self.shared.received).clone()
    }

    /// The first received frame (since the hub started) matching `pred`, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = lock(&self.shared.received).iter().find(|v| pred(v)) {
                return found.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "test hub: timed out after {timeout:?} waiting for {what}; received:\n{}",
                    self.received_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Upgrades accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The request headers of each upgrade attempt, rejected ones included; names are lowercase.
    pub fn upgrade_headers(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.shared.upgrade_headers).clone()
    }

    /// How clients ended their connections: the code of the close frame they sent (1005 for a
    /// close frame without a code), or None when the socket ended without one.
    pub fn close_frames(&self) -> Vec<Option<u16>> {
        lock(&self.shared.close_frames).clone()
    }

    /// Ids of requests that `notifications/cancelled` stopped while they were still running.
    pub fn cancelled(&self) -> Vec<Value> {
        lock(&self.shared.cancelled).clone()
    }

    /// Drops every current connection without a close frame; the hub keeps listening.
    pub fn drop_connections(&self) {
        lock(&self.shared.conns).abort_all();
    }

    /// Stops listening and drops every connection without a close frame; the port is free on
    /// return.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
        let mut conns = std::mem::take(&mut *lock(&self.shared.conns));
        conns.shutdown().await;
    }

    fn received_log(&self) -> String {
        let mut log = String::new();
        for frame in lock(&self.shared.received).iter() {
            let text = frame.to_string();
            // A 1 MiB frame in a panic message hides the useful lines.
            let short: String = text.chars().take(300).collect();
            let ellipsis = if short.len() < text.len() { "…" } else { "" };
            let _ = writeln!(log, "  {short}{ellipsis}");
        }
        log
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shutdown.cancel();
        lock(&self.shared.conns).abort_all();
    }
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it: the server
/// configuration to put in [`FakeHubOptions::tls`] and the CA certificate in PEM for clients to trust.
pub fn test_tls() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("test CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("test CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "aicp-bridge test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca_params
        .self_signed(&ca_key)
        .expect("test CA certificate")
        .pem();
    let ca = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("test server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("test server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &ca)
        .expect("test server certificate");

    // An explicit provider: the process-wide default may be unset or be another one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key_der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der.into())
        .expect("test server certificate matches its key");
    (Arc::new(config), ca_pem)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked holding a lock must not hide its message behind poison errors.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn bind(port: u16) -> TcpListener {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // A restarted hub may race the old socket's release.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = TcpSocket::new_v4().and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        });
        match attempt {
            Ok(listener) => return listener,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("test hub: cannot bind {addr}: {e}"),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    opts: FakeHubOptions,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let acceptor = opts.tls.clone().map(TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let conn = connection(tcp, acceptor.clone(), opts.clone(), shared.clone());
        let mut conns = lock(&shared.conns);
        conns.spawn(conn);
        while conns.try_join_next().is_some() {}
    }
    // A connection accepted while the hub was being dropped must not outlive it.
    lock(&shared.conns).abort_all();
}

async fn connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    opts: FakeHubOptions,
    shared: Arc<Shared>,
) {
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(tcp).await {
                upgrade(stream, opts, shared).await;
            }
        }
        None => upgrade(tcp, opts, shared).await,
    }
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    opts: FakeHubOptions,
    shared: Arc<Shared>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_FRAME));
    let callback = Upgrade {
        opts: opts.clone(),
        shared: shared.clone(),
    };
    if let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    {
        if opts.close_after_upgrade {
            close_with(&mut ws, 1011).await;
            return;
        }
        serve(ws, opts, shared).await;
    }
}

/// Records the upgrade request, checks the token and picks the subprotocol.
struct Upgrade {
    opts: FakeHubOptions,
    shared: Arc<Shared>,
}

impl Callback for Upgrade {
    fn on_request(self, req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        let headers = req
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        lock(&self.shared.upgrade_headers).push(headers);

        if let Some(token) = &self.opts.require_token {
            let expected = format!("Bearer {token}");
            let authorized = req
                .headers()
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == expected.as_bytes());
            if !authorized {
                let mut rejection =
                    ErrorResponse::new(Some("missing or wrong bearer token".to_owned()));
                *rejection.status_mut() = StatusCode::UNAUTHORIZED;
                rejection
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Err(rejection);
            }
        }

        let offers_mcp = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "mcp");
        // Quirky hubs ignore the offer, which strict clients treat as a failed handshake.
        if offers_mcp && !self.opts.quirky {
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("mcp"),
            );
        }
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        Ok(resp)
    }
}

/// What the read loop does after a client frame.
enum Next {
    Continue,
    Close(u16),
    /// `silent_after_init`: flush what is queued, then never touch the socket again.
    Freeze,
}

/// One connection's state shared with its request tasks.
struct Conn {
    shared: Arc<Shared>,
    quirky: bool,
    /// Every frame to the client goes through here, so one writer never interleaves frames.
    out: mpsc::UnboundedSender<Message>,
    /// Unanswered requests by JSON-serialized id, so `notifications/cancelled` can stop them.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// The hub's own requests to the client (`sample`, `roots`), by JSON-serialized id.
    awaiting_client: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Who this connection is: the clientInfo name from `initialize`.
    agent: Mutex<String>,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    opts: FakeHubOptions,
    shared: Arc<Shared>,
) {
    let (out, mut outbox) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        shared,
        quirky: opts.quirky,
        out,
        running: Mutex::default(),
        awaiting_client: Mutex::default(),
        agent: Mutex::default(),
    });
    // Dropping it when the connection ends aborts whatever request is still in flight.
    let mut requests = JoinSet::new();
    // Quirky hubs serve one request at a time, in order of arrival, while still reading.
    let queue = opts.quirky.then(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Value, CancellationToken)>();
        let conn = conn.clone();
        requests.spawn(async move {
            while let Some((req, cancel)) = rx.recv().await {
                conn.run_request(req, cancel).await;
            }
        });
        tx
    });
    let mut pinger = opts.ws_ping_every.map(|every| {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut awaiting_pong = false;
    let mut client_closed = false;

    loop {
        tokio::select! {
            Some(frame) = outbox.recv() => {
                if ws.send(frame).await.is_err() {
                    return;
                }
            }
            () = tick(pinger.as_mut()) => {
                if awaiting_pong {
                    return;
                }
                awaiting_pong = true;
                if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
            incoming = ws.next() => {
                let next = match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let silent = opts.silent_after_init;
                        conn.on_text(text.as_str(), &mut requests, queue.as_ref(), silent)
                    }
                    Some(Ok(Message::Binary(_))) => {
                        conn.protocol_error(-32600, "Invalid Request: binary frame")
                    }
                    Some(Ok(Message::Pong(_))) => {
                        awaiting_pong = false;
                        Next::Continue
                    }
                    Some(Ok(Message::Close(frame))) => {
                        client_closed = true;
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        lock(&conn.shared.close_frames).push(Some(code));
                        // Keep reading: that flushes tungstenite's answering close frame.
                        Next::Continue
                    }
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => Next::Continue,
                    // Over 16 MiB: answer like a real server rather than just vanishing.
                    Some(Err(WsError::Capacity(_))) => Next::Close(1009),
                    Some(Err(_)) | None => {
                        if !client_closed {
                            lock(&conn.shared.close_frames).push(None);
                        }
                        return;
                    }
                };
                match next {
                    Next::Continue => {}
                    Next::Close(code) => return close_with(&mut ws, code).await,
                    Next::Freeze => {
                        while let Ok(frame) = outbox.try_recv() {
                            let _ = ws.send(frame).await;
                        }
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

async fn tick(pinger: Option<&mut Interval>) {
    match pinger {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn close_with<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, code: u16) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::default(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_ok() {
        // Give the client time to answer, so it sees a complete closing handshake.
        let drain = async { while let Some(Ok(_)) = ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}

impl Conn {
    fn send(&self, message: Value) {
        // Fails only once the connection is gone, when nobody is left to tell.
        let _ = self.out.send(Message::text(message.to_string()));
    }

    fn on_text(
        self: &Arc<Self>,
        raw: &str,
        requests: &mut JoinSet<()>,
        queue: Option<&mpsc::UnboundedSender<(Value, CancellationToken)>>,
        silent_after_init: bool,
    ) -> Next {
        let parsed = serde_json::from_str::<Value>(raw);
        let recorded = parsed
            .as_ref()
            .map_or_else(|_| Value::String(raw.to_owned()), Value::clone);
        lock(&self.shared.received).push(recorded);

        if self.quirky && raw.len() > QUIRKY_MAX_FRAME {
            return Next::Close(1009);
        }
        let mut msg = match parsed {
            Ok(Value::Object(msg)) => msg,
            Ok(_) => {
                return self.protocol_error(
                    -32600,
                    "Invalid Request: batches and scalars are not supported",
                );
            }
            Err(e) => return self.protocol_error(-32700, &format!("Parse error: {e}")),
        };
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = msg.remove("id");
        match (method, id) {
            (Some(method), Some(id)) => {
                if silent_after_init && method == "initialize" {
                    let params = msg.get("params").cloned().unwrap_or_default();
                    self.send(response(&id, Ok(initialize_result(self.quirky, &params))));
                    return Next::Freeze;
                }
                let cancel = CancellationToken::new();
                lock(&self.running).insert(id.to_string(), cancel.clone());
                msg.insert("id".to_owned(), id);
                let req = Value::Object(msg);
                if let Some(queue) = queue {
                    let _ = queue.send((req, cancel));
                } else {
                    let conn = self.clone();
                    requests.spawn(async move { conn.run_request(req, cancel).await });
                    while requests.try_join_next().is_some() {}
                }
            }
            (Some(method), None) => {
                if method == "notifications/cancelled" {
                    self.cancel(msg.get("params").and_then(|p| p.get("requestId")));
                }
                if self.quirky {
                    let error = json!({"code": -32601, "message": "notifications not supported"});
                    self.send(json!({"jsonrpc": "2.0", "error": error}));
                }
            }
            (None, Some(id)) if msg.contains_key("result") || msg.contains_key("error") => {
                if let Some(waiter) = lock(&self.awaiting_client).remove(&id.to_string()) {
                    msg.insert("id".to_owned(), id);
                    let _ = waiter.send(Value::Object(msg));
                }
            }
            (None, id) => {
                let id = id.unwrap_or(Value::Null);
                self.send(response(
                    &id,
                    Err((
                        -32600,
                        "Invalid Request: no method, result or error".to_owned(),
                    )),
                ));
            }
        }
        Next::Continue
    }

    /// Malformed input: an error reply with a null id, or for quirky hubs a 1011 close.
    fn protocol_error(&self, code: i64, message: &str) -> Next {
        if self.quirky {
            return Next::Close(1011);
        }
        self.send(response(&Value::Null, Err((code, message.to_owned()))));
        Next::Continue
    }

    fn cancel(&self, request_id: Option<&Value>) {
        let Some(request_id) = request_id else { return };
        if let Some(cancel) = lock(&self.running).remove(&request_id.to_string()) {
            cancel.cancel();
            lock(&self.shared.cancelled).push(request_id.clone());
        }
    }

    async fn run_request(self: &Arc<Self>, req: Value, cancel: CancellationToken) {
        let id = req["id"].clone();
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            outcome = self.handle(&req) => Some(outcome),
        };
        // The entry is gone when a cancellation arrived, even one that lost the race above.
        let still_running = lock(&self.running).remove(&id.to_string()).is_some();
        let Some(outcome) = outcome.filter(|_| still_running) else {
            return;
        };
        self.send(response(&id, outcome));
        if req["method"] == "resources/subscribe" {
            let uri = req["params"]["uri"].clone();
            self.send(notification(
                "notifications/resources/updated",
                Some(json!({"uri": uri})),
            ));
        }
    }

    async fn handle(&self, req: &Value) -> Outcome {
        let method = req["method"].as_str().unwrap_or_default();
        let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
        let quirky = self.quirky;
        match method {
            "initialize" => {
                *lock(&self.agent) = params["clientInfo"]["name"]
                    .as_str()
                    .unwrap_or("anonymous")
                    .to_owned();
                Ok(initialize_result(quirky, &params))
            }
            "ping" if !quirky => Ok(json!({})),
            "server/discover" if !quirky => Ok(json!({
                "supportedVersions": ["2025-06-18", "2025-11-25", "2026-07-28"],
                "capabilities": capabilities(),
                "serverInfo": server_info(),
            })),
            "tools/list" => Ok(json!({"tools": tools(), "x-extra": 1})),
            "tools/call" => self.call_tool(&params).await,
            "resources/list" => Ok(json!({"resources": [
                {"uri": "aicp://shared-state", "name": "shared-state",
                 "mimeType": "application/json"},
            ]})),
            "resources/templates/list" => Ok(json!({"resourceTemplates": [
                {"uriTemplate": "aicp://context/{key}", "name": "context"},
            ]})),
            "resources/read" => read_resource(&params),
            "resources/subscribe" | "resources/unsubscribe" => Ok(json!({})),
            "prompts/list" => Ok(json!({"prompts": [
                {"name": "analyze_task", "arguments": [{"name": "task", "required": true}]},
            ]})),
            "prompts/get" => get_prompt(quirky, &params),
            "completion/complete" => Ok(json!({"completion": {
                "values": ["alpha", "alpine"], "total": 2, "hasMore": false,
            }})),
            // Quirky hubs advertise logging but do not implement it.
            "logging/setLevel" if !quirky => Ok(json!({})),
            "x/echo" => Ok(params),
            _ => Err((-32601, format!("Method not found: {method}"))),
        }
    }

    async fn call_tool(&self, params: &Value) -> Outcome {
        let name = params["name"].as_str().unwrap_or_default();
        let args = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        match name {
            "stamp" => Ok(json!({"content": [text_block("stamped")]})),
            "echo" => Ok(json!({
                "content": [text_block(args["text"].as_str().unwrap_or_default())],
                "structuredContent": {"echo": args},
            })),
            "slow" => {
                let ms = args["ms"].as_u64().unwrap_or(200);
                let steps = args["steps"].as_u64().unwrap_or(4);
                let gap = Duration::from_millis(ms / steps.max(1));
                let token = &params["_meta"]["progressToken"];
                for step in 1..=steps {
                    tokio::time::sleep(gap).await;
                    if !token.is_null() {
                        self.send(notification(
                            "notifications/progress",
                            Some(json!({
                                "progressToken": token,
                                "progress": step,
                                "total": steps,
                                "message": format!("step {step} of {steps}"),
                            })),
                        ));
                    }
                }
                Ok(text_result("done"))
            }
            "hang" => std::future::pending().await,
            "fail" => {
                Ok(json!({"content": [text_block("tool failed on purpose")], "isError": true}))
            }
            "sample" => {
                let params = json!({
                    "messages": [{"role": "user", "content": {"type": "text", "text": "say hi"}}],
                    "maxTokens": 10,
                });
                Ok(self.ask_client("s", "sampling/createMessage", params).await)
            }
            "roots" => Ok(self.ask_client("r", "roots/list", json!({})).await),
            "notify" => {
                self.send(notification(
                    "notifications/message",
                    Some(json!({"level": "info", "data": "hello from hub"})),
                ));
                self.send(notification("notifications/tools/list_changed", None));
                Ok(text_result("notified"))
            }
            // The original AICP hub's tool, enough for `aicp-bridge share` to be tested.
            "share_context" => Ok(json!({
                "content": [text_block(&format!("shared {}", args["context_key"].as_str().unwrap_or("?")))],
                "structuredContent": {"status": "shared", "context_key": args["context_key"]},
            })),
            // A hub failing internally: a protocol error, not a tool result.
            "crash" => Err((-32603, "internal error on purpose".to_owned())),
            "send_message" => {
                // AIXP: a delivered message is one hop further than the call that sent it.
                let env = &params["_meta"]["aicp/aixp"];
                let n = self.shared.next_message.fetch_add(1, Ordering::SeqCst) + 1;
                let id = format!("m-{n}");
                let message = json!({
                    "id": id,
                    "from": *lock(&self.agent),
                    "to": args["to"],
                    "text": args["text"],
                    "reply_to": args["reply_to"],
                    "aixp": {
                        "version": "aixp/1",
                        "id": id,
                        "hops": env["hops"].as_u64().unwrap_or(0) + 1,
                        "origin": env["origin"],
                        "expiresAt": env["expiresAt"],
                    },
                });
                let to = args["to"].as_str().unwrap_or_default().to_owned();
                lock(&self.shared.inboxes)
                    .entry(to)
                    .or_default()
                    .push(message);
                Ok(
                    json!({"content": [text_block(&format!("sent {id}"))], "structuredContent": {"message_id": id}}),
                )
            }
            "read_inbox" => {
                let me = lock(&self.agent).clone();
                let messages = lock(&self.shared.inboxes).remove(&me).unwrap_or_default();
                let body = json!({"messages": messages});
                Ok(json!({"content": [text_block(&body.to_string())], "structuredContent": body}))
            }
            "sloppy_frames" => {
                // Frames real hubs have been seen to send, each a known way to
                // break a host that reads one JSON-RPC message per line.
                let note = |n: u32| {
                    notification(
                        "notifications/message",
                        Some(json!({"level": "info", "data": n})),
                    )
                };
                let _ = self
                    .out
                    .send(Message::binary(note(1).to_string().into_bytes()));
                let _ = self.out.send(Message::text(
                    serde_json::to_string_pretty(&note(2)).unwrap(),
                ));
                let _ = self
                    .out
                    .send(Message::text(json!([note(3), note(4)]).to_string()));
                let mut bare = note(5);
                bare.as_object_mut().unwrap().remove("jsonrpc");
                self.send(bare);
                let _ = self.out.send(Message::binary(vec![0xff, 0xfe, 0x00]));
                let _ = self.out.send(Message::text("{ this is not json"));
                Ok(text_result("sloppy"))
            }
            "big" => {
                let bytes = args["bytes"].as_u64().unwrap_or(0);
                Ok(text_result(
                    &"x".repeat(usize::try_from(bytes).unwrap_or(usize::MAX)),
                ))
            }
            _ => Err((-32602, format!("Unknown tool: {name}"))),
        }
    }

    /// Sends the client a request and turns its answer into a tool result.
    async fn ask_client(&self, prefix: &str, method: &str, params: Value) -> Value {
        let n = self.shared.next_hub_request.fetch_add(1, Ordering::SeqCst) + 1;
        let id = Value::String(format!("hub-{prefix}-{n}"));
        let (tx, rx) = oneshot::channel();
        lock(&self.awaiting_client).insert(id.to_string(), tx);
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let Ok(answer) = rx.await else {
            return json!({"content": [text_block("connection closed")], "isError": true});
        };
        match answer.get("error") {
            Some(error) => {
                let message = error["message"].as_str().unwrap_or("client error");
                json!({"content": [text_block(message)], "isError": true})
            }
            None => text_result(&answer["result"].to_string()),
        }
    }
}

fn response(id: &Value, outcome: Outcome) -> Value {
    match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
}

fn notification(method: &str, params: Option<Value>) -> Value {
    match params {
        Some(params) => json!({"jsonrpc": "2.0", "method": method, "params": params}),
        None => json!({"jsonrpc": "2.0", "method": method}),
    }
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

fn text_result(text: &str) -> Value {
    json!({"content": [text_block(text)]})
}

fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": true},
        "logging": {},
        "completions": {},
    })
}

fn server_info() -> Value {
    json!({"name": "test-hub", "version": "1.0.0"})
}

fn initialize_result(quirky: bool, params: &Value) -> Value {
    let asked = params["protocolVersion"].as_str().unwrap_or_default();
    let version = if quirky {
        QUIRKY_VERSION
    } else if SUPPORTED_VERSIONS.contains(&asked) {
        asked
    } else {
        LATEST_VERSION
    };
    json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": "test hub",
    })
}

fn tools() -> Value {
    let object = json!({"type": "object"});
    let integers = |names: &[&str]| {
        let properties: serde_json::Map<String, Value> = names
            .iter()
            .map(|n| (n.to_string(), json!({"type": "integer"})))
            .collect();
        json!({"type": "object", "properties": properties})
    };
    let (slow, big) = (integers(&["ms", "steps"]), integers(&["bytes"]));
    let mut tools = json!([
        {"name": "echo", "description": "Echoes its text", "inputSchema":
            {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
        {"name": "slow", "description": "Sends progress, then answers", "inputSchema": slow},
        {"name": "hang", "description": "Never answers", "inputSchema": object},
        {"name": "fail", "description": "Fails on purpose", "inputSchema": object},
        {"name": "sample", "description": "Asks the client to sample", "inputSchema": object},
        {"name": "roots", "description": "Asks the client for its roots", "inputSchema": object},
        {"name": "notify", "description": "Notifies, then answers", "inputSchema": object},
        {"name": "big", "description": "Returns a text of the given size", "inputSchema": big},
        {"name": "sloppy_frames", "description": "Sends malformed frames, then answers", "inputSchema": object},
        {"name": "crash", "description": "Fails with an internal error", "inputSchema": object},
        {"name": "share_context", "description": "Shares a context value", "inputSchema": object},
        {"name": "send_message", "description": "Sends a message to another agent", "inputSchema": object},
        {"name": "read_inbox", "description": "Takes this agent's messages", "inputSchema": object},
        // A write that claims to be a read: the bridge's guard must not let that lift its rates.
        {"name": "stamp", "description": "Records a stamp", "inputSchema": object,
         "annotations": {"readOnlyHint": true}},
    ]);
    // `execution` is unknown to many SDKs: the bridge must pass it through untouched.
    for tool in tools.as_array_mut().into_iter().flatten() {
        tool["execution"] = json!({"taskSupport": "optional"});
    }
    tools
}

fn read_resource(params: &Value) -> Outcome {
    match params["uri"].as_str() {
        Some(uri) if uri.starts_with("aicp://") => Ok(json!({
            "contents": [{"uri": uri, "mimeType": "application/json", "text": "{\"k\":1}"}],
        })),
        _ => Err((-32002, "Resource not found".to_owned())),
    }
}

fn get_prompt(quirky: bool, params: &Value) -> Outcome {
    if params["name"] != "analyze_task" {
        return Err((-32602, format!("Unknown prompt: {}", params["name"])));
    }
    let text = format!(
        "Analyze: {}",
        params["arguments"]["task"].as_str().unwrap_or_default()
    );
    // Quirky hubs send the text bare where MCP wants a content block.
    let content = if quirky {
        json!(text)
    } else {
        text_block(&text)
    };
    Ok(json!({
        "description": "Analyze a task",
        "messages": [{"role": "user", "content": content}],
    }))
}
