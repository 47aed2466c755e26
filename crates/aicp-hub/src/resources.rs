//! The hub's resources: `aicp://shared-state` (the whole snapshot as one JSON
//! object, values as JSON), `aicp://context/{key}` (one value) and
//! `aicp://inbox/{agent}` (the caller's own unread messages: a peek, it never
//! marks them read; `read_inbox` does). Subscriptions are per session (see `session.rs`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::auth::Scope;
use super::presence::{
    CONTEXT_URI_PREFIX, INBOX_URI_PREFIX, SHARED_STATE_URI, inbox_uri, percent_decode,
};
use super::rpc::{self, ErrorData, ErrorDataExt};
use super::store::InboxRead;
use super::tools::{INBOX_PAGE, INBOX_PAGE_BYTES, message_view, with_store};
use super::{Caller, Shared, now_ms};
use aicp_proto::codes::{self, RESOURCE_NOT_FOUND};

const JSON: &str = "application/json";
/// Longest URI accepted, in bytes: subscriptions keep theirs for the connection's life.
pub(crate) const MAX_URI_BYTES: usize = 2048;

pub(crate) fn list(caller: &Caller) -> Value {
    json!({"resources": [
        {"uri": SHARED_STATE_URI, "name": "shared-state", "title": "Shared state",
         "description": "Every shared context key and its JSON value", "mimeType": JSON},
        {"uri": inbox_uri(&caller.identity), "name": "inbox", "title": "My inbox",
         "description": "Unread messages for this agent, oldest first; reading this never marks them read (read_inbox does)", "mimeType": JSON},
    ]})
}

pub(crate) fn templates() -> Value {
    json!({"resourceTemplates": [
        {"uriTemplate": "aicp://context/{key}", "name": "context", "title": "One shared context value",
         "description": "The JSON value shared under {key}, percent-encoded as RFC 6570 expands it (a space is %20, / is %2F); list keys with list_context", "mimeType": JSON},
        {"uriTemplate": "aicp://inbox/{agent}", "name": "inbox", "title": "An agent's inbox",
         "description": "Unread messages for {agent} (a peek: nothing is marked read); only the agent itself may read it", "mimeType": JSON},
    ]})
}

/// What a URI names, after checking the caller may see it.
pub(crate) enum Target {
    SharedState,
    Context(String),
    Inbox(String),
}

pub(crate) fn resolve(caller: &Caller, uri: &str) -> Result<Target, ErrorData> {
    if uri.len() > MAX_URI_BYTES {
        // Not echoed back: the URI is the thing that is too large.
        return Err(rpc::err(
            codes::TOO_LARGE,
            format!(
                "the URI is {} bytes; this hub accepts URIs of at most {MAX_URI_BYTES}",
                uri.len()
            ),
        )
        .with_data(
            json!({"maxBytes": MAX_URI_BYTES, "aixpStatus": aicp_proto::aixp::AixpStatus::DATA_FORMAT}),
        ));
    }
    let not_found = || {
        rpc::err(RESOURCE_NOT_FOUND, format!("resource not found: {uri}"))
            .with_data(json!({"uri": uri}))
    };
    if uri == SHARED_STATE_URI {
        caller.require(Scope::Read)?;
        Ok(Target::SharedState)
    } else if let Some(key) = uri
        .strip_prefix(CONTEXT_URI_PREFIX)
        .filter(|k| !k.is_empty())
    {
        caller.require(Scope::Read)?;
        // The key part is always percent-decoded: the canonical (encoded) form
        // and a hand-written unencoded one name the same key; a literal `%` in
        // a key is written `%25`.
        let key = percent_decode(key).ok_or_else(not_found)?;
        Ok(Target::Context(key))
    } else if let Some(agent) = uri.strip_prefix(INBOX_URI_PREFIX) {
        caller.require(Scope::Message)?;
        if agent != caller.identity {
            // Another agent's inbox is private; say so without confirming it exists.
            return Err(not_found());
        }
        Ok(Target::Inbox(agent.to_owned()))
    } else {
        Err(not_found())
    }
}

pub(crate) async fn read(
    shared: &Arc<Shared>,
    caller: &Caller,
    params: &Value,
) -> Result<Value, ErrorData> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| rpc::invalid_params("resources/read needs a string `uri`"))?;
    let body = match resolve(caller, uri)? {
        Target::SharedState => with_store(shared, |s| s.snapshot())
            .await
            .map(Value::Object),
        Target::Context(key) => match with_store(shared, move |s| s.get_state(&key)).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => {
                return Err(
                    rpc::err(RESOURCE_NOT_FOUND, format!("no shared context under {uri}"))
                        .with_data(json!({"uri": uri})),
                );
            }
            Err(e) => Err(e),
        },
        // Paged by bytes like read_inbox, so one read stays far below the
        // bridge's message limit. A peek: a resource read never marks.
        Target::Inbox(agent) => with_store(shared, move |s| {
            s.inbox_page(&InboxRead {
                recipient: &agent,
                mark_as: None,
                include_read: false,
                read_elsewhere_after: None,
                now_ms: now_ms(),
                max_messages: INBOX_PAGE,
                max_bytes: INBOX_PAGE_BYTES,
            })
        })
        .await
        .map(|p| {
            let messages: Vec<Value> = p.messages.iter().map(message_view).collect();
            json!({"messages": messages, "more": p.pending > 0, "pending": p.pending})
        }),
    }
    .map_err(|e| rpc::err(codes::INTERNAL_ERROR, e.to_string()))?;
    Ok(json!({"contents": [{"uri": uri, "mimeType": JSON, "text": body.to_string()}]}))
}
