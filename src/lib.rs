//! aicp-bridge: joins the AI assistant you already use to an AICP hub.
//!
//! An MCP host (Claude Desktop, Claude Code, Cursor, the MCP Inspector) starts
//! `aicp-bridge serve` and speaks MCP to it over stdio; the bridge relays every
//! message to a hub over a WebSocket and back. The modules, in the order a
//! message meets them:
//!
//! - [`cli`]: the command line as clap types, nothing else.
//! - [`config`]: validated settings, resolved once: flag > environment > config file > default.
//! - [`config_file`]: the TOML file with named profiles; edits keep what they do not know.
//! - [`paths`]: platform directories, and atomic owner-only writes.
//! - [`credentials`]: where the hub token comes from (environment or a token file for now).
//! - [`logging`]: tracing to stderr or a file, with every known secret redacted.
//! - [`host`]: the stdio side: newline-delimited reading with a size limit, one stdout writer.
//! - [`serve`]: the `serve` command: config, logging, signals, then the relay on stdio.
//! - [`guard`]: the loop guard after AIXP: hops, time-to-live, repeats, rates, breaker. Pure.
//! - [`aixp`]: the guard on the wire: envelopes into calls, refusals as tool results.
//! - [`relay`]: the session loop between host and hub: pending requests, timeouts, fallbacks.
//! - [`normalize`]: what the relay repairs in a sloppy hub's messages, one named rule each.
//! - [`offline`]: what the bridge answers itself while the hub is unreachable.
//! - [`hub_connection`]: the one task that owns the WebSocket: connect, keepalive, reconnect, re-initialize.
//! - [`commands`]: login, logout, status, share, tools, call, install: the everyday command line.
//! - [`client`]: a one-shot hub client for the command line (status, login, share, tools, call).
//! - [`shutdown`]: SIGTERM and SIGINT into a cancelled token, for `serve`.
//! - [`state`]: the small file each running `serve` keeps for `status`.
//! - [`tls`]: certificate verification for `wss://`.
//! - [`validate`]: `--strict` checks of hub results against the MCP schema (rmcp's types).
//!
//! The wire vocabulary shared with the hub (JSON-RPC and AIXP envelopes, status
//! codes, `_meta` keys, redaction) is the `aicp-proto` crate; the hub is `aicp-hub`.

pub mod aixp;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod config_file;
pub mod credentials;
pub mod guard;
pub mod host;
pub mod hub_connection;
pub mod logging;
pub mod normalize;
pub mod offline;
pub mod paths;
pub mod relay;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod validate;
