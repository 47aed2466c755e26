//! Who is there: `whoami` and `list_agents`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::iso8601;
use crate::rpc::tool_result;
use crate::{Caller, Shared};

pub(super) fn whoami(shared: &Arc<Shared>, caller: &Caller) -> Value {
    let capabilities = shared
        .presence
        .capabilities_of_connection(caller.connection)
        .unwrap_or_default();
    tool_result(
        json!({"identity": caller.identity, "connection": caller.connection, "scopes": caller.scopes.to_claim(), "capabilities": capabilities}),
        false,
    )
}

pub(super) fn list_agents(shared: &Arc<Shared>) -> Value {
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
