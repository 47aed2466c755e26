//! Sending: `send_message`, and `deliver`, the one path by which every tool
//! that sends (route, orchestrate) stores a message with its AIXP envelope
//! and wakes the recipient. A reply continues the thread it answers: a turn
//! of a conversation when it goes back to whoever wrote, a hop when it hands
//! the work to someone else (docs/limits.md).

use std::sync::Arc;

use serde_json::{Value, json};

use super::names::{known_identities, resolve_recipient, unknown_recipient};
use super::{iso8601, offline_note, store_error, str_arg, with_store};
use crate::rpc::{tool_error, tool_result};
use crate::store::{Message, StoreError};
use crate::{Caller, Shared, now_ms};
use aicp_proto::aixp::{self, Bounds, Envelope, Incoming, Refused, Step};
use aicp_proto::conversation;

/// Why a delivery did not happen.
pub(super) enum NotDelivered {
    Refused(Refused),
    Store(StoreError),
}

impl NotDelivered {
    pub(super) fn into_result(self) -> Value {
        match self {
            NotDelivered::Refused(r @ (Refused::HopLimit { .. } | Refused::TurnLimit { .. })) => {
                tool_error(
                    r.to_string(),
                    json!({"aixpStatus": aicp_proto::aixp::AixpStatus::COMMUNICATION}),
                )
            }
            NotDelivered::Refused(r) => tool_error(r.to_string(), json!({})),
            NotDelivered::Store(e) => store_error(&e),
        }
    }
}

/// The refusal of a courtesy answering a courtesy: the conversation is over.
fn courtesy_refused(parent_text: &str) -> Value {
    let quoted: String = parent_text.chars().take(80).collect();
    tool_error(
        format!(
            "Not sent: the message you are answering ({quoted:?}) only acknowledges, and so does your reply. \
             The conversation has ended; an acknowledgement needs no answer. Go on with your task or report to your user."
        ),
        json!({"aixpStatus": aicp_proto::aixp::AixpStatus::COMMUNICATION, "limit": "courtesy"}),
    )
}

pub(super) fn new_message_id() -> String {
    format!("msg-{:x}-{:016x}", now_ms(), fastrand::u64(..))
}

/// The hub's bounds on every chain and conversation.
pub(super) fn bounds(shared: &Shared) -> Bounds {
    Bounds {
        max_hops: shared.settings.max_hops,
        max_turns: shared.settings.max_turns,
    }
}

/// Stores one message that starts work or hands it on (a hop) and wakes the recipient.
pub(super) async fn deliver(
    shared: &Arc<Shared>,
    caller: &Caller,
    incoming: &Incoming,
    to: &str,
    text: String,
    reply_to: Option<String>,
) -> Result<Message, NotDelivered> {
    deliver_in_thread(
        shared,
        caller,
        incoming,
        to,
        text,
        reply_to,
        None,
        Step::Handoff,
    )
    .await
}

/// The live message `sender` received lately that `text` passes on, if any
/// (the sender's tracker is filled from the store on first use).
async fn forwarded_by(shared: &Arc<Shared>, sender: &str, text: &str) -> Option<Envelope> {
    if !shared.received.is_loaded(sender) {
        let who = sender.to_owned();
        let recent = with_store(shared, move |s| {
            s.recent_received(&who, now_ms(), crate::forwards::PER_IDENTITY)
        })
        .await
        .unwrap_or_default();
        shared
            .received
            .load(sender, recent.iter().map(|m| (m.text.as_str(), &m.aixp)));
    }
    shared.received.forwarded(sender, text, now_ms())
}

/// Stores one message continuing `parent` (the answered message's envelope,
/// when the hub still has it) by `step`, and wakes the recipient.
#[allow(clippy::too_many_arguments)]
async fn deliver_in_thread(
    shared: &Arc<Shared>,
    caller: &Caller,
    incoming: &Incoming,
    to: &str,
    text: String,
    reply_to: Option<String>,
    parent: Option<&Envelope>,
    step: Step,
) -> Result<Message, NotDelivered> {
    let now = now_ms();
    let id = new_message_id();
    // Text that carries a message the sender received passes that message on,
    // named or not: a handoff from the further along of the two.
    let forwarded = forwarded_by(shared, &caller.identity, &text).await;
    let (parent, step) = match &forwarded {
        Some(f) if parent.is_none_or(|p| p.hops <= f.hops) => (Some(f), Step::Handoff),
        Some(_) => (parent, Step::Handoff),
        None => (parent, step),
    };
    let env = aixp::next_envelope(
        incoming,
        parent,
        step,
        id.clone(),
        &caller.identity,
        now,
        shared.settings.message_ttl_ms,
        bounds(shared),
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
        read_at: None,
        read_by: None,
    };
    let m = msg.clone();
    msg.seq = with_store(shared, move |s| s.push_message(&m))
        .await
        .map_err(NotDelivered::Store)?;
    shared.metrics.messages_delivered.inc();
    shared.received.delivered(to, &msg.text, &msg.aixp);
    shared.presence.inbox_changed(to);
    Ok(msg)
}

/// What a `reply_to` names.
enum Answered {
    Stored(Box<Message>),
    /// A plan's subtask whose message is gone: answerable, with no thread to continue.
    Subtask,
    Unknown,
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
    // The answered message, read once: it decides turn or hop. A reply_to
    // naming no message would thread an answer to nothing (and a plan's
    // subtask would never see it): refused, saying why.
    let parent = match reply_to.clone() {
        None => None,
        Some(rt) => {
            let found = with_store(shared, move |s| {
                let now = now_ms();
                match s.get_message(&rt, now)? {
                    Some(m) => Ok(Answered::Stored(Box::new(m))),
                    // A plan's subtask id stays answerable for the plan's life.
                    None if s.message_known(&rt, now)? => Ok(Answered::Subtask),
                    None => Ok(Answered::Unknown),
                }
            })
            .await;
            match found {
                Ok(Answered::Stored(m)) => Some(*m),
                Ok(Answered::Subtask) => None,
                Ok(Answered::Unknown) => {
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
    };
    let step = parent.as_ref().map_or(Step::Handoff, |p| {
        aixp::step_of(&p.from, &p.to, &caller.identity, &to)
    });
    if let Some(p) = &parent
        && step == Step::Turn
        && conversation::is_idle_exchange(&p.text, &text)
    {
        return courtesy_refused(&p.text);
    }
    let parent_env = parent.as_ref().map(|p| &p.aixp);
    match deliver_in_thread(
        shared, caller, incoming, &to, text, reply_to, parent_env, step,
    )
    .await
    {
        Ok(m) => tool_result(
            {
                let online = shared.presence.is_connected(&m.to);
                let mut r = json!({"status": "delivered", "message_id": m.id, "to": m.to, "recipient_known": true, "recipient_online": online, "aixp": m.aixp, "timestamp": iso8601(m.created_at)});
                if !online {
                    r["note"] = json!(offline_note(shared, &m.to));
                }
                r
            },
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

    /// Sends `text` from `from` to `to` answering `reply_to`; the result's structuredContent.
    async fn reply(
        shared: &Arc<Shared>,
        from: &Caller,
        to: &str,
        text: &str,
        reply_to: &str,
    ) -> Value {
        tool(
            shared,
            from,
            "send_message",
            json!({"to": to, "text": text, "reply_to": reply_to}),
        )
        .await
    }

    /// Alice asks bob something; then they answer each other `turns` times,
    /// each reply naming the message before it. The replies' results, in order.
    async fn converse(
        shared: &Arc<Shared>,
        alice: &Caller,
        bob: &Caller,
        turns: u32,
    ) -> Vec<Value> {
        let first = tool(
            shared,
            alice,
            "send_message",
            json!({"to": "bob", "text": "Shall we plan the release?"}),
        )
        .await;
        let mut last = first["structuredContent"]["message_id"].clone();
        let mut results = Vec::new();
        for turn in 1..=turns {
            let (me, other) = if turn % 2 == 1 {
                (bob, "alice")
            } else {
                (alice, "bob")
            };
            let text = format!("point {turn}: the changelog needs item {turn}");
            let r = reply(shared, me, other, &text, last.as_str().unwrap_or_default()).await;
            if r["isError"] == false {
                last = r["structuredContent"]["message_id"].clone();
            }
            results.push(r);
        }
        results
    }

    #[tokio::test]
    async fn a_long_conversation_is_turns_not_hops_and_courtesy_ends_it() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        let carol = connect(&shared, "carol", Scopes::all());
        // Forty replies back and forth: far past max_hops (16 here), never refused.
        let replies = converse(&shared, &alice, &bob, 40).await;
        for (turn, r) in (1u64..).zip(&replies) {
            assert_eq!(r["isError"], false, "turn {turn}: {r}");
            let env = &r["structuredContent"]["aixp"];
            assert_eq!(
                (env["hops"].as_u64(), env["turns"].as_u64()),
                (Some(1), Some(turn)),
                "{r}"
            );
        }
        let last = replies[39]["structuredContent"]["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        // Handing the thread to a third party is a hop, and restarts the turns.
        let r = reply(
            &shared,
            &alice,
            "carol",
            "carol, can you take the changelog?",
            &last,
        )
        .await;
        assert_eq!(r["structuredContent"]["aixp"]["hops"], 2, "{r}");
        assert!(r["structuredContent"]["aixp"].get("turns").is_none(), "{r}");
        let handed = r["structuredContent"]["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        // Thanks once is fine; thanks for thanks is refused, and nothing is stored.
        let r = reply(&shared, &carol, "alice", "Sure, thanks!", &handed).await;
        assert_eq!(r["isError"], false, "{r}");
        let thanks = r["structuredContent"]["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = reply(&shared, &alice, "carol", "You're welcome!", &thanks).await;
        assert_eq!(r["isError"], true, "{r}");
        assert_eq!(r["structuredContent"]["limit"], "courtesy", "{r}");
        assert!(
            r["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("needs no answer"),
            "{r}"
        );
        let carols = shared.store.read_inbox("carol", 0, now_ms(), 100).unwrap();
        assert_eq!(carols.len(), 1, "only the handoff reached carol");
    }

    #[tokio::test]
    async fn the_turn_limit_refuses_the_reply_after_it() {
        let mut shared = hub(StoreLimits::default());
        Arc::get_mut(&mut shared).unwrap().settings.max_turns = 3;
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        let replies = converse(&shared, &alice, &bob, 4).await;
        for r in &replies[..3] {
            assert_eq!(r["isError"], false, "{r}");
        }
        let r = &replies[3];
        assert_eq!(r["isError"], true, "{r}");
        assert_eq!(r["structuredContent"]["aixpStatus"], 5005, "{r}");
        assert!(
            r["content"][0]["text"].as_str().unwrap().contains("turn 4"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn a_calls_short_time_to_live_is_not_the_messages_lifetime() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        connect(&shared, "bob", Scopes::all());
        let now = now_ms();
        // A bridge stamps its call with five minutes (or, here, two seconds) to live.
        let params = json!({"name": "send_message", "arguments": {"to": "bob", "text": "see you after lunch"},
            "_meta": {"aicp/aixp": {"id": "c1", "hops": 0, "origin": "bridge-a", "expiresAt": now + 2_000}}});
        let r = call(&shared, &alice, &params).await.unwrap();
        let expires = r["structuredContent"]["aixp"]["expiresAt"]
            .as_u64()
            .unwrap();
        assert!(expires >= now + shared.settings.message_ttl_ms, "{r}");
        // Three hours later by the store's clock the message is still there; after the retention it is not.
        let later = now + 3 * 3600 * 1000;
        assert_eq!(
            shared.store.read_inbox("bob", 0, later, 10).unwrap().len(),
            1
        );
        assert_eq!(
            shared
                .store
                .read_inbox("bob", 0, expires, 10)
                .unwrap()
                .len(),
            0
        );
    }
}
