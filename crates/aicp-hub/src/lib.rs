//! aicp-hub: the AICP hub people can run (`aicp-hub`, or `aicp-bridge hub`). An AICP hub for one
//! machine or for a small team: MCP over WebSocket (the original hub's tools,
//! resources and prompts, spec-correct), presence and durable agent-to-agent
//! messages, a SQLite store, JWT auth checked on the upgrade, per-connection
//! limits, and /health, /ready, /metrics on the same port. docs/hub.md is the
//! user's guide. The files, in the order a connection meets them:
//!
//! - [`server`]: the listener: HTTP endpoints, auth and limits on the upgrade, one task per connection.
//! - [`auth`]: JWT secret, tokens, scopes.
//! - [`session`]: one MCP connection: framing, dispatch, pipelining, subscriptions, per-connection bounds, keepalive, drain.
//! - [`limits`]: the per-connection token bucket.
//! - [`tools`], [`resources`], [`prompts`]: the MCP surface.
//! - [`routing`]: intent, capability matching, task splitting (pure).
//! - [`presence`]: who is connected, inbox wake-ups, resource-change broadcast.
//! - [`forwards`]: what each person received lately, to recognise a forward.
//! - [`store`]: the `Store` trait and its SQLite implementation.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`rpc`]: JSON-RPC responses and error codes.
//! - [`logging`]: stderr logs with tokens redacted.
//!
//! The AIXP envelope and the JSON-RPC envelope are the shared vocabulary in
//! `aicp-proto`; the command line is the binary's (`src/main.rs`).

pub mod auth;
pub(crate) mod forwards;
pub(crate) mod limits;
pub use limits::{DEFAULT_BURST, DEFAULT_RATE_PER_SEC};
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod presence;
pub(crate) mod prompts;
pub(crate) mod resources;
pub(crate) mod routing;
pub(crate) mod rpc;
pub mod server;
pub(crate) mod session;
pub mod store;
pub(crate) mod tools;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use aicp_proto::aixp::AixpStatus;
use aicp_proto::codes;
use auth::{Scope, Scopes, Secret};
use rpc::ErrorDataExt;
use store::{SqliteStore, Store, StoreLimits};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";
/// Largest JSON-RPC message a connection may send; larger ones get an error, the connection lives on.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Frames beyond this end the connection (tungstenite refuses to buffer them); see docs/hub.md.
pub const HARD_FRAME_LIMIT_FACTOR: usize = 8;
/// Largest answer the hub writes, as a multiple of `--max-message-bytes`; a
/// larger one is replaced by an error telling the model to narrow the request,
/// so answers held for a slow reader stay bounded.
pub const ANSWER_LIMIT_FACTOR: usize = 4;
/// How often the hub pings each connection; two intervals of silence drop it.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Sessions one identity (token subject) may hold at once, so one token cannot take every slot.
pub const DEFAULT_MAX_CONNECTIONS_PER_IDENTITY: usize = 16;
/// Unread messages expire after a week.
pub const DEFAULT_MESSAGE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default cap on hops: a message that would travel further is refused.
pub const DEFAULT_MAX_HOPS: u32 = 16;
/// Turns one conversation may run to: a long working thread between two
/// people fits; two agents answering each other without end do not.
pub const DEFAULT_MAX_TURNS: u32 = 100;
/// How long shutdown waits for in-flight calls before closing connections anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired messages are purged from the store.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Validated settings the hub reads (built once from [`HubArgs`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub open: bool,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub message_ttl_ms: u64,
    pub max_hops: u32,
    /// Direct replies one conversation may run to (`--max-turns`).
    pub max_turns: u32,
    pub store: StoreLimits,
    /// Ping interval; None (`--keepalive 0`) sends no pings and drops nobody for silence.
    pub keepalive: Option<Duration>,
    /// `--allow-origin`, normalised: browser origins whose requests are served (none by default).
    pub allowed_origins: Vec<String>,
    /// `--max-connections-per-identity`: sessions one token subject may hold (at least 1).
    pub max_connections_per_identity: usize,
}

/// The platform data directory for the hub: the store and the generated secret.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("", "", "aicp-bridge")
        .map(|d| d.data_dir().join("hub"))
        .context("no platform data directory (set HOME or pass --data-dir)")
}

/// What every session and tool shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) presence: presence::Presence,
    pub(crate) received: forwards::Received,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) settings: Settings,
    /// Cancelled on SIGTERM/SIGINT: long-polls return early, sessions drain.
    pub(crate) shutdown: CancellationToken,
}

/// Who is calling, as one request sees it.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) connection: u64,
    pub(crate) identity: String,
    pub(crate) scopes: Scopes,
}

impl Caller {
    pub(crate) fn require(&self, scope: Scope) -> Result<(), rpc::ErrorData> {
        if self.scopes.has(scope) {
            Ok(())
        } else {
            Err(rpc::err(
                codes::FORBIDDEN,
                format!(
                    "the token for {} lacks the `{scope}` scope this needs",
                    self.identity
                ),
            )
            .with_data(
                serde_json::json!({"scope": scope.name(), "aixpStatus": AixpStatus::ACCESS}),
            ))
        }
    }
}

pub use aicp_proto::aixp::now_ms;

/// How connections authenticate.
pub enum Auth {
    /// `--open`: anyone on loopback; identity from clientInfo plus a connection number.
    Open,
    Jwt(Secret),
}

/// The JWT secret: from `jwt_secret_file` if given, else generated once in `data_dir`.
pub fn load_secret(
    jwt_secret_file: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Secret> {
    Ok(match jwt_secret_file {
        Some(f) => Secret::read_file(f)?,
        None => {
            store::create_private_dir(data_dir)
                .with_context(|| format!("creating data dir {}", data_dir.display()))?;
            Secret::load_or_create(data_dir)?
        }
    })
}

/// Runs the hub until `shutdown` is cancelled: opens the store, listens,
/// prints the bound URL as the only stdout line, serves, drains, closes the store.
pub fn run(settings: Settings, auth: Auth, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Auth::Open = auth {
        warn!(
            "--open: NO AUTHENTICATION. Anyone who can reach {} can read and write this hub. Loopback only.",
            settings.listen
        );
        // Not eprintln!: with stderr's reader gone it would panic and take the hub down.
        let _ = writeln!(
            std::io::stderr(),
            "aicp-hub: WARNING: --open, no authentication (loopback only)"
        );
    }
    let store = SqliteStore::open(&settings.data_dir, settings.store)?;
    info!(data_dir = %settings.data_dir.display(), "store open");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        tokio::spawn(aicp_proto::shutdown::cancel_on_signal(
            shutdown.clone(),
            "draining in-flight calls",
        ));
        let shared = Arc::new(Shared {
            store: Arc::new(store),
            presence: presence::Presence::default(),
            received: forwards::Received::default(),
            metrics: metrics::Metrics::new(),
            settings,
            shutdown: shutdown.clone(),
        });
        tokio::spawn(purge_loop(shared.clone()));
        // The one line on stdout: scripts and tests read the bound URL from it.
        println!("ws://{addr}/mcp");
        info!(%addr, auth = if matches!(auth, Auth::Open) { "open" } else { "jwt" }, "aicp-hub {} listening on ws://{addr}/mcp", env!("CARGO_PKG_VERSION"));
        server::run(listener, shared.clone(), Arc::new(auth), shutdown).await;
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || store.close()).await?.context("closing the store")?;
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    info!("aicp-hub stopped");
    result
}

async fn purge_loop(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shared.shutdown.cancelled() => return,
        }
        match tools::with_store(&shared, |s| s.purge_expired(now_ms())).await {
            Ok(0) => {}
            Ok(n) => info!(purged = n, "expired messages removed"),
            Err(e) => warn!(error = %e, "purging expired messages failed"),
        }
    }
}
