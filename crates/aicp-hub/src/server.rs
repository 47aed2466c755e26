//! The hub's listener. One port serves both HTTP (`/health`, `/ready`,
//! `/metrics`) and the MCP WebSocket (an upgrade on any path, `/mcp` by
//! convention, as the original hub accepted). The request head is parsed here
//! so that auth and the connection limit are decided *before* the upgrade:
//! a missing or invalid token gets HTTP 401 and no MCP traffic at all. Each
//! accepted connection gets its own task (`session::run`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use aicp_proto::meta::SUBPROTOCOL;

use super::auth::{self, Principal};
use super::{Auth, HARD_FRAME_LIMIT_FACTOR, Shared, session};

/// Longest request head accepted; a client sending more is not a WebSocket client.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A client must send its request head within this time (slowloris guard). A
/// bridge or SDK sends it at once; a socket still silent after this is closed.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Fewest and most sockets held in the HTTP phase (accepted, not yet answered or
/// upgraded) at once; between these bounds, `--max-connections`. Every accepted
/// socket takes one of these places before its head is read, so silent sockets
/// cannot exhaust file descriptors; the floor keeps a health probe from evicting
/// a bridge's handshake on a hub with `--max-connections 1`.
const MIN_PENDING_HANDSHAKES: usize = 16;
const MAX_PENDING_HANDSHAKES: usize = 128;

/// Accepts until `shutdown`, then waits for every connection to drain.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Slots {
        sessions: Arc::new(Semaphore::new(shared.settings.max_connections)),
        per_identity: Arc::new(PerIdentity {
            limit: shared.settings.max_connections_per_identity,
            open: Mutex::default(),
        }),
    });
    let handshakes = Arc::new(Handshakes {
        limit: shared
            .settings
            .max_connections
            .clamp(MIN_PENDING_HANDSHAKES, MAX_PENDING_HANDSHAKES),
        waiting: Mutex::default(),
        next: AtomicU64::new(0),
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (shared, auth, slots, shutdown) = (
            shared.clone(),
            auth.clone(),
            slots.clone(),
            shutdown.clone(),
        );
        // Taken at accept, before a byte is read: a socket that never speaks still counts.
        let handshake = handshakes.admit();
        let evicted = handshake.evicted.clone();
        tracker.spawn(async move {
            tokio::select! {
                // Only fires before the upgrade: `Handshake::upgrading` leaves the queue first.
                _ = evicted.cancelled() => {
                    debug!(%peer, "closed in the HTTP phase to make room for a newer socket");
                }
                r = handle(stream, shared, auth, slots, handshake, shutdown) => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "connection ended during the HTTP exchange");
                    }
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    info!(connections = tracker.len(), "no longer accepting; draining");
    tracker.wait().await;
}

/// What bounds the connections outsiders can hold.
struct Slots {
    /// Simultaneous WebSocket sessions (`--max-connections`); a session holds its permit until it ends.
    sessions: Arc<Semaphore>,
    /// Sessions per token subject, so one identity cannot take every session slot.
    per_identity: Arc<PerIdentity>,
}

/// Open sessions per identity (`--max-connections-per-identity`). An entry lives
/// only while its identity has a session, so the map is bounded by `--max-connections`.
struct PerIdentity {
    limit: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl PerIdentity {
    fn try_acquire(self: &Arc<Self>, identity: &str) -> Option<IdentitySlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(identity.to_owned()).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IdentitySlot {
            owner: self.clone(),
            identity: identity.to_owned(),
        })
    }
}

/// One identity's session slot; given back on drop.
struct IdentitySlot {
    owner: Arc<PerIdentity>,
    identity: String,
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.identity) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.identity);
            }
        }
    }
}

/// The sockets in the HTTP phase, oldest first. When full, admitting a socket
/// closes the one waiting longest: a client sends its head within milliseconds of
/// connecting, so the oldest is the likeliest to be silent, and good clients are
/// never locked out (a full pool that refused new sockets would let a few silent
/// ones keep everyone out for [`HEAD_TIMEOUT`], again and again).
struct Handshakes {
    limit: usize,
    /// (admission number, the token that closes that socket), in admission order.
    waiting: Mutex<VecDeque<(u64, CancellationToken)>>,
    next: AtomicU64,
}

impl Handshakes {
    fn admit(self: &Arc<Self>) -> Handshake {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        while waiting.len() >= self.limit {
            let Some((_, oldest)) = waiting.pop_front() else {
                break;
            };
            oldest.cancel();
        }
        waiting.push_back((id, evicted.clone()));
        Handshake {
            owner: self.clone(),
            id,
            evicted,
        }
    }

    /// Leaves the queue; false if the socket was already evicted.
    fn remove(&self, id: u64) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        match waiting.iter().position(|(i, _)| *i == id) {
            Some(at) => {
                waiting.remove(at);
                true
            }
            None => false,
        }
    }
}

/// One socket's place in the HTTP phase; given back on drop or at the upgrade.
struct Handshake {
    owner: Arc<Handshakes>,
    id: u64,
    /// Cancelled when a newer socket needs the place.
    evicted: CancellationToken,
}

impl Handshake {
    /// Leaves the HTTP phase for a WebSocket session (which holds a session slot
    /// instead); false if the socket was evicted a moment ago.
    fn upgrading(&self) -> bool {
        self.owner.remove(self.id)
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.owner.remove(self.id);
    }
}

struct Head {
    method: String,
    path: String,
    /// httparse's minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    version: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
enum HeadError {
    #[error("request head over {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("malformed HTTP request head")]
    Malformed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the request head (up to the blank line); bytes after it stay buffered in `reader`.
///
/// Every read goes through `take` with what is left of [`MAX_HEAD_BYTES`], so a
/// line that never ends costs at most that much memory: `read_until` alone
/// would buffer a line of any length before the size could be checked.
async fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Option<Head>, HeadError> {
    let mut raw = Vec::with_capacity(1024);
    loop {
        let before = raw.len();
        // One byte over the budget, so "exactly at the limit" and "over it" differ.
        let budget = (MAX_HEAD_BYTES + 1 - raw.len()) as u64;
        let n = (&mut *reader)
            .take(budget)
            .read_until(b'\n', &mut raw)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if raw.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        if &raw[before..] == b"\r\n" || &raw[before..] == b"\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(HeadError::Malformed),
    }
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_owned(),
        path: req.path.unwrap_or("/").to_owned(),
        version: req.version.unwrap_or(0),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    }))
}

async fn respond(
    stream: &mut BufReader<TcpStream>,
    status: &str,
    extra_headers: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    // Head and body in one write: a client that reads only what has arrived with the
    // status line (tungstenite on a refused upgrade) still gets the reason.
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn handle(
    stream: TcpStream,
    shared: Arc<Shared>,
    auth: Arc<Auth>,
    slots: Arc<Slots>,
    handshake: Handshake,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(HeadError::Io(e))) => return Err(e),
        Ok(Err(e)) => {
            let status = match e {
                HeadError::TooLarge => "431 Request Header Fields Too Large",
                _ => "400 Bad Request",
            };
            // The client may still be sending; the answer is best effort, the close is not.
            let _ = respond(&mut stream, status, "", "text/plain", &format!("{e}\n")).await;
            return Err(std::io::Error::other(e));
        }
        Err(_) => return Ok(()),
    };
    let text = "text/plain; charset=utf-8";
    let path = head.path.split('?').next().unwrap_or("");
    let is_upgrade = head.has_token("Upgrade", "websocket");
    // Browsers send Origin and let any page open a WebSocket to localhost; bridges and
    // SDK clients send none. So a request with an Origin is a web page's, refused
    // unless listed (/health excepted: it says nothing but "ok").
    if let Some(origin) = head.header("Origin") {
        let allowed = &shared.settings.allowed_origins;
        if (is_upgrade || path != "/health") && !origin_allowed(origin, allowed) {
            if is_upgrade {
                shared.metrics.refused("forbidden_origin");
            }
            info!(origin, "request refused: 403, origin not allowed");
            return respond(
                &mut stream,
                "403 Forbidden",
                "",
                text,
                &format!(
                    "origin {:?} is not allowed: this hub refuses browser pages unless their origin is listed with --allow-origin ({} listed)\n",
                    origin.trim(),
                    allowed.len()
                ),
            )
            .await;
        }
    }
    if !is_upgrade {
        return match (head.method.as_str(), path) {
            ("GET", "/health") => respond(&mut stream, "200 OK", "", text, "ok\n").await,
            ("GET", "/ready") if shutdown.is_cancelled() => respond(&mut stream, "503 Service Unavailable", "", text, "draining\n").await,
            ("GET", "/ready") => respond(&mut stream, "200 OK", "", text, "ready\n").await,
            ("GET", "/metrics") => {
                let store = shared.store.clone();
                let bytes = tokio::task::spawn_blocking(move || store.size_bytes()).await.unwrap_or(0);
                shared.metrics.store_bytes.set(bytes as i64);
                let body = shared.metrics.render();
                respond(&mut stream, "200 OK", "", "application/openmetrics-text; version=1.0.0; charset=utf-8", &body).await
            }
            _ => respond(&mut stream, "426 Upgrade Required", "Upgrade: websocket\r\n", text,
                "This is an AICP hub: connect an MCP client with a WebSocket (ws://HOST:PORT/mcp). HTTP: /health, /ready, /metrics.\n").await,
        };
    }
    // RFC 6455 4.2.1: a handshake is a GET over HTTP/1.1 that asks to upgrade the connection.
    if head.method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            text,
            &format!("a WebSocket upgrade must be a GET, not {}\n", head.method),
        )
        .await;
    }
    if head.version != 1 {
        return respond(
            &mut stream,
            "400 Bad Request",
            "",
            text,
            "a WebSocket upgrade needs HTTP/1.1\n",
        )
        .await;
    }
    if !head.has_token("Connection", "upgrade") {
        return respond(
            &mut stream,
            "400 Bad Request",
            "",
            text,
            "a WebSocket upgrade needs `Connection: Upgrade`\n",
        )
        .await;
    }
    let Some(key) = head.header("Sec-WebSocket-Key").map(str::to_owned) else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "",
            text,
            "missing Sec-WebSocket-Key\n",
        )
        .await;
    };
    if head.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return respond(
            &mut stream,
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13\r\n",
            text,
            "WebSocket version 13 required\n",
        )
        .await;
    }
    if shutdown.is_cancelled() {
        return respond(
            &mut stream,
            "503 Service Unavailable",
            "",
            text,
            "the hub is shutting down\n",
        )
        .await;
    }
    let principal: Option<Principal> = match auth.as_ref() {
        Auth::Open => None,
        Auth::Jwt(secret) => {
            match auth::bearer(head.header("Authorization")).and_then(|t| secret.verify(t)) {
                Ok(p) => match revoked(&shared, &p).await {
                    Ok(None) => Some(p),
                    Ok(Some(reason)) => {
                        shared.metrics.refused("revoked");
                        info!(identity = %p.subject, "upgrade refused: 401, token revoked");
                        return respond(
                            &mut stream,
                            "401 Unauthorized",
                            "WWW-Authenticate: Bearer realm=\"aicp-hub\", error=\"invalid_token\"\r\n",
                            text,
                            &format!("{reason}\n"),
                        )
                        .await;
                    }
                    Err(e) => {
                        // Fail closed: a token that may be revoked is not taken on trust.
                        warn!(error = %e, "upgrade refused: 503, revocations unreadable");
                        return respond(
                            &mut stream,
                            "503 Service Unavailable",
                            "Retry-After: 5\r\n",
                            text,
                            "the hub cannot check token revocations right now\n",
                        )
                        .await;
                    }
                },
                Err(e) => {
                    shared.metrics.refused("unauthorized");
                    info!(error = %e, "upgrade refused: 401");
                    return respond(
                        &mut stream,
                        "401 Unauthorized",
                        "WWW-Authenticate: Bearer realm=\"aicp-hub\"\r\n",
                        text,
                        &format!("{e}\n"),
                    )
                    .await;
                }
            }
        }
    };
    // Only a token names an identity up front; with --open each connection is its own.
    let identity_slot = match &principal {
        Some(p) => match slots.per_identity.try_acquire(&p.subject) {
            Some(s) => Some(s),
            None => {
                shared.metrics.refused("too_many_connections_per_identity");
                let limit = slots.per_identity.limit;
                warn!(identity = %p.subject, limit, "upgrade refused: per-identity connection limit");
                return respond(
                    &mut stream,
                    "429 Too Many Requests",
                    "Retry-After: 5\r\n",
                    text,
                    &format!(
                        "too many connections for {} (limit {limit} per identity, --max-connections-per-identity)\n",
                        p.subject
                    ),
                )
                .await;
            }
        },
        None => None,
    };
    let Ok(slot) = slots.sessions.clone().try_acquire_owned() else {
        shared.metrics.refused("too_many_connections");
        let limit = shared.settings.max_connections;
        warn!(limit, "upgrade refused: connection limit");
        return respond(
            &mut stream,
            "503 Service Unavailable",
            "Retry-After: 5\r\n",
            text,
            &format!("too many connections (limit {limit})\n"),
        )
        .await;
    };
    if !handshake.upgrading() {
        return Ok(());
    }
    let protocol = if head.has_token("Sec-WebSocket-Protocol", SUBPROTOCOL) {
        format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n")
    } else {
        String::new()
    };
    let accept = derive_accept_key(key.trim().as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    let max = shared.settings.max_message_bytes;
    // Above the hub's message limit (answered with an error), below the hard
    // limit (the frame is not even buffered and the connection ends).
    // Writes: tungstenite's buffer holds at most one answer (bounded by
    // ANSWER_LIMIT_FACTOR) beyond its 128 KiB batch; the session flushes each.
    let config = WebSocketConfig::default()
        .max_message_size(Some(max.saturating_mul(HARD_FRAME_LIMIT_FACTOR)))
        .max_frame_size(Some(max.saturating_mul(HARD_FRAME_LIMIT_FACTOR)))
        .write_buffer_size(128 * 1024)
        .max_write_buffer_size((128 + 64) * 1024 + max.saturating_mul(super::ANSWER_LIMIT_FACTOR));
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
    shared.metrics.connections.inc();
    shared.metrics.connections_total.inc();
    session::run(ws, shared.clone(), principal, shutdown).await;
    shared.metrics.connections.dec();
    drop((slot, identity_slot));
    Ok(())
}

/// Whether `origin` (an `Origin` header) is one of `allowed` (normalised by [`normalize_origin`]).
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim();
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// `--allow-origin`: `scheme://host[:port]` as browsers send it (lower case, no default port, no path).
pub fn normalize_origin(flag: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "--allow-origin {flag:?}: expected an origin such as https://app.example or http://localhost:3000"
        )
    };
    let url = url::Url::parse(flag.trim()).map_err(|_| bad())?;
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(bad());
    }
    match url.origin() {
        o @ url::Origin::Tuple(..) => Ok(o.ascii_serialization()),
        url::Origin::Opaque(_) => Err(bad()),
    }
}

/// Why `p`'s token is revoked (`hub revoke` recorded a not-before after its `iat`), if it is.
/// Read from the store at every upgrade, so a running hub sees a revocation at once.
async fn revoked(shared: &Shared, p: &Principal) -> Result<Option<String>, String> {
    let store = shared.store.clone();
    let subject = p.subject.clone();
    let not_before = tokio::task::spawn_blocking(move || store.subject_not_before(&subject))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(not_before.filter(|nb| p.issued_at < *nb).map(|nb| {
        format!(
            "token revoked: tokens for {} issued before {nb} (unix seconds) were revoked with `aicp-hub revoke`; this one was issued at {}. Issue a new one with `aicp-hub token --sub {}`",
            p.subject, p.issued_at, p.subject
        )
    }))
}
