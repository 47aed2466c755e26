//! The command line, as clap derive types that mirror it. Values here are raw:
//! [`crate::config`] validates them into the settings the rest of the program reads.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "aicp-bridge", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Relay MCP between this process's stdio (the host) and an AICP hub over WebSocket.
    ///
    /// This is what an MCP host runs. Nothing but JSON-RPC is ever written to stdout.
    Serve(ServeArgs),
    /// Store a hub token in the OS keyring (and the hub URL in the profile), after checking it.
    ///
    /// The token is read with a hidden prompt on a terminal, or from stdin with
    /// --token-stdin; never from the command line.
    Login(LoginArgs),
    /// Remove the stored token for the profile's hub from the OS keyring.
    Logout(TargetArgs),
    /// Check the config, the token, the hub and the bridges running; exits non-zero on a problem.
    Status(StatusArgs),
    /// Share a piece of context with everyone on the hub (its share_context tool).
    Share(ShareArgs),
    /// List the hub's tools.
    Tools(ToolsArgs),
    /// Call one of the hub's tools and print the result.
    ///
    /// Exit codes: 0 the tool succeeded, 4 the tool reported an error (isError),
    /// 3 the hub could not be reached or refused the call, 1 anything else.
    Call(CallArgs),
    /// Register aicp-bridge in an MCP host's config (claude-desktop).
    Install(InstallArgs),
    /// Remove aicp-bridge from an MCP host's config (claude-desktop).
    Uninstall(InstallArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Run a local AICP hub, or issue a token for it: runs `aicp-hub` (installed next to
    /// this binary) with the same arguments, e.g. `aicp-bridge hub token --sub NAME`.
    #[command(disable_help_flag = true)]
    Hub {
        /// Arguments for `aicp-hub` (`aicp-bridge hub --help` shows them).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub target: HubTarget,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Read the token from stdin (for scripts) instead of prompting.
    #[arg(long)]
    pub token_stdin: bool,
    /// Store the token without checking it against the hub.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Print one JSON object (schema in docs/cli.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the hub.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct ShareArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// The context key.
    pub key: String,
    /// The value: JSON if it parses as JSON, else a string; `-` reads stdin.
    #[arg(conflicts_with = "file")]
    pub value: Option<String>,
    /// Read the value from this file.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Share the value as a string even if it parses as JSON.
    #[arg(long)]
    pub string: bool,
    /// Print the hub's result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Print the tools as JSON (name, description, inputSchema, …).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// The tool's name.
    pub tool: String,
    /// Arguments as a JSON object; `-` reads them from stdin.
    #[arg(long, value_name = "JSON")]
    pub args: Option<String>,
    /// Print the whole result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The host to register with.
    #[arg(value_enum)]
    pub host: InstallHost,
    /// The profile the registered `serve` uses.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// The server's name under mcpServers.
    #[arg(long, default_value = "aicp", value_name = "NAME")]
    pub name: String,
    /// The host's config file, when it cannot be found or is ambiguous.
    #[arg(long, value_name = "PATH")]
    pub config_path: Option<PathBuf>,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstallHost {
    ClaudeDesktop,
}

/// Which hub, as whom: shared by every command that talks to a hub.
#[derive(Debug, Clone, Args)]
pub struct HubTarget {
    /// Config file [env: AICP_CONFIG] [default: the platform config dir's aicp-bridge/config.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Profile in the config file [default: the file's default_profile, else "default"]
    #[arg(long, env = "AICP_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Hub URL, ws:// or wss:// (plain ws:// only to loopback unless --allow-insecure) [default: the profile's hub]
    #[arg(long, env = "AICP_HUB_URL", value_name = "URL")]
    pub hub: Option<String>,

    /// Read the hub token from this file (first line) instead of AICP_TOKEN or the OS keyring.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Trust only the CA certificates in this PEM file for wss:// (instead of the OS trust store).
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Allow plain ws:// to a host that is not loopback (the token and all traffic travel unencrypted).
    #[arg(long)]
    pub allow_insecure: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub target: HubTarget,

    /// Largest message accepted from the host, in bytes; larger requests are refused locally.
    #[arg(long, value_name = "BYTES", default_value_t = crate::config::DEFAULT_MAX_HOST_MESSAGE)]
    pub max_message_bytes: usize,

    /// Largest message accepted from the hub, in bytes; a larger one drops the connection.
    #[arg(long, value_name = "BYTES", default_value_t = crate::config::DEFAULT_MAX_HUB_MESSAGE)]
    pub max_hub_message_bytes: usize,

    /// Fail a request with no reply and no progress for this many seconds (default: no limit).
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,

    /// Give up on one connection attempt (TCP, TLS, upgrade, re-initialize) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::config::DEFAULT_CONNECT_TIMEOUT.as_secs_f64())]
    pub connect_timeout: f64,

    /// Send a WebSocket ping this often; a hub silent for twice as long is considered dead.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::config::DEFAULT_KEEPALIVE.as_secs_f64())]
    pub keepalive: f64,

    /// Longest wait between reconnect attempts, in seconds (backoff doubles up to this, with jitter).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::config::DEFAULT_MAX_BACKOFF.as_secs_f64())]
    pub max_backoff: f64,

    /// What your assistant is good at (comma-separated, e.g. "rust,code-review"), declared to
    /// the hub at initialize so it can route work to you.
    #[arg(
        long,
        env = "AICP_CAPABILITIES",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub capabilities: Vec<String>,

    /// Override a loop limit, e.g. `--limit max_hops=4` (repeatable; keys and defaults in docs/limits.md).
    #[arg(long, value_name = "KEY=VALUE")]
    pub limit: Vec<String>,

    /// Check every hub result against the MCP schema and log what does not conform.
    #[arg(long)]
    pub strict: bool,

    /// Also send the token in `initialize` params `_meta["aicp/auth"]`, for a hub that
    /// authenticates there instead of on the upgrade (off: the upgrade header suffices).
    #[arg(long)]
    pub token_in_initialize: bool,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive). Env: AICP_LOG.
    #[arg(long, env = "AICP_LOG", value_name = "FILTER", default_value = "info")]
    pub log_level: String,

    /// Write logs to this file instead of stderr.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}
