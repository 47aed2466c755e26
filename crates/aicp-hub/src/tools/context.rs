//! Shared context: `share_context` (versioned, with an optional
//! compare-and-set `if_version`), `get_context`, `list_context` and
//! `delete_context`, durable in the store; every change notifies subscribers
//! of the resources it touches.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{iso8601, store_error, str_arg, timestamp, with_store};
use crate::presence::{SHARED_STATE_URI, context_uri};
use crate::rpc::{tool_error, tool_result};
use crate::store::{StateEntry, StoreError};
use crate::{Caller, Shared, now_ms};

/// Most keys one `list_context` returns; `more` says when others follow.
pub(crate) const LIST_CONTEXT_PAGE: usize = 200;

/// Tells subscribers a key changed, under its canonical (percent-encoded)
/// URI: sessions match subscriptions in that form, whatever spelling a client
/// subscribed with, and notify it in the spelling it used.
fn key_changed(shared: &Shared, key: &str) {
    shared.presence.changed(SHARED_STATE_URI);
    shared.presence.changed(&context_uri(key));
}

fn entry_json(e: &StateEntry, with_value: bool) -> Value {
    let mut v = json!({
        "context_key": e.key,
        "uri": context_uri(&e.key),
        "version": e.version,
        "size_bytes": e.size,
        "updated_by": e.updated_by,
        "updated_at": iso8601(e.updated_at),
    });
    if with_value {
        v["value"] = e.value.clone();
    }
    v
}

pub(super) async fn share_context(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
    let key = match str_arg(args, "context_key") {
        Ok(k) => k.to_owned(),
        Err(e) => return e,
    };
    let Some(value) = args.get("context_value").cloned() else {
        return tool_error("missing required argument `context_value`", json!({}));
    };
    let if_version = match args.get("if_version") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => {
                return tool_error(
                    "`if_version` must be a non-negative integer (0: only if the key does not exist yet)",
                    json!({}),
                );
            }
        },
    };
    let by = caller.identity.clone();
    let k = key.clone();
    match with_store(shared, move |s| {
        s.put_state_if(&k, &value, &by, now_ms(), if_version)
    })
    .await
    {
        Ok(version) => {
            key_changed(shared, &key);
            tool_result(
                json!({"status": "success", "context_key": key, "version": version, "uri": context_uri(&key), "shared_by": caller.identity, "timestamp": timestamp()}),
                false,
            )
        }
        Err(e @ StoreError::VersionMismatch { current, .. }) => tool_error(
            e.to_string(),
            json!({"context_key": key, "current_version": current}),
        ),
        Err(e) => store_error(&e),
    }
}

pub(super) async fn get_context(shared: &Arc<Shared>, args: &Value) -> Value {
    let key = match str_arg(args, "context_key") {
        Ok(k) => k.to_owned(),
        Err(e) => return e,
    };
    let k = key.clone();
    match with_store(shared, move |s| s.get_state_entry(&k)).await {
        Ok(Some(e)) => tool_result(entry_json(&e, true), false),
        Ok(None) => tool_error(
            format!(
                "no shared context under {key:?}; list_context shows the keys there are (share_context with if_version 0 creates it)"
            ),
            json!({"context_key": key, "current_version": 0}),
        ),
        Err(e) => store_error(&e),
    }
}

pub(super) async fn list_context(shared: &Arc<Shared>, args: &Value) -> Value {
    let opt = |name: &str| match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(tool_error(format!("`{name}` must be a string"), json!({}))),
    };
    let (prefix, after) = match (opt("prefix"), opt("after")) {
        (Ok(p), Ok(a)) => (p.unwrap_or_default(), a),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let p = prefix.clone();
    match with_store(shared, move |s| {
        s.list_state(&p, after.as_deref(), LIST_CONTEXT_PAGE)
    })
    .await
    {
        Ok((entries, more)) => {
            let next_after = entries.last().filter(|_| more).map(|e| e.key.clone());
            tool_result(
                json!({
                    "prefix": prefix,
                    "keys": entries.iter().map(|e| entry_json(e, false)).collect::<Vec<_>>(),
                    "more": more,
                    "next_after": next_after,
                    "note": format!("At most {LIST_CONTEXT_PAGE} keys per call; when more is true, call again with after=next_after. Read a value with get_context."),
                }),
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
                key_changed(shared, &key);
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
        let r = tool(
            &shared,
            &reader,
            "delete_context",
            json!({"context_key": "plan"}),
        )
        .await;
        assert_eq!(r["isError"], true, "{r}");
        assert_eq!(r["structuredContent"]["scope"], "share", "{r}");
    }

    #[tokio::test]
    async fn versions_count_writes_and_if_version_guards_them() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let put = |v: Value| json!({"context_key": "notes", "context_value": v});
        let with = |v: Value, iv: u64| json!({"context_key": "notes", "context_value": v, "if_version": iv});
        let r = tool(&shared, &alice, "share_context", with(json!("a"), 0)).await;
        assert_eq!(r["structuredContent"]["version"], 1, "{r}");
        // 0 means "only if absent": a second create is refused, naming the current version.
        let r = tool(&shared, &alice, "share_context", with(json!("b"), 0)).await;
        assert_eq!(r["isError"], true, "{r}");
        assert_eq!(r["structuredContent"]["current_version"], 1, "{r}");
        let why = r["structuredContent"]["error"].as_str().unwrap();
        assert!(
            why.contains("get_context") && why.contains("version 1"),
            "{why}"
        );
        let r = tool(&shared, &alice, "share_context", put(json!("c"))).await;
        assert_eq!(r["structuredContent"]["version"], 2, "{r}");
        let r = tool(&shared, &alice, "share_context", with(json!("d"), 1)).await;
        assert_eq!(r["isError"], true, "stale version: {r}");
        let r = tool(&shared, &alice, "share_context", with(json!("d"), 2)).await;
        assert_eq!(r["structuredContent"]["version"], 3, "{r}");
        let r = tool(
            &shared,
            &alice,
            "get_context",
            json!({"context_key": "notes"}),
        )
        .await;
        let sc = &r["structuredContent"];
        assert_eq!(
            (sc["value"].as_str(), sc["version"].as_u64()),
            (Some("d"), Some(3)),
            "{r}"
        );
        assert_eq!(sc["updated_by"], "alice");
        assert!(sc["updated_at"].as_str().unwrap().ends_with('Z'), "{r}");
        let r = tool(
            &shared,
            &alice,
            "get_context",
            json!({"context_key": "nope"}),
        )
        .await;
        assert_eq!(r["isError"], true, "{r}");
        // Deleted and created again, the key goes on from version 3: a write
        // based on what was read before the delete is still a conflict.
        tool(
            &shared,
            &alice,
            "delete_context",
            json!({"context_key": "notes"}),
        )
        .await;
        let r = tool(&shared, &alice, "share_context", with(json!("e"), 0)).await;
        assert_eq!(r["structuredContent"]["version"], 4, "{r}");
        let r = tool(&shared, &alice, "share_context", with(json!("stale"), 1)).await;
        assert_eq!(r["isError"], true, "{r}");
        let r = tool(&shared, &alice, "share_context", with(json!("f"), 4)).await;
        assert_eq!(r["structuredContent"]["version"], 5, "{r}");
    }

    #[tokio::test]
    async fn list_context_pages_and_filters_by_prefix() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        for i in 0..(LIST_CONTEXT_PAGE + 5) {
            let k = format!("plan/{i:04}");
            tool(
                &shared,
                &alice,
                "share_context",
                json!({"context_key": k, "context_value": i}),
            )
            .await;
        }
        tool(
            &shared,
            &alice,
            "share_context",
            json!({"context_key": "other", "context_value": "xyz"}),
        )
        .await;
        let r = tool(&shared, &alice, "list_context", json!({"prefix": "plan/"})).await;
        let sc = &r["structuredContent"];
        assert_eq!(
            sc["keys"].as_array().unwrap().len(),
            LIST_CONTEXT_PAGE,
            "{r}"
        );
        assert_eq!(sc["more"], true);
        let r = tool(
            &shared,
            &alice,
            "list_context",
            json!({"prefix": "plan/", "after": sc["next_after"]}),
        )
        .await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["keys"].as_array().unwrap().len(), 5, "{r}");
        assert_eq!(sc["more"], false);
        let r = tool(&shared, &alice, "list_context", json!({"prefix": "oth"})).await;
        let k = &r["structuredContent"]["keys"][0];
        assert_eq!(
            (
                k["context_key"].as_str(),
                k["size_bytes"].as_u64(),
                k["version"].as_u64()
            ),
            (Some("other"), Some(5), Some(1)),
            "{r}"
        );
        assert!(
            k.get("value").is_none(),
            "listings carry sizes, not values: {r}"
        );
    }
}
