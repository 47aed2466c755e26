//! `route_to_agent`: picks the recipient among the capabilities people
//! actually declared (online first, then known offline people) and delivers;
//! when nobody fits it says so and lists who is there, never inventing anyone.

use std::sync::Arc;

use serde_json::{Value, json};

use super::messages::deliver;
use super::names::{describe, people, presence_word};
use super::{store_error, str_arg, str_list, timestamp};
use crate::routing;
use crate::rpc::tool_result;
use crate::{Caller, Shared};
use aicp_proto::aixp::Incoming;

pub(super) async fn route_to_agent(
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
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return e,
    };
    let everyone = match people(shared, &caller.identity).await {
        Ok(p) => p,
        Err(e) => return store_error(&e),
    };
    let ts = timestamp();
    let best = routing::best_match(&everyone, &message, &targets, |id| {
        shared.presence.routed_load(id)
    })
    .map(|(c, m)| (c.clone(), m));
    let Some((best, matched)) = best else {
        let listing: Vec<String> = everyone
            .iter()
            .map(|c| {
                format!(
                    "{} ({}; {})",
                    c.identity,
                    if c.capabilities.is_empty() {
                        "nothing declared".to_owned()
                    } else {
                        c.capabilities.join(", ")
                    },
                    presence_word(c.online)
                )
            })
            .collect();
        let sought = if targets.is_empty() {
            "a capability this request mentions".to_owned()
        } else {
            targets.join(", ")
        };
        let suggestion = if everyone.is_empty() {
            "Nobody else has ever connected to this hub, so there is nobody to send it to. Nothing was delivered.".to_owned()
        } else {
            format!(
                "Nothing was delivered: nobody declared {sought}. People on the hub: {}. If one of them should do it anyway, send it yourself with send_message(to=<their name>, text=<the request>).",
                super::names::list_names(&listing)
            )
        };
        return tool_result(
            json!({
                "status": "no_match",
                "agent": null,
                "delivered": false,
                "target_capabilities": targets,
                "agents": describe(&everyone),
                "suggestion": suggestion,
                "timestamp": ts,
            }),
            false,
        );
    };
    let mut text = match args.get("context") {
        Some(ctx) if !ctx.is_null() => format!("{message}\n\nContext: {ctx}"),
        _ => message,
    };
    text.push_str(&format!(
        "\n\n(Routed to you by the hub for {} from {}. When done, reply with send_message(to=\"{}\", text=<your answer>, reply_to=<the id of this message>).)",
        matched.join(", "),
        caller.identity,
        caller.identity
    ));
    match deliver(shared, caller, incoming, &best.identity, text, None).await {
        Ok(m) => {
            shared.presence.routed_to(&best.identity);
            let presence = presence_word(best.online);
            tool_result(
                json!({
                    "status": "routed",
                    "agent": best.identity,
                    "presence": presence,
                    "online": best.online,
                    "delivered": true,
                    "message_id": m.id,
                    "agent_capabilities": best.capabilities,
                    "matched_capabilities": matched,
                    "target_capabilities": targets,
                    "suggestion": format!(
                        "Delivered to {} ({presence}; declared {}). {} To wait for the answer, call read_inbox with wait_ms; they were asked to answer with reply_to {}.",
                        best.identity,
                        best.capabilities.join(", "),
                        if best.online { "They are connected now." } else { "They will see it in their inbox when they next connect." },
                        m.id
                    ),
                    "aixp": m.aixp,
                    "timestamp": ts,
                }),
                false,
            )
        }
        Err(e) => e.into_result(),
    }
}
