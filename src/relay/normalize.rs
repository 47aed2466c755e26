//! What the relay repairs in a hub's messages before the host sees them. Each
//! rule is named, applied only where its symptom appears, and documented in
//! docs/relay.md; everything else passes through byte for byte.

use serde_json::Value;

use aicp_proto::wire::Method;

/// A rule that changed a message, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `prompts/get` message content given as a bare string is wrapped as a text block.
    BareStringPromptContent,
    /// A hub that advertises logging but rejects `logging/setLevel`: the level
    /// is advisory, so the host gets an empty result instead of an error.
    RejectedSetLevel,
    /// A message without `"jsonrpc": "2.0"` gets it.
    MissingVersion,
}

/// Wraps bare-string `content` in `prompts/get` messages. Returns the new
/// result text if anything changed.
pub fn prompt_result(result: &str) -> Option<String> {
    let mut value: Value = serde_json::from_str(result).ok()?;
    let messages = value.get_mut("messages")?.as_array_mut()?;
    let mut changed = false;
    for message in messages {
        if let Some(content) = message.get_mut("content")
            && let Value::String(text) = content
        {
            *content = serde_json::json!({ "type": "text", "text": std::mem::take(text) });
            changed = true;
        }
    }
    changed.then(|| value.to_string())
}

/// Decides whether a hub error answering `method` is replaced by a result.
pub fn error_to_result(method: Method) -> Option<(&'static str, Rule)> {
    match method {
        Method::LoggingSetLevel => Some(("{}", Rule::RejectedSetLevel)),
        _ => None,
    }
}

/// Adds the missing `"jsonrpc":"2.0"` member to an object's text.
pub fn add_version(text: &str) -> String {
    let body = text
        .trim_start()
        .strip_prefix('{')
        .unwrap_or(text)
        .trim_start();
    if body.starts_with('}') {
        format!("{{\"jsonrpc\":\"2.0\"{body}")
    } else {
        format!("{{\"jsonrpc\":\"2.0\",{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_only_bare_string_content() {
        let raw = r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":{"type":"text","text":"ok"}}],"description":"d"}"#;
        let fixed: Value = serde_json::from_str(&prompt_result(raw).unwrap()).unwrap();
        assert_eq!(
            fixed["messages"][0]["content"],
            serde_json::json!({"type":"text","text":"hi"})
        );
        assert_eq!(fixed["messages"][1]["content"]["text"], "ok");
        assert_eq!(fixed["description"], "d");
        let proper = r#"{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}]}"#;
        assert!(prompt_result(proper).is_none());
    }

    #[test]
    fn adds_version_to_objects() {
        let v: Value = serde_json::from_str(&add_version(r#" { "id": 1, "result": {} }"#)).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], 1);
        let v: Value = serde_json::from_str(&add_version("{}")).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
    }
}
