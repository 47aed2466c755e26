//! The hub connection: one task owns the WebSocket. The relay reaches it only
//! through channels: frames to send go in through an unbounded outbox (the
//! relay must never block on the hub while the hub waits on the relay), and
//! everything that happens (frames, connection up or down) comes back as a
//! [`HubEvent`] on a bounded channel, which pushes back on a hub that floods.
//!
//! The task keeps reading the socket at all times, so the hub's pings get
//! their pongs even when the bridge is idle, and pings the hub itself so that
//! a hub that went silent is found dead. When a connection ends it reconnects
//! with exponential backoff and jitter, and re-initializes the new MCP session
//! with the host's own `initialize` params before reporting it up. Frames the
//! relay queued for a connection that is gone are dropped, never replayed on
//! the next one: a `tools/call` may have side effects.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{HubConfig, INITIAL_BACKOFF, redact_url};
use aicp_proto::aixp::AixpStatus;
use aicp_proto::meta::SUBPROTOCOL;
use aicp_proto::wire::{self, Id, Kind};

/// The WebSocket to a hub, plain or TLS.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a clean close waits for the hub's close reply.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A connection that lasted this long proved the hub healthy: the backoff
/// starts over after it ends. One that fails sooner (a hub that accepts the
/// upgrade and then drops it) keeps the backoff growing, so it is not redialled
/// (token and all) every few hundred milliseconds forever.
pub const PROVEN_HEALTHY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum HubEvent {
    /// A connection attempt started; frames sent now wait for its outcome.
    Connecting,
    /// Connected. `reinitialized` says the bridge replayed the host's
    /// `initialize` on this connection (the host's lists may have changed).
    Up {
        generation: u64,
        reinitialized: bool,
    },
    /// Not connected; the next attempt starts after `retry_in`.
    Down {
        cause: Arc<HubError>,
        retry_in: Duration,
    },
    Frame {
        generation: u64,
        text: String,
    },
}

/// A frame for the connection of one generation; dropped if that connection is gone.
#[derive(Debug)]
pub struct Outgoing {
    pub generation: u64,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot reach the hub: {0}")]
    Connect(String),
    #[error(
        "the hub refused the credentials (HTTP {status}); check the token (AICP_TOKEN or --token-file)"
    )]
    Unauthorized { status: u16 },
    #[error("the hub answered the WebSocket upgrade with HTTP {status}")]
    Http { status: u16 },
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("no connection within {0:?} (--connect-timeout)")]
    ConnectTimeout(Duration),
    #[error("the hub closed the connection ({0})")]
    Closed(String),
    #[error(
        "the hub sent a message of {size} bytes, over the {limit}-byte limit (--max-hub-message-bytes)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "nothing heard from the hub for {0:?} (two keepalive intervals); the connection is presumed dead"
    )]
    Silent(Duration),
    #[error("the hub rejected the bridge's re-initialize: {0}")]
    InitRejected(String),
    #[error("connection lost: {0}")]
    Lost(String),
}

impl HubError {
    /// The AIXP status code that classifies this failure (see docs/limits.md).
    pub fn aixp_status(&self) -> AixpStatus {
        match self {
            HubError::Unauthorized { .. } => AixpStatus::IDENTIFICATION,
            HubError::TooLarge { .. } | HubError::InitRejected(_) => AixpStatus::DATA_FORMAT,
            HubError::Closed(_) | HubError::Silent(_) | HubError::Lost(_) => {
                AixpStatus::UNEXPECTED_DISCONNECT
            }
            _ => AixpStatus::HUB_DISCONNECTED,
        }
    }

    pub fn from_ws(err: tungstenite::Error, limit: usize) -> HubError {
        use tungstenite::Error as E;
        match err {
            E::Http(resp) => match resp.status().as_u16() {
                status @ (401 | 403) => HubError::Unauthorized { status },
                status => HubError::Http { status },
            },
            E::Capacity(CapacityError::MessageTooLong { size, .. }) => {
                HubError::TooLarge { size, limit }
            }
            E::Tls(e) => HubError::Tls(e.to_string()),
            E::Io(e) => match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => HubError::Tls(tls.to_string()),
                None => HubError::Lost(e.to_string()),
            },
            E::ConnectionClosed | E::AlreadyClosed => HubError::Closed("no close frame".into()),
            other => HubError::Lost(other.to_string()),
        }
    }
}

/// The relay's handle on the hub task.
pub struct HubLink {
    pub outbox: mpsc::UnboundedSender<Outgoing>,
    /// The host's `initialize` params, replayed on every new connection.
    pub init_params: watch::Sender<Option<Arc<str>>>,
    pub events: mpsc::Receiver<HubEvent>,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn spawn(cfg: Arc<HubConfig>, shutdown: CancellationToken) -> HubLink {
    let (outbox, outbox_rx) = mpsc::unbounded_channel();
    let (init_params, init_rx) = watch::channel(None);
    let (events_tx, events) = mpsc::channel(256);
    let task = tokio::spawn(run(cfg, events_tx, outbox_rx, init_rx, shutdown));
    HubLink {
        outbox,
        init_params,
        events,
        task,
    }
}

async fn run(
    cfg: Arc<HubConfig>,
    events: mpsc::Sender<HubEvent>,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    init: watch::Receiver<Option<Arc<str>>>,
    shutdown: CancellationToken,
) {
    let shown_url = redact_url(&cfg.url);
    let mut failures: u32 = 0;
    let mut generation: u64 = 0;
    let mut offer_subprotocol = true;
    loop {
        if events.send(HubEvent::Connecting).await.is_err() {
            return;
        }
        generation += 1;
        let params = init.borrow().clone();
        let attempt = connect(&cfg, &mut offer_subprotocol, params.as_deref(), generation);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = timeout(cfg.connect_timeout, attempt) => r.unwrap_or(Err(HubError::ConnectTimeout(cfg.connect_timeout))),
        };
        let cause = match result {
            Ok(ws) => {
                info!(hub = %shown_url, generation, "connected to hub");
                let up_since = Instant::now();
                let up = HubEvent::Up {
                    generation,
                    reinitialized: params.is_some(),
                };
                if events.send(up).await.is_err() {
                    return;
                }
                let served =
                    serve_connection(ws, generation, &cfg, &events, &mut outbox, &shutdown).await;
                if up_since.elapsed() >= PROVEN_HEALTHY_AFTER {
                    failures = 0;
                }
                match served {
                    Ok(()) => return,
                    Err(cause) => cause,
                }
            }
            Err(cause) => cause,
        };
        failures = failures.saturating_add(1);
        let retry_in = backoff(failures, cfg.max_backoff);
        warn!(hub = %shown_url, error = %cause, retry_in_ms = retry_in.as_millis() as u64, "hub unavailable");
        let down = HubEvent::Down {
            cause: Arc::new(cause),
            retry_in,
        };
        if events.send(down).await.is_err() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep(retry_in) => {}
        }
    }
}

/// Exponential backoff with "equal jitter": half the step is fixed so retries
/// never bunch up at zero, half is random so many bridges do not retry in step.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let step = INITIAL_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max);
    let half = step / 2;
    half + half.mul_f64(fastrand::f64())
}

async fn connect(
    cfg: &HubConfig,
    offer_subprotocol: &mut bool,
    init: Option<&str>,
    generation: u64,
) -> Result<Ws, HubError> {
    let mut ws = upgrade(cfg, offer_subprotocol).await?;
    if let Some(params) = init {
        reinitialize(&mut ws, params, generation, cfg.max_message_bytes).await?;
    }
    Ok(ws)
}

/// Opens the WebSocket: TCP, TLS, the upgrade with the token and the `mcp`
/// subprotocol offered. If the hub answers without a subprotocol, asks again
/// without offering one and sets `offer_subprotocol` to false for next time.
pub async fn upgrade(cfg: &HubConfig, offer_subprotocol: &mut bool) -> Result<Ws, HubError> {
    let limit = cfg.max_message_bytes;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    loop {
        let request = upgrade_request(cfg, *offer_subprotocol)?;
        let connector = match &cfg.tls {
            Some(tls) => Connector::Rustls(tls.clone()),
            None => Connector::Plain,
        };
        let tcp = connect_tcp(cfg).await?;
        match tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            Some(ws_config),
            Some(connector),
        )
        .await
        {
            Ok((ws, _response)) => return Ok(ws),
            Err(tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
                SubProtocolError::NoSubProtocol,
            ))) if *offer_subprotocol => {
                // The spec says the client must fail here; a hub that ignores
                // subprotocols is common and otherwise fine, so ask again without.
                info!("hub negotiates no WebSocket subprotocol; connecting without offering one");
                *offer_subprotocol = false;
            }
            Err(tungstenite::Error::Io(e)) if is_connect_error(&e) => {
                return Err(HubError::Connect(e.to_string()));
            }
            Err(e) => return Err(HubError::from_ws(e, limit)),
        }
    }
}

/// Resolves the hub's host and opens TCP to the first address that answers.
/// Plain ws:// without `--allow-insecure` goes only to loopback addresses: the
/// check is on the addresses the name resolves to (a `localhost` that resolves
/// elsewhere is refused), and the socket connects to exactly those addresses,
/// so nothing can be swapped in between the check and the connect.
async fn connect_tcp(cfg: &HubConfig) -> Result<TcpStream, HubError> {
    let host = cfg
        .url
        .host_str()
        .ok_or_else(|| HubError::Connect("the hub URL has no host".into()))?;
    // IPv6 literals come bracketed in URLs; the resolver wants them bare.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = cfg.url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| HubError::Connect(format!("cannot resolve {host}: {e}")))?
        .collect();
    if cfg.tls.is_none() && !cfg.allow_insecure {
        refuse_plain_outside_loopback(host, &addrs)?;
    }
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                // Requests and answers are small and latency-bound.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(HubError::Connect(match last {
        Some(e) => e.to_string(),
        None => format!("{host} resolves to no address"),
    }))
}

/// Plain ws:// without `--allow-insecure`: every address the host resolved to must be loopback.
fn refuse_plain_outside_loopback(
    host: &str,
    addrs: &[std::net::SocketAddr],
) -> Result<(), HubError> {
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(outside) => Err(HubError::Connect(format!(
            "{host} resolves to {}, which is not loopback: refusing plain ws:// (the token would travel unencrypted); use wss:// or --allow-insecure",
            outside.ip()
        ))),
        None => Ok(()),
    }
}

fn is_connect_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused
            | K::NotFound
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable
    ) || e.get_ref().is_none() && e.raw_os_error().is_none() && e.to_string().contains("lookup")
}

fn upgrade_request(
    cfg: &HubConfig,
    offer_subprotocol: bool,
) -> Result<tungstenite::handshake::client::Request, HubError> {
    let mut request = cfg
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| HubError::Connect(e.to_string()))?;
    let headers = request.headers_mut();
    headers.insert(
        "user-agent",
        HeaderValue::from_static(concat!("aicp-bridge/", env!("CARGO_PKG_VERSION"))),
    );
    if offer_subprotocol {
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    if let Some(cred) = &cfg.credential {
        let mut value = HeaderValue::from_str(&cred.bearer())
            .map_err(|_| HubError::Connect("the token cannot be sent in an HTTP header".into()))?;
        value.set_sensitive(true);
        headers.insert("authorization", value);
    }
    Ok(request)
}

/// Replays the host's `initialize` on a fresh connection, then `initialized`.
/// Anything the hub sends before its answer belongs to no one yet and is dropped.
async fn reinitialize(
    ws: &mut Ws,
    params: &str,
    generation: u64,
    limit: usize,
) -> Result<(), HubError> {
    let id = Id::bridge(generation);
    let send_err = |e| HubError::from_ws(e, limit);
    ws.send(WsMessage::text(wire::request(&id, "initialize", params)))
        .await
        .map_err(send_err)?;
    loop {
        let text = match ws.next().await {
            None => return Err(HubError::Closed("during re-initialize".into())),
            Some(Err(e)) => return Err(HubError::from_ws(e, limit)),
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(frame))) => {
                return Err(HubError::Closed(describe_close(frame.as_ref())));
            }
            Some(Ok(_)) => continue,
        };
        match wire::parse(&text, false) {
            Ok(msg) => match msg.kind {
                Kind::Response { id: got, is_error } if got == id => {
                    if is_error {
                        let detail = msg.error.map(|e| e.get().to_owned()).unwrap_or_default();
                        return Err(HubError::InitRejected(detail));
                    }
                    break;
                }
                _ => debug!(
                    generation,
                    "dropped a hub message that arrived before re-initialize finished"
                ),
            },
            Err(e) => {
                debug!(generation, error = %e, "dropped an unreadable hub message during re-initialize")
            }
        }
    }
    ws.send(WsMessage::text(wire::notification(
        "notifications/initialized",
        None,
    )))
    .await
    .map_err(send_err)
}

fn describe_close(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!("code {}", u16::from(f.code)),
        Some(f) => format!("code {}: {}", u16::from(f.code), f.reason),
        None => "no close code".into(),
    }
}

/// Runs one connection until it fails (`Err`, the cause) or the bridge shuts
/// down (`Ok`, after a clean close with code 1000).
async fn serve_connection(
    ws: Ws,
    generation: u64,
    cfg: &HubConfig,
    events: &mpsc::Sender<HubEvent>,
    outbox: &mut mpsc::UnboundedReceiver<Outgoing>,
    shutdown: &CancellationToken,
) -> Result<(), HubError> {
    let limit = cfg.max_message_bytes;
    let (mut sink, mut stream) = ws.split();
    let mut last_heard = Instant::now();
    let mut keepalive = tokio::time::interval_at(Instant::now() + cfg.keepalive, cfg.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let close = async {
                    let frame = tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "bridge shutting down".into() };
                    let _ = sink.send(WsMessage::Close(Some(frame))).await;
                    // Wait for the hub's close reply so the close is clean on both sides.
                    while let Some(Ok(_)) = stream.next().await {}
                };
                let _ = timeout(CLOSE_GRACE, close).await;
                return Ok(());
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                let text = match incoming {
                    None => return Err(HubError::Closed("no close frame".into())),
                    Some(Err(e)) => return Err(HubError::from_ws(e, limit)),
                    Some(Ok(WsMessage::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(WsMessage::Binary(b))) => match String::from_utf8(b.to_vec()) {
                        // Normalisation: some hubs send JSON in binary frames.
                        Ok(t) => t,
                        Err(_) => {
                            warn!(generation, bytes = b.len(), "dropped a binary hub frame that is not UTF-8 text");
                            continue;
                        }
                    },
                    Some(Ok(WsMessage::Close(frame))) => return Err(HubError::Closed(describe_close(frame.as_ref()))),
                    // Pings are answered by tungstenite on the next read or write.
                    Some(Ok(_)) => continue,
                };
                if events.send(HubEvent::Frame { generation, text }).await.is_err() {
                    return Ok(());
                }
            }
            out = outbox.recv() => {
                let Some(first) = out else { return Ok(()) };
                // Feed everything already queued, then flush once.
                let mut next = Some(first);
                while let Some(o) = next {
                    if o.generation == generation {
                        sink.feed(WsMessage::text(o.text)).await.map_err(|e| HubError::from_ws(e, limit))?;
                    } else {
                        debug!(stale = o.generation, generation, "dropped a frame meant for an earlier connection");
                    }
                    next = outbox.try_recv().ok();
                }
                sink.flush().await.map_err(|e| HubError::from_ws(e, limit))?;
            }
            _ = keepalive.tick() => {
                let silent_for = last_heard.elapsed();
                if silent_for >= cfg.keepalive * 2 {
                    return Err(HubError::Silent(silent_for));
                }
                sink.send(WsMessage::Ping(Default::default())).await.map_err(|e| HubError::from_ws(e, limit))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_in_the_upper_half() {
        let max = Duration::from_secs(30);
        for failures in 1..40 {
            let step = INITIAL_BACKOFF
                .saturating_mul(1 << (failures - 1).min(16))
                .min(max);
            let d = backoff(failures, max);
            assert!(
                d >= step / 2 && d <= step,
                "failures={failures} d={d:?} step={step:?}"
            );
        }
        assert!(backoff(1, max) <= INITIAL_BACKOFF);
        assert!(backoff(30, max) >= max / 2);
    }

    #[test]
    fn plain_ws_goes_only_to_addresses_that_are_loopback() {
        let loopback: Vec<std::net::SocketAddr> =
            vec!["127.0.0.1:80".parse().unwrap(), "[::1]:80".parse().unwrap()];
        assert!(refuse_plain_outside_loopback("localhost", &loopback).is_ok());
        // A name that looks local but resolves elsewhere (a poisoned hosts file, DNS).
        let mixed = vec![
            "127.0.0.1:80".parse().unwrap(),
            "192.0.2.7:80".parse().unwrap(),
        ];
        let err = refuse_plain_outside_loopback("localhost", &mixed)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("192.0.2.7") && err.contains("not loopback"),
            "{err}"
        );
    }
}
