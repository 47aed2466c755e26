//! The local hub: `aicp-bridge hub`. An AICP hub people can run on one
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
//! - [`aixp`]: the hop/origin/expiry envelope delivered messages carry (pure).
//! - [`presence`]: who is connected, inbox wake-ups, resource-change broadcast.
//! - [`store`]: the `Store` trait and its SQLite implementation.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`rpc`]: JSON-RPC responses and error codes.

pub mod aixp;
pub mod auth;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod prompts;
pub mod resources;
pub mod routing;
pub mod rpc;
pub mod server;
pub mod session;
pub mod store;
pub mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{HubArgs, HubCommonArgs, TokenArgs};
use auth::{Scope, Scopes, Secret};
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
    pub store: StoreLimits,
    /// Ping interval; None (`--keepalive 0`) sends no pings and drops nobody for silence.
    pub keepalive: Option<Duration>,
    /// `--allow-origin`, normalised: browser origins whose requests are served (none by default).
    pub allowed_origins: Vec<String>,
    /// `--max-connections-per-identity`: sessions one token subject may hold (at least 1).
    pub max_connections_per_identity: usize,
}

impl Settings {
    pub fn from_args(args: &HubArgs) -> anyhow::Result<Settings> {
        let listen: SocketAddr = args.listen.parse().with_context(|| {
            format!(
                "--listen {:?}: expected IP:PORT, e.g. 127.0.0.1:8765",
                args.listen
            )
        })?;
        if args.open && !listen.ip().is_loopback() {
            bail!(
                "--open (no authentication) is allowed only on a loopback address, not {listen}; issue tokens with `aicp-bridge hub token --sub NAME` instead"
            );
        }
        if args.max_message_bytes < 1024 {
            bail!(
                "--max-message-bytes {} is too small (at least 1024)",
                args.max_message_bytes
            );
        }
        if !(args.keepalive.is_finite() && args.keepalive >= 0.0) {
            bail!(
                "--keepalive {}: expected seconds, 0 or more (0 turns pings off)",
                args.keepalive
            );
        }
        Ok(Settings {
            listen,
            data_dir: data_dir(&args.common)?,
            open: args.open,
            rate_per_sec: args.rate_limit,
            burst: args.burst,
            max_message_bytes: args.max_message_bytes,
            max_connections: args.max_connections.max(1),
            message_ttl_ms: args.message_ttl.saturating_mul(1000).max(1000),
            max_hops: args.max_hops,
            store: StoreLimits {
                max_value_bytes: args.max_value_bytes,
                max_keys: args.max_keys,
                max_inbox: args.max_inbox,
                max_db_bytes: args.max_store_bytes,
                max_context_bytes_per_identity: args.max_context_bytes_per_identity,
                max_keys_per_identity: args.max_keys_per_identity,
                max_pending_bytes_per_sender: args.max_pending_bytes_per_sender,
            },
            keepalive: (args.keepalive > 0.0).then(|| Duration::from_secs_f64(args.keepalive)),
            allowed_origins: args
                .allow_origin
                .iter()
                .map(|o| server::normalize_origin(o))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
            max_connections_per_identity: args.max_connections_per_identity.max(1),
        })
    }
}

fn data_dir(common: &HubCommonArgs) -> anyhow::Result<PathBuf> {
    match &common.data_dir {
        Some(d) => Ok(d.clone()),
        None => directories::ProjectDirs::from("", "", "aicp-bridge")
            .map(|d| d.data_dir().join("hub"))
            .context("no platform data directory (set HOME or pass --data-dir)"),
    }
}

/// What every session and tool shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub presence: presence::Presence,
    pub metrics: metrics::Metrics,
    pub settings: Settings,
    /// Cancelled on SIGTERM/SIGINT: long-polls return early, sessions drain.
    pub shutdown: CancellationToken,
}

/// Who is calling, as one request sees it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub connection: u64,
    pub identity: String,
    pub scopes: Scopes,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), rpc::RpcError> {
        if self.scopes.has(scope) {
            Ok(())
        } else {
            Err(rpc::RpcError::new(
                rpc::FORBIDDEN,
                format!(
                    "the token for {} lacks the `{scope}` scope this needs",
                    self.identity
                ),
            )
            .with_data(
                serde_json::json!({"scope": scope.name(), "aixpStatus": crate::guard::AixpStatus::ACCESS}),
            ))
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How connections authenticate.
pub enum Auth {
    /// `--open`: anyone on loopback; identity from clientInfo plus a connection number.
    Open,
    Jwt(Secret),
}

fn load_secret(common: &HubCommonArgs, data_dir: &std::path::Path) -> anyhow::Result<Secret> {
    Ok(match &common.jwt_secret_file {
        Some(f) => Secret::read_file(f)?,
        None => {
            store::create_private_dir(data_dir)
                .with_context(|| format!("creating data dir {}", data_dir.display()))?;
            Secret::load_or_create(data_dir)?
        }
    })
}

/// `aicp-bridge hub …`.
pub fn hub_main(args: HubArgs) -> anyhow::Result<()> {
    match &args.action {
        Some(crate::cli::HubAction::Token(t)) => return token_main(&args.common, t),
        Some(crate::cli::HubAction::Revoke(r)) => return revoke_main(&args.common, r),
        None => {}
    }
    let settings = Settings::from_args(&args)?;
    crate::logging::init(&args.log_level, None, Vec::new())?;
    let auth = if settings.open {
        warn!(
            "--open: NO AUTHENTICATION. Anyone who can reach {} can read and write this hub. Loopback only.",
            settings.listen
        );
        eprintln!("aicp-bridge hub: WARNING: --open, no authentication (loopback only)");
        Auth::Open
    } else {
        Auth::Jwt(load_secret(&args.common, &settings.data_dir)?)
    };
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
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::shutdown::cancel_on_signal(shutdown.clone(), "draining in-flight calls"));
        let shared = Arc::new(Shared {
            store: Arc::new(store),
            presence: presence::Presence::default(),
            metrics: metrics::Metrics::new(),
            settings,
            shutdown: shutdown.clone(),
        });
        tokio::spawn(purge_loop(shared.clone()));
        // The one line on stdout: scripts and tests read the bound URL from it.
        println!("ws://{addr}/mcp");
        info!(%addr, auth = if matches!(auth, Auth::Open) { "open" } else { "jwt" }, "aicp-bridge hub {} listening on ws://{addr}/mcp", env!("CARGO_PKG_VERSION"));
        server::run(listener, shared.clone(), Arc::new(auth), shutdown).await;
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || store.close()).await?.context("closing the store")?;
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    info!("aicp-bridge hub stopped");
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

/// `--sub` of `hub token` and `hub revoke`, trimmed and checked.
fn identity_arg(sub: &str) -> anyhow::Result<&str> {
    let id = sub.trim();
    if id.is_empty() || id.contains('/') || id.chars().any(char::is_whitespace) {
        bail!("--sub {sub:?}: an identity must be non-empty, without spaces or '/'");
    }
    Ok(id)
}

/// `aicp-bridge hub token`: the token alone on stdout.
fn token_main(common: &HubCommonArgs, t: &TokenArgs) -> anyhow::Result<()> {
    let sub = identity_arg(&t.sub)?;
    let ttl = auth::parse_ttl(&t.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let scopes = Scopes::from_list(t.scopes.iter().map(String::as_str))?;
    let secret = load_secret(common, &data_dir(common)?)?;
    println!("{}", secret.issue(sub, scopes, ttl, now_ms() / 1000)?);
    Ok(())
}

/// `aicp-bridge hub revoke`: records now as the subject's not-before in the store,
/// which a running hub reads at every upgrade (SQLite lets both open it).
fn revoke_main(common: &HubCommonArgs, r: &crate::cli::RevokeArgs) -> anyhow::Result<()> {
    let sub = identity_arg(&r.sub)?;
    let dir = data_dir(common)?;
    let store = SqliteStore::open(&dir, StoreLimits::default())?;
    let now = now_ms() / 1000;
    store
        .revoke_subject(sub, now)
        .with_context(|| format!("recording the revocation in {}", dir.display()))?;
    store.close()?;
    println!(
        "revoked: tokens for {sub} issued before {now} (unix seconds) are refused from the next connection"
    );
    Ok(())
}
