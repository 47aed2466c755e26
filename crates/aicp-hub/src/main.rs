//! The `aicp-hub` binary: parse the command line into the hub's settings, set
//! up logging, run the hub (or issue or revoke tokens), and turn the outcome
//! into an exit code. The hub itself is the library (`src/lib.rs` lists its files).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use aicp_hub::auth::{self, Scopes};
use aicp_hub::store::{SqliteStore, Store, StoreLimits};
use aicp_hub::{Auth, Settings, load_secret, now_ms};

/// An AICP hub: MCP over WebSocket with presence, durable messages, routing,
/// shared context, JWT auth, limits and metrics on an embedded SQLite store.
#[derive(Debug, Parser)]
#[command(name = "aicp-hub", version)]
struct Cli {
    #[command(flatten)]
    hub: HubArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct HubArgs {
    #[command(subcommand)]
    action: Option<HubAction>,

    /// Address to listen on (HTTP and WebSocket on one port). Port 0 picks a free one;
    /// the URL actually bound is printed as the only line on stdout.
    #[arg(long, value_name = "ADDR", default_value = aicp_hub::DEFAULT_LISTEN)]
    listen: String,

    #[command(flatten)]
    common: HubCommonArgs,

    /// No authentication: every connection is accepted. Allowed only on a loopback address.
    #[arg(long)]
    open: bool,

    /// Calls per second each connection may sustain (0: unlimited).
    #[arg(long, value_name = "N", default_value_t = aicp_hub::DEFAULT_RATE_PER_SEC)]
    rate_limit: f64,

    /// Calls a connection may make in a burst before the rate applies.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::DEFAULT_BURST)]
    burst: u32,

    /// Largest JSON-RPC message accepted, in bytes; larger ones get an error and the connection lives on.
    #[arg(long, value_name = "BYTES", default_value_t = aicp_hub::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,

    /// Most simultaneous WebSocket connections; more are refused with HTTP 503.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// How long a message is kept, read or not, in seconds (a call's own
    /// time-to-live never shortens it).
    #[arg(long, value_name = "SECONDS", default_value_t = aicp_hub::DEFAULT_MESSAGE_TTL.as_secs())]
    message_ttl: u64,

    /// Most hops a message may travel between agents (AIXP); further delivery is refused.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::DEFAULT_MAX_HOPS)]
    max_hops: u32,

    /// Most direct replies in one conversation between two agents; the next is refused.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::DEFAULT_MAX_TURNS)]
    max_turns: u32,

    /// Largest shared-context value, in bytes of JSON.
    #[arg(long, value_name = "BYTES", default_value_t = aicp_hub::store::StoreLimits::default().max_value_bytes)]
    max_value_bytes: usize,

    /// Most shared-context keys.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::store::StoreLimits::default().max_keys)]
    max_keys: usize,

    /// Most unread messages one agent may hold.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::store::StoreLimits::default().max_inbox)]
    max_inbox: usize,

    /// Largest store file, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = aicp_hub::store::StoreLimits::default().max_db_bytes)]
    max_store_bytes: u64,

    /// Ping each connection this often, in seconds; one silent (no frame at all, pongs
    /// included) for twice as long is dropped. 0: no pings.
    #[arg(long, value_name = "SECONDS", default_value_t = aicp_hub::DEFAULT_KEEPALIVE.as_secs_f64())]
    keepalive: f64,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive). Env: AICP_LOG.
    #[arg(long, env = "AICP_LOG", value_name = "FILTER", default_value = "info")]
    log_level: String,

    /// Bytes of shared context (keys plus JSON values) one identity may have written.
    #[arg(long, value_name = "BYTES", default_value_t = aicp_hub::store::StoreLimits::default().max_context_bytes_per_identity)]
    max_context_bytes_per_identity: u64,

    /// Shared-context keys one identity may have written.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::store::StoreLimits::default().max_keys_per_identity)]
    max_keys_per_identity: usize,

    /// Bytes of unread message text one sender may have waiting, in all inboxes together.
    #[arg(long, value_name = "BYTES", default_value_t = aicp_hub::store::StoreLimits::default().max_pending_bytes_per_sender)]
    max_pending_bytes_per_sender: u64,

    /// Serve requests that carry this browser Origin (repeatable, e.g. https://app.example).
    /// Requests with any other Origin get HTTP 403; clients that send none (bridges, SDKs) are unaffected.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,

    /// Most simultaneous WebSocket connections of one identity (token subject); more get HTTP 429.
    #[arg(long, value_name = "N", default_value_t = aicp_hub::DEFAULT_MAX_CONNECTIONS_PER_IDENTITY)]
    max_connections_per_identity: usize,
}

/// Options the hub and its `token` subcommand share: where the secret lives.
#[derive(Debug, Args)]
struct HubCommonArgs {
    /// Where the store and the generated JWT secret live (default: the platform data dir, e.g.
    /// ~/.local/share/aicp-bridge/hub).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,

    /// Sign and check tokens with the secret in this file (at least 32 bytes) instead of the data dir's.
    #[arg(long, value_name = "PATH", global = true)]
    jwt_secret_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum HubAction {
    /// Print a token for the hub (signed with its secret) to stdout, and nothing else.
    Token(TokenArgs),
    /// Refuse every token already issued for a subject (a running hub sees it at the next upgrade).
    ///
    /// Records now as the subject's not-before in the hub's store: its tokens issued
    /// earlier get HTTP 401; tokens issued from now on work. Connections already open stay open.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The identity (token subject) whose earlier tokens are refused.
    #[arg(long, value_name = "NAME")]
    sub: String,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The agent's identity (the token's subject).
    #[arg(long, value_name = "NAME")]
    sub: String,

    /// How long the token is valid: e.g. 30d, 12h, 90m, 45s (at most 3650d).
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    ttl: String,

    /// What the token allows, comma-separated: share, read, message.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "share,read,message"
    )]
    scopes: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match hub_main(cli.hub) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Printed once, with its cause chain, at the edge (stdout carries only the URL or the token).
            eprintln!("aicp-hub: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn hub_main(args: HubArgs) -> anyhow::Result<()> {
    match &args.action {
        Some(HubAction::Token(t)) => return token_main(&args.common, t),
        Some(HubAction::Revoke(r)) => return revoke_main(&args.common, r),
        None => {}
    }
    let settings = settings(&args)?;
    aicp_hub::logging::init(&args.log_level)?;
    let auth = if settings.open {
        Auth::Open
    } else {
        Auth::Jwt(load_secret(
            args.common.jwt_secret_file.as_deref(),
            &settings.data_dir,
        )?)
    };
    aicp_hub::run(settings, auth, CancellationToken::new())
}

/// Validates the flags into the settings the hub reads.
fn settings(args: &HubArgs) -> anyhow::Result<Settings> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {:?}: expected IP:PORT, e.g. 127.0.0.1:8765",
            args.listen
        )
    })?;
    if args.open && !listen.ip().is_loopback() {
        bail!(
            "--open (no authentication) is allowed only on a loopback address, not {listen}; issue tokens with `aicp-hub token --sub NAME` instead"
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
        max_turns: args.max_turns,
        store: StoreLimits {
            max_value_bytes: args.max_value_bytes,
            max_keys: args.max_keys,
            max_inbox: args.max_inbox,
            max_db_bytes: args.max_store_bytes,
            max_context_bytes_per_identity: args.max_context_bytes_per_identity,
            max_keys_per_identity: args.max_keys_per_identity,
            max_pending_bytes_per_sender: args.max_pending_bytes_per_sender,
        },
        keepalive: (args.keepalive > 0.0)
            .then(|| std::time::Duration::from_secs_f64(args.keepalive)),
        allowed_origins: args
            .allow_origin
            .iter()
            .map(|o| aicp_hub::server::normalize_origin(o))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        max_connections_per_identity: args.max_connections_per_identity.max(1),
    })
}

fn data_dir(common: &HubCommonArgs) -> anyhow::Result<PathBuf> {
    match &common.data_dir {
        Some(d) => Ok(d.clone()),
        None => aicp_hub::default_data_dir(),
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

/// `aicp-hub token`: the token alone on stdout.
fn token_main(common: &HubCommonArgs, t: &TokenArgs) -> anyhow::Result<()> {
    let sub = identity_arg(&t.sub)?;
    let ttl = auth::parse_ttl(&t.ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    let scopes = Scopes::from_list(t.scopes.iter().map(String::as_str))?;
    let secret = load_secret(common.jwt_secret_file.as_deref(), &data_dir(common)?)?;
    println!("{}", secret.issue(sub, scopes, ttl, now_ms() / 1000)?);
    Ok(())
}

/// `aicp-hub revoke`: records now as the subject's not-before in the store,
/// which a running hub reads at every upgrade (SQLite lets both open it).
fn revoke_main(common: &HubCommonArgs, r: &RevokeArgs) -> anyhow::Result<()> {
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
