//! The hub's tools: the original hub's three (`route_to_agent`,
//! `share_context`, `orchestrate_collaboration`, same names, argument schemas
//! and result field names) made real, plus `list_agents`, `send_message`,
//! `read_inbox`, `get_context`, `list_context`, `delete_context` and
//! `plan_status`. A tool that fails (a missing scope and an unknown argument
//! included) returns `isError: true` with the reason, so the model can read it;
//! only an unknown tool is a protocol error, and it lists the tools there are.
//!
//! One file per group of tools: [`catalogue`] lists them, [`call`] dispatches;
//! [`messages`] sends, [`inbox`] receives, [`agents`] says who is there,
//! [`context`] shares state, [`route`] and [`plans`] delegate work.

mod agents;
mod catalogue;
mod context;
mod inbox;
mod messages;
mod names;
mod plans;
mod route;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::Scope;
use crate::rpc::{self, ErrorData, ErrorDataExt, tool_error};
use crate::store::StoreError;
use crate::{Caller, Shared, now_ms};
use agents::{list_agents, whoami};
use aicp_proto::aixp::Incoming;
use context::{delete_context, get_context, list_context, share_context};
use inbox::read_inbox;
use messages::send_message;
use plans::{orchestrate, plan_status};
use route::route_to_agent;

pub(crate) use agents::offline_note;
#[cfg(test)]
pub(crate) use catalogue::list;
pub(crate) use catalogue::list_for;
pub(crate) use inbox::{INBOX_PAGE, INBOX_PAGE_BYTES, message_view};

/// What a tool asks of the caller's token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Access {
    Anyone,
    Needs(Scope),
}

/// What a tool needs; None for an unknown tool.
pub(crate) fn scope_of(tool: &str) -> Option<Access> {
    match tool {
        "whoami" => Some(Access::Anyone),
        "share_context" | "delete_context" => Some(Access::Needs(Scope::Share)),
        "list_agents" | "get_context" | "list_context" => Some(Access::Needs(Scope::Read)),
        "route_to_agent"
        | "orchestrate_collaboration"
        | "send_message"
        | "read_inbox"
        | "plan_status" => Some(Access::Needs(Scope::Message)),
        _ => None,
    }
}

/// `tools/call`. `Err` only for what cannot be routed: a missing name or an
/// unknown tool (whose error lists the tools that exist). A missing scope or
/// an argument the tool does not take is a tool result with `isError`.
pub(crate) async fn call(
    shared: &Arc<Shared>,
    caller: &Caller,
    params: &Value,
) -> Result<Value, ErrorData> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| rpc::invalid_params("tools/call needs a string `name`"))?;
    let Some(access) = scope_of(name) else {
        let names = catalogue::names();
        return Err(rpc::invalid_params(format!(
            "unknown tool {name:?}; the tools that exist are: {}",
            names.join(", ")
        ))
        .with_data(json!({"tools": names})));
    };
    if let Access::Needs(scope) = access
        && let Err(e) = caller.require(scope)
    {
        let mut extra = e.data.unwrap_or_else(|| json!({}));
        extra["tool"] = json!(name);
        return Ok(tool_error(
            format!(
                "{}; tools/list shows the tools this token may call",
                e.message
            ),
            extra,
        ));
    }
    let empty = json!({});
    let args = params.get("arguments").unwrap_or(&empty);
    let Some(given) = args.as_object() else {
        return Ok(tool_error("arguments must be an object", json!({})));
    };
    let accepted = catalogue::accepted_arguments(name);
    let mut unknown: Vec<&str> = given
        .keys()
        .map(String::as_str)
        .filter(|k| !accepted.iter().any(|a| a == k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let hint = if name == "read_inbox" {
            format!(" {}", inbox::NO_CURSOR_HINT)
        } else {
            String::new()
        };
        return Ok(tool_error(
            format!(
                "{name} does not take {}; it accepts: {}. Nothing was done.{hint}",
                unknown
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if accepted.is_empty() {
                    "no arguments".to_owned()
                } else {
                    accepted.join(", ")
                }
            ),
            json!({"unknown_arguments": unknown, "accepted_arguments": accepted}),
        ));
    }
    let incoming = Incoming::from_params(params);
    Ok(match name {
        "whoami" => whoami(shared, caller),
        "list_agents" => list_agents(shared).await,
        "share_context" => share_context(shared, caller, args).await,
        "delete_context" => delete_context(shared, caller, args).await,
        "get_context" => get_context(shared, args).await,
        "list_context" => list_context(shared, args).await,
        "plan_status" => plan_status(shared, caller, args).await,
        "send_message" => send_message(shared, caller, &incoming, args).await,
        "read_inbox" => read_inbox(shared, caller, args).await,
        "route_to_agent" => route_to_agent(shared, caller, &incoming, args).await,
        "orchestrate_collaboration" => orchestrate(shared, caller, &incoming, args).await,
        _ => unreachable!("scope_of knows every tool"),
    })
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, Value> {
    match args.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(tool_error(format!("`{name}` must not be empty"), json!({}))),
        Some(_) => Err(tool_error(format!("`{name}` must be a string"), json!({}))),
        None => Err(tool_error(
            format!("missing required argument `{name}`"),
            json!({}),
        )),
    }
}

fn str_list(args: &Value, name: &str) -> Result<Option<Vec<String>>, Value> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    tool_error(format!("`{name}` must be an array of strings"), json!({}))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(tool_error(
            format!("`{name}` must be an array of strings"),
            json!({}),
        )),
    }
}

fn timestamp() -> String {
    iso8601(now_ms())
}

/// A duration as a person says it: "7 days", "1 hour", "90 seconds".
pub(crate) fn duration_words(ms: u64) -> String {
    let (n, unit) = match ms {
        ms if ms >= 86_400_000 && ms % 86_400_000 == 0 => (ms / 86_400_000, "day"),
        ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => (ms / 3_600_000, "hour"),
        ms if ms >= 60_000 && ms % 60_000 == 0 => (ms / 60_000, "minute"),
        ms => (ms.div_ceil(1000), "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// RFC 3339 UTC with milliseconds, as the original hub's `timestamp` fields (no date crate needed).
pub(crate) fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Runs a store operation off the async threads.
pub(crate) async fn with_store<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&dyn super::store::Store) -> T + Send + 'static,
) -> T {
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .expect("store operation panicked")
}

fn store_error(e: &StoreError) -> Value {
    tool_error(e.to_string(), json!({}))
}

#[cfg(test)]
pub(crate) mod testing {
    //! A hub's shared state over an in-memory store, and agents joined to it, for the tools' unit tests.
    pub(crate) use super::call;
    use super::*;
    pub(crate) use crate::auth::Scopes;
    use crate::presence::Agent;
    pub(crate) use crate::store::StoreLimits;
    use crate::store::{AgentRecord, SqliteStore};
    use crate::{Settings, metrics::Metrics, presence::Presence};
    pub(crate) use serde_json::{Value, json};
    pub(crate) use std::sync::Arc;

    /// A hub's shared state over an in-memory store, without a listener.
    pub(crate) fn hub(limits: StoreLimits) -> Arc<Shared> {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        Arc::new(Shared {
            store: Arc::new(SqliteStore::with_connection(conn, limits).unwrap()),
            presence: Presence::default(),
            received: Default::default(),
            metrics: Metrics::new(),
            settings: Settings {
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: std::path::PathBuf::from("/nonexistent"),
                open: false,
                rate_per_sec: 0.0,
                burst: 1,
                max_message_bytes: crate::DEFAULT_MAX_MESSAGE_BYTES,
                max_connections: 1,
                message_ttl_ms: crate::DEFAULT_MESSAGE_TTL.as_millis() as u64,
                max_hops: 16,
                max_turns: 100,
                store: limits,
                keepalive: None,
                allowed_origins: Vec::new(),
                max_connections_per_identity: 16,
            },
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// A connected agent (as a session joins it) and its caller.
    pub(crate) fn connect(shared: &Arc<Shared>, identity: &str, scopes: Scopes) -> Caller {
        let connection = shared.presence.next_connection();
        shared.presence.join(Agent {
            connection,
            identity: identity.into(),
            client_name: None,
            client_version: None,
            capabilities: Vec::new(),
            connected_at: 0,
        });
        shared
            .store
            .agent_seen(&AgentRecord {
                identity: identity.into(),
                client_name: None,
                client_version: None,
                capabilities: Vec::new(),
                last_seen: 0,
            })
            .unwrap();
        // As a session does when it joins: its inbox cursor starts at what is there.
        let seq = shared.store.last_seq(identity).unwrap();
        shared.presence.start_looking(connection, seq);
        Caller {
            connection,
            identity: identity.into(),
            scopes,
        }
    }

    pub(crate) async fn tool(
        shared: &Arc<Shared>,
        caller: &Caller,
        name: &str,
        args: Value,
    ) -> Value {
        call(shared, caller, &json!({"name": name, "arguments": args}))
            .await
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_763_700_000_123), "2025-11-21T04:40:00.123Z");
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration_words(7 * 86_400_000), "7 days");
        assert_eq!(duration_words(3_600_000), "1 hour");
        assert_eq!(duration_words(60_000), "1 minute");
        assert_eq!(duration_words(90_000), "90 seconds");
        assert_eq!(duration_words(1), "1 second");
    }
}
