//! Sending: `send_message`, and `deliver`, the one path by which every tool
//! that sends (route, orchestrate) stores a message with its AIXP envelope
//! and wakes the recipient.

use std::sync::Arc;

use serde_json::{Value, json};

use super::names::{known_identities, resolve_recipient, unknown_recipient};
use super::{iso8601, store_error, str_arg, with_store};
use crate::rpc::{tool_error, tool_result};
use crate::store::{Message, StoreError};
use crate::{Caller, Shared, now_ms};
use aicp_proto::aixp::{self, Incoming, Refused};

/// Why a delivery did not happen.
pub(super) enum NotDelivered {
    Refused(Refused),
    Store(StoreError),
}

impl NotDelivered {
    pub(super) fn into_result(self) -> Value {
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

pub(super) fn new_message_id() -> String {
    format!("msg-{:x}-{:016x}", now_ms(), fastrand::u64(..))
}

/// Stores one message with its envelope and wakes the recipient.
pub(super) async fn deliver(
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

pub(super) async fn send_message(
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
    // A reply_to naming no message would thread an answer to nothing (and a
    // plan's subtask would never see it): refuse it, saying why.
    if let Some(rt) = reply_to.clone() {
        match with_store(shared, move |s| s.message_known(&rt, now_ms())).await {
            Ok(true) => {}
            Ok(false) => {
                return tool_error(
                    format!(
                        "reply_to {:?} names no message this hub stored (or it expired); copy the id of the message you answer from read_inbox, or leave reply_to out. Nothing was sent",
                        reply_to.as_deref().unwrap_or_default()
                    ),
                    json!({}),
                );
            }
            Err(e) => return store_error(&e),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::*;

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
}
