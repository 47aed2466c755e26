//! `route_to_agent`: picks the recipient by declared capabilities and delivers.

use std::sync::Arc;

use serde_json::{Value, json};

use super::messages::deliver;
use super::{str_arg, str_list, timestamp};
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
