//! The hub's tools: the original hub's three (`route_to_agent`,
//! `share_context`, `orchestrate_collaboration`, same names, argument schemas
//! and result field names) made real, plus `list_agents`, `send_message` and
//! `read_inbox`, `delete_context`. A tool that fails returns `isError: true` with the reason,
//! so the model can read it; only an unknown tool is a protocol error.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::auth::Scope;
use super::presence::{SHARED_STATE_URI, context_uri};
use super::routing::{self, Candidate};
use super::rpc::{self, ErrorData, tool_error, tool_result};
use super::store::{Message, StoreError};
use super::{Caller, Shared, now_ms};
use aicp_proto::aixp::{self, Incoming, Refused};

/// Longest a `read_inbox` long-poll may wait; larger `wait_ms` values are clamped to it.
pub(crate) const MAX_WAIT_MS: u64 = 30_000;
/// Most subtasks one `orchestrate_collaboration` delivers: a plan, not a mailing list.
pub(crate) const MAX_SUBTASKS: usize = 32;
/// Most messages one `read_inbox` returns.
pub(crate) const INBOX_PAGE: usize = 100;
/// Most bytes of message JSON one inbox page carries (always at least one
/// message): answers stay far below the bridge's 64 MiB hub-message limit
/// however large the messages waiting are; `more`/`pending` say to read again.
pub(crate) const INBOX_PAGE_BYTES: usize = 256 * 1024;
/// Longest message text the `read_inbox` text block repeats; longer ones are
/// cut there (marked `text_truncated`), whole in `structuredContent`. Keeps the
/// second copy of a page small while hosts that show the model only the text
/// block still see every message.
pub(crate) const INBOX_TEXT_EXCERPT_BYTES: usize = 4096;
/// Characters of the task each `orchestrate_collaboration` subtask message
/// quotes; the plan id names the whole, which the caller holds.
pub(crate) const TASK_EXCERPT_CHARS: usize = 200;
/// Most bytes of message text one `orchestrate_collaboration` may store, all
/// subtasks together.
pub(crate) const MAX_PLAN_BYTES: usize = 4 << 20;
/// Most known identities an "unknown recipient" error lists (the rest are counted).
pub(crate) const MAX_NAMES_LISTED: usize = 50;

/// `tools/list`: names, descriptions and input schemas.
pub(crate) fn list() -> Value {
    json!({"tools": [
        {
            "name": "route_to_agent",
            "title": "Route a message to the best agent",
            "description": "Classifies the message's intent and delivers it to the connected agent whose declared capabilities match best (target_capabilities if given). Says to whom; when no agent matches, returns a suggestion of the kind of agent to ask.",
            "inputSchema": {"type": "object", "properties": {
                "message": {"type": "string", "description": "The message or task to route"},
                "target_capabilities": {"type": "array", "items": {"type": "string"}, "description": "Capabilities the recipient should have"},
                "context": {"type": "object", "description": "Extra context delivered with the message"}
            }, "required": ["message"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "share_context",
            "title": "Share context with every agent",
            "description": "Stores a value under a key in the hub's shared state (durable); every agent can read it at aicp://shared-state or aicp://context/{key}.",
            "inputSchema": {"type": "object", "properties": {
                "context_key": {"type": "string", "description": "Key to store under (at most 256 bytes)"},
                "context_value": {"description": "Any JSON value"}
            }, "required": ["context_key", "context_value"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "delete_context",
            "title": "Delete a shared context key",
            "description": "Deletes a key from the hub's shared state (any agent allowed to share context may delete any key, as it may overwrite it). Frees the quota of whoever wrote it last.",
            "inputSchema": {"type": "object", "properties": {
                "context_key": {"type": "string", "description": "Key to delete"}
            }, "required": ["context_key"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "orchestrate_collaboration",
            "title": "Split a task between agents",
            "description": "Splits the task into subtasks (one per line or ';' if listed, else analyse/do/review), assigns every subtask to an agent (named in agents, else the connected ones), delivers each as a message and returns the plan.",
            "inputSchema": {"type": "object", "properties": {
                "task": {"type": "string", "description": "The task to split"},
                "agents": {"type": "array", "items": {"type": "string"}, "description": "Identities to assign to, each connected now or seen before (case-insensitive when unambiguous; default: every other connected agent)"}
            }, "required": ["task"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "whoami",
            "title": "Who am I on the hub",
            "description": "This connection's identity, scopes and declared capabilities: the name other agents use to reach you.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "list_agents",
            "title": "Who is connected",
            "description": "Lists the connected agents: identity, client, declared capabilities. Read-only: to wait for someone to come online, call it again every few seconds; each call is cheap.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "send_message",
            "title": "Send a message to an agent",
            "description": "Stores a message in the recipient's inbox (durable until read or expired) and notifies its sessions. The recipient must be an agent connected now or seen before; an unknown name is an error listing the known ones.",
            "inputSchema": {"type": "object", "properties": {
                "to": {"type": "string", "description": "Recipient identity as list_agents shows it (case-insensitive when unambiguous)"},
                "text": {"type": "string", "description": "The message"},
                "reply_to": {"type": "string", "description": "Id of the message this answers"}
            }, "required": ["to", "text"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "read_inbox",
            "title": "Read my messages",
            "description": "Returns unread messages after `since` (pass the previous next_since to acknowledge what you read), at most 100 and about 256 KiB per call: when `more` is true, call again with next_since. To wait for an answer, pass wait_ms (at most 30000): the call returns as soon as a message arrives, or empty after wait_ms; then call again the same way. One call with wait_ms 30000 replaces thirty one-second polls. Read-only: calling it again and again is how you wait, not a loop.",
            "inputSchema": {"type": "object", "properties": {
                "wait_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS, "description": "How long to wait for a message when none is unread, in milliseconds (at most 30000; default 0)"},
                "since": {"type": "integer", "minimum": 0, "description": "The next_since of your previous read_inbox (0 or absent the first time). Acknowledges, and deletes, the messages up to it that this inbox has already handed you; a larger value acknowledges no more than that"}
            }},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }
    ]})
}

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
        "list_agents" => Some(Access::Needs(Scope::Read)),
        "route_to_agent" | "orchestrate_collaboration" | "send_message" | "read_inbox" => {
            Some(Access::Needs(Scope::Message))
        }
        _ => None,
    }
}

/// `tools/call`. `Err` only for what cannot be routed (unknown tool, missing scope).
pub(crate) async fn call(
    shared: &Arc<Shared>,
    caller: &Caller,
    params: &Value,
) -> Result<Value, ErrorData> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| rpc::invalid_params("tools/call needs a string `name`"))?;
    let access =
        scope_of(name).ok_or_else(|| rpc::invalid_params(format!("unknown tool {name:?}")))?;
    if let Access::Needs(scope) = access {
        caller.require(scope)?;
    }
    let empty = json!({});
    let args = params.get("arguments").unwrap_or(&empty);
    if !args.is_object() {
        return Ok(tool_error("arguments must be an object", json!({})));
    }
    let incoming = Incoming::from_params(params);
    Ok(match name {
        "whoami" => whoami(shared, caller),
        "list_agents" => list_agents(shared),
        "share_context" => share_context(shared, caller, args).await,
        "delete_context" => delete_context(shared, caller, args).await,
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

/// Unicode general category Cf (format characters: zero-width spaces and
/// joiners, bidi controls, the BOM, tags), listed by hand because std has no
/// category lookup. They render as nothing, so a name holding one looks like
/// another identity and reaches nobody.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Every identity a message may be addressed to: connected now, or seen
/// before (the store's agents, kept across restarts). Sorted, no repeats.
async fn known_identities(shared: &Arc<Shared>) -> Result<Vec<String>, StoreError> {
    let seen = with_store(shared, |s| s.agents_seen()).await?;
    let mut known: Vec<String> = seen.into_iter().map(|a| a.identity).collect();
    known.extend(shared.presence.list().into_iter().map(|a| a.identity));
    known.sort();
    known.dedup();
    Ok(known)
}

/// The known identity `raw` names, or why it names none. Surrounding
/// whitespace is trimmed; whitespace, control or format characters inside
/// are refused. Identities are case-sensitive (a token's `sub` as issued), but
/// an address matches case-insensitively when exactly one known identity does,
/// so `Bob` reaches `bob`; an exact match always wins.
pub(crate) fn resolve_recipient(raw: &str, known: &[String]) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("the recipient name is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || is_format_char(c))
    {
        return Err(format!(
            "the recipient name {raw:?} contains U+{:04X} (whitespace, control or invisible format character); identities never do",
            c as u32
        ));
    }
    if known.iter().any(|k| k == name) {
        return Ok(name.to_owned());
    }
    let lower = name.to_lowercase();
    let folded: Vec<&String> = known.iter().filter(|k| k.to_lowercase() == lower).collect();
    match folded.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no agent called {name:?} has ever connected to this hub, so nobody would read the message; known agents: {}",
            list_names(known)
        )),
        several => Err(format!(
            "{name:?} matches several agents when case is ignored ({}); use the exact name",
            several
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `a, b, c` with at most [`MAX_NAMES_LISTED`] names, then how many more.
fn list_names(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut out = names
        .iter()
        .take(MAX_NAMES_LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_NAMES_LISTED {
        out.push_str(&format!(" and {} more", names.len() - MAX_NAMES_LISTED));
    }
    out
}

/// The tool error for a name that reaches nobody; carries the known names.
fn unknown_recipient(reason: String, known: &[String]) -> Value {
    let listed: Vec<&String> = known.iter().take(MAX_NAMES_LISTED).collect();
    tool_error(reason, json!({"known_agents": listed}))
}

fn timestamp() -> String {
    iso8601(now_ms())
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

fn whoami(shared: &Arc<Shared>, caller: &Caller) -> Value {
    let capabilities = shared
        .presence
        .capabilities_of_connection(caller.connection)
        .unwrap_or_default();
    tool_result(
        json!({"identity": caller.identity, "connection": caller.connection, "scopes": caller.scopes.to_claim(), "capabilities": capabilities}),
        false,
    )
}

fn list_agents(shared: &Arc<Shared>) -> Value {
    let agents: Vec<Value> = shared
        .presence
        .list()
        .into_iter()
        .map(|a| {
            json!({
                "identity": a.identity,
                "connection": a.connection,
                "client": {"name": a.client_name, "version": a.client_version},
                "capabilities": a.capabilities,
                "connected_at": iso8601(a.connected_at),
            })
        })
        .collect();
    tool_result(json!({"count": agents.len(), "agents": agents}), false)
}

async fn share_context(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
    let key = match str_arg(args, "context_key") {
        Ok(k) => k.to_owned(),
        Err(e) => return e,
    };
    let Some(value) = args.get("context_value").cloned() else {
        return tool_error("missing required argument `context_value`", json!({}));
    };
    let by = caller.identity.clone();
    let k = key.clone();
    match with_store(shared, move |s| s.put_state(&k, &value, &by, now_ms())).await {
        Ok(()) => {
            shared.presence.changed(SHARED_STATE_URI);
            shared.presence.changed(&context_uri(&key));
            tool_result(
                json!({"status": "success", "context_key": key, "shared_by": caller.identity, "timestamp": timestamp()}),
                false,
            )
        }
        Err(e) => store_error(&e),
    }
}

/// Who may delete: any holder of the `share` scope, not only the last
/// writer. `share_context` already lets any of them overwrite any key, so
/// restricting deletion would protect nothing, and a key whose writer has left
/// would otherwise stay (and count against the store) until an admin edits the file.
async fn delete_context(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
    let key = match str_arg(args, "context_key") {
        Ok(k) => k.to_owned(),
        Err(e) => return e,
    };
    let k = key.clone();
    match with_store(shared, move |s| s.delete_state(&k)).await {
        Ok(deleted) => {
            if deleted {
                shared.presence.changed(SHARED_STATE_URI);
                shared.presence.changed(&context_uri(&key));
            }
            tool_result(
                json!({"status": "success", "context_key": key, "deleted": deleted, "deleted_by": caller.identity, "timestamp": timestamp()}),
                false,
            )
        }
        Err(e) => store_error(&e),
    }
}

/// Why a delivery did not happen.
enum NotDelivered {
    Refused(Refused),
    Store(StoreError),
}

impl NotDelivered {
    fn into_result(self) -> Value {
        match self {
            NotDelivered::Refused(r @ Refused::HopLimit { .. }) => tool_error(
                r.to_string(),
                json!({"aixpStatus": aicp_proto::aixp::AixpStatus::COMMUNICATION}),
            ),
            NotDelivered::Refused(r) => tool_error(r.to_string(), json!({})),
            NotDelivered::Store(e) => store_error(&e),
        }
    }
}

fn new_message_id() -> String {
    format!("msg-{:x}-{:016x}", now_ms(), fastrand::u64(..))
}

/// Stores one message with its envelope and wakes the recipient.
async fn deliver(
    shared: &Arc<Shared>,
    caller: &Caller,
    incoming: &Incoming,
    to: &str,
    text: String,
    reply_to: Option<String>,
) -> Result<Message, NotDelivered> {
    let now = now_ms();
    let id = new_message_id();
    let env = aixp::next_envelope(
        incoming,
        id.clone(),
        &caller.identity,
        now,
        shared.settings.message_ttl_ms,
        shared.settings.max_hops,
    )
    .map_err(NotDelivered::Refused)?;
    let mut msg = Message {
        seq: 0,
        id,
        from: caller.identity.clone(),
        to: to.to_owned(),
        text,
        reply_to,
        created_at: now,
        aixp: env,
    };
    let m = msg.clone();
    msg.seq = with_store(shared, move |s| s.push_message(&m))
        .await
        .map_err(NotDelivered::Store)?;
    shared.metrics.messages_delivered.inc();
    shared.presence.inbox_changed(to);
    Ok(msg)
}

async fn send_message(
    shared: &Arc<Shared>,
    caller: &Caller,
    incoming: &Incoming,
    args: &Value,
) -> Value {
    let (to, text) = match (str_arg(args, "to"), str_arg(args, "text")) {
        (Ok(to), Ok(text)) => (to.to_owned(), text.to_owned()),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let known = match known_identities(shared).await {
        Ok(k) => k,
        Err(e) => return store_error(&e),
    };
    let to = match resolve_recipient(&to, &known) {
        Ok(to) => to,
        Err(reason) => return unknown_recipient(reason, &known),
    };
    let reply_to = match args.get("reply_to") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return tool_error("`reply_to` must be a string", json!({})),
    };
    // A reply continues its thread's envelope when the caller sent none.
    let mut incoming = incoming.clone();
    if let (Some(rt), None) = (&reply_to, incoming.hops) {
        let rt = rt.clone();
        if let Ok(Some(parent)) = with_store(shared, move |s| s.get_message(&rt, now_ms())).await {
            incoming.hops = Some(parent.aixp.hops);
            incoming.origin = Some(parent.aixp.origin);
            incoming.expires_at = incoming.expires_at.or(Some(parent.aixp.expires_at));
        }
    }
    match deliver(shared, caller, &incoming, &to, text, reply_to).await {
        Ok(m) => tool_result(
            json!({"status": "delivered", "message_id": m.id, "to": m.to, "recipient_known": true, "recipient_connected": shared.presence.is_connected(&m.to), "aixp": m.aixp, "timestamp": iso8601(m.created_at)}),
            false,
        ),
        Err(e) => e.into_result(),
    }
}

async fn read_inbox(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
    let wait_ms = match args.get("wait_ms") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) => n.min(MAX_WAIT_MS),
            None => return tool_error("`wait_ms` must be a non-negative integer", json!({})),
        },
    };
    let since = match args.get("since") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) => n,
            None => return tool_error("`since` must be a non-negative integer", json!({})),
        },
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    // Subscribed before the first look, so a message stored in between still wakes us.
    let mut signal = shared.presence.inbox_signal(&caller.identity);
    loop {
        signal.borrow_and_update();
        let me = caller.identity.clone();
        let got = with_store(shared, move |s| {
            s.inbox_page(&me, since, now_ms(), INBOX_PAGE, INBOX_PAGE_BYTES)
        })
        .await;
        let page = match got {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        };
        let messages = page.messages;
        let done = !messages.is_empty() || tokio::time::Instant::now() >= deadline;
        if !done {
            tokio::select! {
                _ = signal.changed() => continue,
                _ = tokio::time::sleep_until(deadline) => continue,
                _ = shared.shutdown.cancelled() => {}
            }
        }
        // Never beyond what this inbox has handed out: echoing a `since` from
        // the future would make the next call acknowledge messages unread.
        let next_since = messages.last().map_or(page.acked_through, |m| m.seq);
        return inbox_result(json!({
            "messages": messages,
            "next_since": next_since,
            "more": page.pending > 0,
            "pending": page.pending,
        }));
    }
}

/// `read_inbox`'s answer: the page in full as `structuredContent`; the text
/// block is the same JSON with each message text cut to
/// [`INBOX_TEXT_EXCERPT_BYTES`], so one answer carries the page about once, not twice.
fn inbox_result(structured: Value) -> Value {
    let mut brief = structured.clone();
    let mut cut = false;
    for m in brief["messages"].as_array_mut().into_iter().flatten() {
        if let Some(text) = m["text"].as_str()
            && text.len() > INBOX_TEXT_EXCERPT_BYTES
        {
            let short = format!("{}…", truncate_bytes(text, INBOX_TEXT_EXCERPT_BYTES));
            m["text"] = json!(short);
            m["text_truncated"] = json!(true);
            cut = true;
        }
    }
    if cut {
        brief["note"] = json!(format!(
            "message texts longer than {INBOX_TEXT_EXCERPT_BYTES} bytes are cut here; structuredContent has them whole"
        ));
    }
    json!({
        "content": [{"type": "text", "text": brief.to_string()}],
        "structuredContent": structured,
        "isError": false,
    })
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The first `max` characters of `task` on one line, with `…` when cut.
fn task_excerpt(task: &str, max: usize) -> String {
    let flat: String = task
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max + 1)
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

async fn route_to_agent(
    shared: &Arc<Shared>,
    caller: &Caller,
    incoming: &Incoming,
    args: &Value,
) -> Value {
    let message = match str_arg(args, "message") {
        Ok(m) => m.to_owned(),
        Err(e) => return e,
    };
    let targets = match str_list(args, "target_capabilities") {
        Ok(t) => t,
        Err(e) => return e,
    };
    let intent = routing::classify(&message);
    let wanted: Vec<String> = targets
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| intent.capabilities.iter().map(|c| c.to_string()).collect());
    let candidates = shared.presence.candidates(&caller.identity);
    let ts = timestamp();
    let Some(best) = routing::best_match(&candidates, &wanted, |_| 0).cloned() else {
        return tool_result(
            json!({
                "status": "suggested",
                "agent": intent.suggested_agent,
                "intent": intent.name,
                "delivered": false,
                "target_capabilities": wanted,
                "suggestion": format!(
                    "No connected agent declares {}; ask a {} agent (connected now: {}).",
                    if wanted.is_empty() { "any capability".to_owned() } else { wanted.join(", ") },
                    intent.suggested_agent,
                    candidates.len()
                ),
                "timestamp": ts,
            }),
            false,
        );
    };
    let text = match args.get("context") {
        Some(ctx) if !ctx.is_null() => format!("{message}\n\nContext: {ctx}"),
        _ => message,
    };
    match deliver(shared, caller, incoming, &best.identity, text, None).await {
        Ok(m) => tool_result(
            json!({
                "status": "routed",
                "agent": best.identity,
                "intent": intent.name,
                "delivered": true,
                "message_id": m.id,
                "agent_capabilities": best.capabilities,
                "target_capabilities": wanted,
                "suggestion": format!("Delivered to {} (capabilities: {}).", best.identity, best.capabilities.join(", ")),
                "aixp": m.aixp,
                "timestamp": ts,
            }),
            false,
        ),
        Err(e) => e.into_result(),
    }
}

async fn orchestrate(
    shared: &Arc<Shared>,
    caller: &Caller,
    incoming: &Incoming,
    args: &Value,
) -> Value {
    let task = match str_arg(args, "task") {
        Ok(t) => t.to_owned(),
        Err(e) => return e,
    };
    let named = match str_list(args, "agents") {
        Ok(a) => a,
        Err(e) => return e,
    };
    // Check the hop cap once, before anything is delivered: a plan is delivered whole or not at all.
    if let Err(r) = aixp::next_envelope(
        incoming,
        String::new(),
        &caller.identity,
        now_ms(),
        shared.settings.message_ttl_ms,
        shared.settings.max_hops,
    ) {
        return NotDelivered::Refused(r).into_result();
    }
    let agents: Vec<Candidate> = match named.filter(|n| !n.is_empty()) {
        Some(names) => {
            let seen = with_store(shared, |s| s.agents_seen())
                .await
                .unwrap_or_default();
            let known = match known_identities(shared).await {
                Ok(k) => k,
                Err(e) => return store_error(&e),
            };
            let mut out: Vec<Candidate> = Vec::new();
            for raw in names {
                // Every name is checked before anything is delivered: a plan is delivered whole or not at all.
                let n = match resolve_recipient(&raw, &known) {
                    Ok(n) => n,
                    Err(reason) => return unknown_recipient(reason, &known),
                };
                if out.iter().any(|c| c.identity == n) {
                    continue;
                }
                let capabilities = shared
                    .presence
                    .capabilities_of(&n)
                    .or_else(|| {
                        seen.iter()
                            .find(|a| a.identity == n)
                            .map(|a| a.capabilities.clone())
                    })
                    .unwrap_or_default();
                out.push(Candidate {
                    identity: n,
                    capabilities,
                });
            }
            out
        }
        None => shared.presence.candidates(&caller.identity),
    };
    let subtasks = routing::split_task(&task);
    if subtasks.len() > MAX_SUBTASKS {
        return tool_error(
            format!(
                "the task splits into {} subtasks; the hub plans at most {MAX_SUBTASKS} at once",
                subtasks.len()
            ),
            json!({}),
        );
    }
    let assignment = routing::assign(&subtasks, &agents);
    let plan_id = format!("plan-{:x}-{:08x}", now_ms(), fastrand::u32(..));
    let total = subtasks.len();
    // Each message carries its own subtask and a short quote of the task, not
    // the whole task again (32 copies of a 1 MB task were 35 MB stored).
    let excerpt = task_excerpt(&task, TASK_EXCERPT_CHARS);
    let texts: Vec<String> = subtasks
        .iter()
        .enumerate()
        .map(|(i, st)| {
            format!(
                "[{plan_id}] subtask {}/{total} of \"{excerpt}\": {}",
                i + 1,
                st.description
            )
        })
        .collect();
    let plan_bytes: usize = texts
        .iter()
        .zip(&assignment)
        .filter(|(_, who)| who.is_some())
        .map(|(t, _)| t.len())
        .sum();
    if plan_bytes > MAX_PLAN_BYTES {
        return tool_error(
            format!(
                "the plan's subtask messages would store {plan_bytes} bytes; one orchestrate_collaboration stores at most {MAX_PLAN_BYTES}: send a shorter task, or share it with share_context and name the key"
            ),
            json!({"max_bytes": MAX_PLAN_BYTES}),
        );
    }
    let mut steps = Vec::with_capacity(total);
    let mut failures = Vec::new();
    for (i, ((st, who), text)) in subtasks.iter().zip(&assignment).zip(texts).enumerate() {
        let mut step = json!({
            "index": i + 1,
            "description": st.description,
            "capabilities": st.capabilities,
            "agent": who,
            "delivered": false,
            "message_id": null,
        });
        if let Some(who) = who {
            match deliver(shared, caller, incoming, who, text, None).await {
                Ok(m) => {
                    step["delivered"] = json!(true);
                    step["message_id"] = json!(m.id);
                }
                Err(NotDelivered::Store(e)) => {
                    step["error"] = json!(e.to_string());
                    failures.push(e.to_string());
                }
                Err(NotDelivered::Refused(r)) => return NotDelivered::Refused(r).into_result(),
            }
        }
        steps.push(step);
    }
    let status = if agents.is_empty() {
        "planned_unassigned"
    } else if failures.is_empty() {
        "delegated"
    } else {
        "partially_delegated"
    };
    tool_result(
        json!({
            "status": status,
            "plan_id": plan_id,
            "task": task,
            "agents": agents.iter().map(|a| &a.identity).collect::<Vec<_>>(),
            "subtasks": steps,
            "timestamp": timestamp(),
        }),
        !failures.is_empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;
    use crate::presence::Agent;
    use crate::store::{AgentRecord, SqliteStore, StoreLimits};
    use crate::{Settings, metrics::Metrics, presence::Presence};

    /// A hub's shared state over an in-memory store, without a listener.
    fn hub(limits: StoreLimits) -> Arc<Shared> {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        Arc::new(Shared {
            store: Arc::new(SqliteStore::with_connection(conn, limits).unwrap()),
            presence: Presence::default(),
            metrics: Metrics::new(),
            settings: Settings {
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: std::path::PathBuf::from("/nonexistent"),
                open: false,
                rate_per_sec: 0.0,
                burst: 1,
                max_message_bytes: crate::DEFAULT_MAX_MESSAGE_BYTES,
                max_connections: 1,
                message_ttl_ms: 60_000,
                max_hops: 16,
                store: limits,
                keepalive: None,
                allowed_origins: Vec::new(),
                max_connections_per_identity: 16,
            },
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// A connected agent (as a session joins it) and its caller.
    fn connect(shared: &Arc<Shared>, identity: &str, scopes: Scopes) -> Caller {
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
        Caller {
            connection,
            identity: identity.into(),
            scopes,
        }
    }

    async fn tool(shared: &Arc<Shared>, caller: &Caller, name: &str, args: Value) -> Value {
        call(shared, caller, &json!({"name": name, "arguments": args}))
            .await
            .unwrap()
    }

    #[test]
    fn recipient_names_are_trimmed_folded_and_must_be_known() {
        let known: Vec<String> = ["alice", "bob", "Dave", "dave"].map(String::from).to_vec();
        assert_eq!(resolve_recipient("bob", &known).unwrap(), "bob");
        assert_eq!(resolve_recipient(" bob \n", &known).unwrap(), "bob");
        assert_eq!(resolve_recipient("Bob", &known).unwrap(), "bob");
        assert_eq!(
            resolve_recipient("dave", &known).unwrap(),
            "dave",
            "exact wins"
        );
        let e = resolve_recipient("DAVE", &known).unwrap_err();
        assert!(e.contains("several") && e.contains("Dave, dave"), "{e}");
        for bad in [
            "b\u{200b}ob",
            "b\u{2060}ob",
            "\u{feff}bob",
            "b\u{200d}ob",
            "b ob",
            "b\tob",
            "b\u{7}ob",
        ] {
            let e = resolve_recipient(bad, &known).unwrap_err();
            assert!(e.contains("U+"), "{bad:?}: {e}");
        }
        let e = resolve_recipient("nobody-ever", &known).unwrap_err();
        assert!(e.contains("alice, bob, Dave, dave"), "{e}");
        assert!(resolve_recipient("   ", &known).is_err());
        let many: Vec<String> = (0..MAX_NAMES_LISTED + 7)
            .map(|i| format!("a{i:03}"))
            .collect();
        let e = resolve_recipient("zed", &many).unwrap_err();
        assert!(e.ends_with("and 7 more"), "{e}");
    }

    #[tokio::test]
    async fn messages_to_unknown_names_are_refused_not_stored() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        for (to, ok) in [
            ("Bob", true),
            ("bob ", true),
            ("b\u{200b}ob", false),
            ("nobody-ever", false),
        ] {
            let r = tool(
                &shared,
                &alice,
                "send_message",
                json!({"to": to, "text": "hi"}),
            )
            .await;
            let sc = &r["structuredContent"];
            if ok {
                assert_eq!(
                    (sc["to"].as_str(), r["isError"].as_bool()),
                    (Some("bob"), Some(false)),
                    "{r}"
                );
                assert_eq!(sc["recipient_known"], true);
            } else {
                assert_eq!(r["isError"], true, "{to:?}: {r}");
                assert_eq!(sc["known_agents"], json!(["alice", "bob"]), "{r}");
            }
        }
        let r = tool(&shared, &bob, "read_inbox", json!({})).await;
        assert_eq!(
            r["structuredContent"]["messages"].as_array().unwrap().len(),
            2,
            "{r}"
        );
        let r = tool(
            &shared,
            &alice,
            "orchestrate_collaboration",
            json!({"task": "a; b", "agents": ["BOB", "ghost"]}),
        )
        .await;
        assert_eq!(r["isError"], true, "{r}");
        let r = tool(
            &shared,
            &alice,
            "orchestrate_collaboration",
            json!({"task": "a; b", "agents": ["BOB"]}),
        )
        .await;
        assert_eq!(r["structuredContent"]["agents"], json!(["bob"]), "{r}");
        assert_eq!(
            shared.store.read_inbox("ghost", 0, now_ms(), 10).unwrap(),
            vec![]
        );
        assert_eq!(
            shared.store.read_inbox("BOB", 0, now_ms(), 10).unwrap(),
            vec![]
        );
    }

    #[tokio::test]
    async fn one_inbox_answer_is_bounded_and_says_there_is_more() {
        let shared = hub(StoreLimits {
            max_pending_bytes_per_sender: u64::MAX,
            ..Default::default()
        });
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        let big = "x".repeat(1_000_000);
        for _ in 0..3 {
            let r = tool(
                &shared,
                &alice,
                "send_message",
                json!({"to": "bob", "text": big}),
            )
            .await;
            assert_eq!(r["isError"], false);
        }
        let mut since = json!(0);
        for left in [2, 1, 0] {
            let r = tool(&shared, &bob, "read_inbox", json!({"since": since})).await;
            let sc = &r["structuredContent"];
            assert_eq!(sc["messages"].as_array().unwrap().len(), 1);
            assert_eq!(sc["messages"][0]["text"].as_str().unwrap().len(), 1_000_000);
            assert_eq!(
                (sc["more"].as_bool(), sc["pending"].as_u64()),
                (Some(left > 0), Some(left)),
                "{sc:.200}"
            );
            // The text block repeats the page with each text cut to the excerpt, not a second megabyte.
            let text = r["content"][0]["text"].as_str().unwrap();
            assert!(
                text.len() < INBOX_TEXT_EXCERPT_BYTES + 2000,
                "{}",
                text.len()
            );
            let brief: Value = serde_json::from_str(text).unwrap();
            assert_eq!(brief["messages"][0]["text_truncated"], true);
            assert!(r.to_string().len() < 1_000_000 + INBOX_TEXT_EXCERPT_BYTES + 4000);
            since = sc["next_since"].clone();
        }
        // Small messages: one page carries up to INBOX_PAGE_BYTES of them, and the text block equals structuredContent.
        for i in 0..90 {
            tool(
                &shared,
                &alice,
                "send_message",
                json!({"to": "bob", "text": format!("{i}: {}", "y".repeat(3_500))}),
            )
            .await;
        }
        let r = tool(&shared, &bob, "read_inbox", json!({"since": since})).await;
        let sc = &r["structuredContent"];
        let n = sc["messages"].as_array().unwrap().len();
        assert!(
            (50..90).contains(&n),
            "{n} messages of ~3.5 KB in a 256 KiB page"
        );
        assert_eq!(sc["pending"].as_u64(), Some(90 - n as u64));
        assert!(sc.to_string().len() <= INBOX_PAGE_BYTES + 1000);
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert!(
            &text == sc,
            "short texts are repeated whole in the text block"
        );
    }

    #[tokio::test]
    async fn a_plan_stores_each_subtask_once_and_is_bounded() {
        let shared = hub(StoreLimits {
            max_pending_bytes_per_sender: u64::MAX,
            ..Default::default()
        });
        let alice = connect(&shared, "alice", Scopes::all());
        connect(&shared, "bob", Scopes::all());
        // 32 lines of ~31 KB: one 1 MB task.
        let task: String = (0..32)
            .map(|i| format!("step {i} {}\n", "w".repeat(31_000)))
            .collect();
        let r = tool(
            &shared,
            &alice,
            "orchestrate_collaboration",
            json!({"task": task, "agents": ["bob"]}),
        )
        .await;
        assert_eq!(
            r["structuredContent"]["status"],
            "delegated",
            "{:.300}",
            r.to_string()
        );
        let stored: usize = shared
            .store
            .read_inbox("bob", 0, now_ms(), 100)
            .unwrap()
            .iter()
            .map(|m| m.text.len())
            .sum();
        assert!(
            stored < task.len() + 32 * 400,
            "{stored} bytes stored for a {} byte task",
            task.len()
        );
        // A task whose default phases would store more than MAX_PLAN_BYTES is refused whole.
        let huge = "v".repeat(MAX_PLAN_BYTES / 2);
        let r = tool(
            &shared,
            &alice,
            "orchestrate_collaboration",
            json!({"task": huge, "agents": ["bob"]}),
        )
        .await;
        assert_eq!(r["isError"], true);
        let why = r["structuredContent"]["error"].as_str().unwrap();
        assert!(why.contains(&MAX_PLAN_BYTES.to_string()), "{why}");
        assert_eq!(
            shared
                .store
                .read_inbox("bob", 0, now_ms(), 100)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(task_excerpt("a\nb", 10), "a b");
        assert_eq!(task_excerpt("abcdef", 3), "abc…");
        assert_eq!(truncate_bytes("héllo", 2), "h");
    }

    #[tokio::test]
    async fn next_since_never_runs_ahead_of_what_was_returned() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        let send = |text: &'static str| json!({"to": "bob", "text": text});
        tool(&shared, &alice, "send_message", send("one")).await;
        // A `since` far ahead of anything bob was handed: nothing is deleted and it is not echoed.
        let r = tool(&shared, &bob, "read_inbox", json!({"since": 1_000_000})).await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["messages"][0]["text"], "one", "{r}");
        let first = sc["messages"][0]["seq"].as_u64().unwrap();
        assert_eq!(sc["next_since"], first);
        // Following a bogus cursor again does not delete a message stored meanwhile.
        tool(&shared, &alice, "send_message", send("two")).await;
        let r = tool(&shared, &bob, "read_inbox", json!({"since": u64::MAX})).await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["messages"][0]["text"], "two", "{r}");
        let r = tool(&shared, &bob, "read_inbox", json!({"since": u64::MAX})).await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["messages"], json!([]), "{r}");
        assert!(sc["next_since"].as_u64().unwrap() <= first + 1, "{r}");
        let tools = list();
        let schema = &tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "read_inbox")
            .unwrap()["inputSchema"]["properties"]["since"];
        assert!(schema["description"].is_string(), "{schema}");
    }

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_763_700_000_123), "2025-11-21T04:40:00.123Z");
    }

    /// The bridge's guard exempts reads from its repeat limit on the strength of
    /// these hints, so they must be true: reads are exactly the tools that change nothing
    /// another agent sees (an inbox read acknowledges only the caller's own messages).
    #[test]
    fn every_tool_is_annotated_and_only_reads_say_read_only() {
        let tools = list();
        let mut reads: Vec<&str> = Vec::new();
        for t in tools["tools"].as_array().unwrap() {
            let ann = &t["annotations"];
            let read_only = ann["readOnlyHint"]
                .as_bool()
                .unwrap_or_else(|| panic!("{} has no readOnlyHint", t["name"]));
            assert_eq!(ann["openWorldHint"], false, "{}", t["name"]);
            if read_only {
                reads.push(t["name"].as_str().unwrap());
            } else {
                assert!(ann["destructiveHint"].is_boolean(), "{}", t["name"]);
            }
        }
        reads.sort_unstable();
        assert_eq!(reads, ["list_agents", "read_inbox", "whoami"]);
        let inbox = tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "read_inbox")
            .unwrap();
        assert!(
            inbox["description"]
                .as_str()
                .unwrap()
                .contains("at most 30000")
        );
    }

    #[test]
    fn every_listed_tool_has_a_scope() {
        let tools = list()["tools"].as_array().unwrap().clone();
        for t in &tools {
            assert!(scope_of(t["name"].as_str().unwrap()).is_some(), "{t}");
        }
        assert_eq!(tools.len(), 8, "the tool count (docs/hub.md lists each)");
        assert_eq!(
            scope_of("delete_context"),
            Some(Access::Needs(Scope::Share))
        );
    }

    #[tokio::test]
    async fn delete_context_and_per_identity_context_quotas() {
        let shared = hub(StoreLimits {
            max_context_bytes_per_identity: 1000,
            ..Default::default()
        });
        let mallory = connect(&shared, "mallory", Scopes::all());
        let alice = connect(&shared, "alice", Scopes::all());
        let share = |k: String, v: Value| json!({"context_key": k, "context_value": v});
        let r = tool(
            &shared,
            &mallory,
            "share_context",
            share("k".repeat(257), json!(1)),
        )
        .await;
        assert_eq!(r["isError"], true, "{r}");
        assert!(
            r["structuredContent"]["error"]
                .as_str()
                .unwrap()
                .contains("at most 256"),
            "{r}"
        );
        let r = tool(
            &shared,
            &mallory,
            "share_context",
            share("big".into(), json!("x".repeat(990))),
        )
        .await;
        assert_eq!(r["isError"], false, "{r}");
        let r = tool(
            &shared,
            &mallory,
            "share_context",
            share("more".into(), json!("x")),
        )
        .await;
        assert_eq!(r["isError"], true, "{r}");
        assert!(
            r["structuredContent"]["error"]
                .as_str()
                .unwrap()
                .contains("at most 1000"),
            "{r}"
        );
        // Mallory's full quota leaves alice's untouched.
        let r = tool(
            &shared,
            &alice,
            "share_context",
            share("plan".into(), json!("x".repeat(900))),
        )
        .await;
        assert_eq!(r["isError"], false, "{r}");
        let r = tool(
            &shared,
            &alice,
            "delete_context",
            json!({"context_key": "big"}),
        )
        .await;
        assert_eq!(
            (
                r["isError"].as_bool(),
                r["structuredContent"]["deleted"].as_bool()
            ),
            (Some(false), Some(true)),
            "{r}"
        );
        let r = tool(
            &shared,
            &alice,
            "delete_context",
            json!({"context_key": "big"}),
        )
        .await;
        assert_eq!(r["structuredContent"]["deleted"], false, "{r}");
        let r = tool(
            &shared,
            &mallory,
            "share_context",
            share("more".into(), json!("x")),
        )
        .await;
        assert_eq!(r["isError"], false, "the quota is free again: {r}");
        let reader = connect(&shared, "reader", Scopes::from_list(["read"]).unwrap());
        let e = call(
            &shared,
            &reader,
            &json!({"name": "delete_context", "arguments": {"context_key": "plan"}}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, aicp_proto::codes::FORBIDDEN);
    }
}
