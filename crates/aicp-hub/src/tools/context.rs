//! Shared context: `share_context` and `delete_context`, durable in the
//! store; every change notifies subscribers of the resources it touches.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{store_error, str_arg, timestamp, with_store};
use crate::presence::{SHARED_STATE_URI, context_uri};
use crate::rpc::{tool_error, tool_result};
use crate::{Caller, Shared, now_ms};

pub(super) async fn share_context(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
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
pub(super) async fn delete_context(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::*;

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
