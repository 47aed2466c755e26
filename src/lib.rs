//! aicp-bridge: joins the AI assistant you already use to an AICP hub.
//!
//! An MCP host (Claude Desktop, Claude Code, Cursor, the MCP Inspector) starts
//! `aicp-bridge serve` and speaks MCP to it over stdio; the bridge relays every
//! message to a hub over a WebSocket and back. The modules, in the order a
//! message meets them:
//!
//! - [`cli`]: the command line as clap types, nothing else.
//! - [`commands`]: one file per subcommand: `serve` (what a host launches), login,
//!   logout, status, share, tools, call, install, hub; and the one-shot hub client they use.
//! - [`relay`]: what `serve` runs: stdio, the session loop, the upstream WebSocket task,
//!   the sloppy-hub rules, offline answers, the list cache (`relay/mod.rs` follows one call).
//! - [`guard`]: the loop guard after AIXP: hops, time-to-live, repeats, rates, breaker.
//!   Pure decisions; its limits and the envelope glue are files beside it.
//! - [`credentials`]: where the hub token comes from: a flag, the environment, the OS keyring.
//! - [`config`]: validated settings, resolved once: flag > environment > config file > default.
//! - [`config_file`]: the TOML file with named profiles; edits keep what they do not know.
//! - [`paths`]: platform directories, and atomic owner-only writes.
//! - [`state`]: the small file each running `serve` keeps for `status`.
//! - [`logging`]: tracing to stderr or a file, with every known secret redacted.
//! - [`tls`]: certificate verification for `wss://`.
//!
//! The wire vocabulary shared with the hub (JSON-RPC and AIXP envelopes, error
//! and status codes, `_meta` keys, redaction) is the `aicp-proto` crate; the
//! hub is `aicp-hub`, a separate binary.

pub mod cli;
pub mod commands;
pub(crate) mod config;
pub(crate) mod config_file;
pub(crate) mod credentials;
pub mod guard;
pub(crate) mod logging;
pub(crate) mod paths;
pub(crate) mod relay;
pub(crate) mod state;
pub(crate) mod tls;
