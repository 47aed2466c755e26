//! AIXP on the wire: reading a `tools/call` for the guard, adding the
//! envelope to it, writing a refusal as a tool result the model reads, and
//! screening messages a hub delivers (expired ones are dropped, the hop
//! counts of the rest are learnt). The decisions are in [`crate::guard`];
//! this module only reads and writes JSON.

use std::collections::BTreeMap;

use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};

use aicp_proto::aixp::{ENVELOPE_KEY, Envelope, Incoming, REFUSAL_KEY};
use aicp_proto::wire::{self, Id};

use crate::guard::{Call, Guard, Now, Refusal};

/// What the guard reads from a `tools/call`.
#[derive(Debug)]
pub struct ToolCall {
    pub tool: String,
    pub arguments: Option<Value>,
    pub incoming: Incoming,
}

impl ToolCall {
    /// What the guard needs to decide on this call; `read_only` is what the
    /// hub declared of the tool (unknown tools count as writes).
    pub fn guard_call(&self, read_only: bool) -> Call<'_> {
        let args = self.arguments.as_ref();
        let string = |key: &str| args.and_then(|a| a.get(key)).and_then(Value::as_str);
        Call {
            tool: &self.tool,
            fingerprint: crate::guard::fingerprint(&self.tool, args),
            incoming: self.incoming.clone(),
            refers_to: crate::guard::referenced_messages(args),
            to: string("to"),
            // What a sending tool sends: send_message's text, route_to_agent's
            // message, orchestrate_collaboration's task (or a look-alike's).
            text: string("text")
                .or_else(|| string("message"))
                .or_else(|| string("task")),
            read_only,
        }
    }
}

pub fn read_tool_call(params: &RawValue) -> Option<ToolCall> {
    let params: Value = serde_json::from_str(params.get()).ok()?;
    let tool = params.get("name")?.as_str()?.to_owned();
    let incoming = Incoming::from_params(&params);
    Some(ToolCall {
        tool,
        arguments: params.get("arguments").cloned(),
        incoming,
    })
}

/// The `readOnlyHint` of every tool a `tools/list` result declares (false when
/// absent or not a boolean): what the guard treats as a read.
pub fn read_only_hints(result: &str) -> Vec<(String, bool)> {
    let Ok(value) = serde_json::from_str::<Value>(result) else {
        return Vec::new();
    };
    value["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let name = t["name"].as_str()?.to_owned();
            Some((name, t["annotations"]["readOnlyHint"] == json!(true)))
        })
        .collect()
}

/// The request again, with `params._meta["aicp/aixp"]` set to `envelope`.
/// Every other value keeps its original text: only the top-level order of
/// keys in `params` and `_meta` may change.
pub fn with_envelope(id: &Id, params: &RawValue, envelope: &Envelope) -> Option<String> {
    let mut params: BTreeMap<String, Box<RawValue>> = serde_json::from_str(params.get()).ok()?;
    let mut meta: BTreeMap<String, Box<RawValue>> = match params.get("_meta") {
        Some(m) => serde_json::from_str(m.get()).ok()?,
        None => BTreeMap::new(),
    };
    meta.insert(ENVELOPE_KEY.to_owned(), to_raw_value(envelope).ok()?);
    params.insert("_meta".to_owned(), to_raw_value(&meta).ok()?);
    Some(wire::request(
        id,
        "tools/call",
        &serde_json::to_string(&params).ok()?,
    ))
}

/// A refused call as a tool result with `isError: true`, so the model reads
/// why (a protocol error would read as a broken connection).
pub fn refusal_result(id: &Id, refusal: &Refusal) -> String {
    let result = json!({
        "content": [{ "type": "text", "text": refusal.message }],
        "isError": true,
        "_meta": { REFUSAL_KEY: refusal },
    });
    wire::response(id, &result.to_string())
}

/// Looks at a `tools/call` result for messages a hub delivered
/// (`structuredContent.messages[*].aixp`): `learn` is called with each live
/// envelope and its message's `from` and `text` (empty when absent); expired messages are removed, from `structuredContent` and from
/// any text block that holds the same JSON. Returns the new result only if
/// something was removed.
pub fn screen_delivered(
    result: &str,
    now: Now,
    mut learn: impl FnMut(&Envelope, &str, &str),
) -> Option<String> {
    // Cheap test first: most results carry no envelopes at all.
    if !result.contains("\"aixp\"") {
        return None;
    }
    let mut value: Value = serde_json::from_str(result).ok()?;
    let mut expired: Vec<Value> = Vec::new();
    let messages = value
        .pointer_mut("/structuredContent/messages")?
        .as_array_mut()?;
    messages.retain(|m| {
        let Some(envelope) = m
            .get("aixp")
            .and_then(|e| serde_json::from_value::<Envelope>(e.clone()).ok())
        else {
            return true;
        };
        if Guard::is_live(&envelope, now) {
            let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
            learn(&envelope, field("from"), field("text"));
            true
        } else {
            expired.push(m.get("id").cloned().unwrap_or(Value::Null));
            false
        }
    });
    if expired.is_empty() {
        return None;
    }
    tracing::info!(
        count = expired.len(),
        "dropped expired messages the hub delivered"
    );
    for block in value.get_mut("content")?.as_array_mut()? {
        let Some(Value::String(text)) = block.get_mut("text") else {
            continue;
        };
        let Ok(mut inner) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if let Some(list) = inner.get_mut("messages").and_then(Value::as_array_mut) {
            list.retain(|m| !expired.contains(m.get("id").unwrap_or(&Value::Null)));
            *text = inner.to_string();
        }
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicp_proto::aixp::{AIXP_VERSION, AixpStatus};

    fn envelope(id: &str, hops: u32, expires_at: u64) -> Envelope {
        Envelope {
            version: AIXP_VERSION.into(),
            id: id.into(),
            hops,
            origin: "o".into(),
            expires_at,
            ..Envelope::default()
        }
    }

    #[test]
    fn envelope_is_added_and_arguments_keep_their_text() {
        let id = Id::from_value(&json!(4)).unwrap();
        let params = RawValue::from_string(
            r#"{"name":"t","arguments":{"big":12345678901234567890123,"f":0.10000000000000001},"_meta":{"progressToken":"p"}}"#.into(),
        )
        .unwrap();
        let text = with_envelope(&id, &params, &envelope("e1", 2, 99)).unwrap();
        assert!(
            text.contains(r#""arguments":{"big":12345678901234567890123,"f":0.10000000000000001}"#),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], 4);
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["params"]["_meta"]["progressToken"], "p");
        assert_eq!(v["params"]["_meta"][ENVELOPE_KEY]["hops"], 2);
        assert_eq!(v["params"]["_meta"][ENVELOPE_KEY]["expiresAt"], 99);
        let back =
            read_tool_call(&RawValue::from_string(v["params"].to_string()).unwrap()).unwrap();
        assert_eq!(back.tool, "t");
        assert_eq!(back.incoming.id.as_deref(), Some("e1"));
    }

    #[test]
    fn refusal_is_a_tool_error_with_structured_detail() {
        let id = Id::from_value(&json!("r")).unwrap();
        let refusal = Refusal {
            aixp_status: AixpStatus::COMMUNICATION,
            limit: "repeat_limit",
            limit_value: 5.0,
            current: 6.0,
            resets_in_ms: Some(1200),
            message: "stop repeating".into(),
        };
        let v: Value = serde_json::from_str(&refusal_result(&id, &refusal)).unwrap();
        assert_eq!(v["result"]["isError"], true);
        assert_eq!(v["result"]["content"][0]["text"], "stop repeating");
        let detail = &v["result"]["_meta"][REFUSAL_KEY];
        assert_eq!(detail["aixpStatus"], 5005);
        assert_eq!(detail["limit"], "repeat_limit");
        assert_eq!(detail["limitValue"], 5.0);
        assert_eq!(detail["current"], 6.0);
        assert_eq!(detail["resetsInMs"], 1200);
        serde_json::from_value::<rmcp::model::CallToolResult>(v["result"].clone()).unwrap();
    }

    #[test]
    fn expired_deliveries_are_removed_and_live_ones_learnt() {
        let now = Now {
            mono: tokio::time::Instant::now(),
            wall_ms: 1000,
        };
        let live = json!({"id": "m1", "text": "hi", "aixp": envelope("m1", 3, 2000)});
        let dead = json!({"id": "m2", "text": "old", "aixp": envelope("m2", 1, 1000)});
        let inner = json!({"messages": [live, dead]});
        let result = json!({
            "content": [{"type": "text", "text": inner.to_string()}],
            "structuredContent": inner,
        });
        let mut learnt = Vec::new();
        let fixed = screen_delivered(&result.to_string(), now, |e, _, text| {
            learnt.push((e.id.clone(), e.hops, text.to_owned()))
        })
        .unwrap();
        assert_eq!(learnt, [("m1".to_owned(), 3, "hi".to_owned())]);
        let v: Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(
            v["structuredContent"]["messages"].as_array().unwrap().len(),
            1
        );
        let text: Value = serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text["messages"][0]["id"], "m1");
        assert_eq!(text["messages"].as_array().unwrap().len(), 1);
        // Nothing expired: no rewrite, but still learnt.
        let only_live = json!({"structuredContent": {"messages": [{"id": "m1", "aixp": envelope("m1", 3, 2000)}]}});
        assert!(screen_delivered(&only_live.to_string(), now, |_, _, _| {}).is_none());
        assert!(screen_delivered(r#"{"content":[]}"#, now, |_, _, _| panic!()).is_none());
    }
}
