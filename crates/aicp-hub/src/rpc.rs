//! The JSON-RPC 2.0 pieces the hub writes: responses, errors that always
//! carry the request's id, and notifications. Error codes are the spec's
//! plus the hub's own, each named here.

use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP: the resource does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// The hub's own: the connection's token bucket is empty (data: retryAfterMs).
pub const RATE_LIMITED: i64 = -32029;
/// The hub's own: the message is larger than the hub accepts (data: maxBytes).
pub const TOO_LARGE: i64 = -32013;
/// The hub's own: a per-connection limit is reached (requests in flight,
/// subscriptions); the message and `data.limit` say the number.
pub const LIMIT_REACHED: i64 = -32014;
/// The hub's own: the token lacks the scope this needs (data: scope).
pub const FORBIDDEN: i64 = -32003;
/// The hub's own: the hub is shutting down and takes no new requests.
pub const SHUTTING_DOWN: i64 = -32010;

#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }

    pub fn outcome(&self) -> &'static str {
        if self.code == RATE_LIMITED {
            "rate_limited"
        } else {
            "error"
        }
    }
}

pub fn response(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

pub fn error(id: &Value, e: &RpcError) -> String {
    let mut err = json!({"code": e.code, "message": e.message});
    if let Some(d) = &e.data {
        err["data"] = d.clone();
    }
    json!({"jsonrpc": "2.0", "id": id, "error": err}).to_string()
}

pub fn notification(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

/// A tool's result: the text block for the model plus the same as `structuredContent`.
/// Compact JSON: models read it as well as pretty JSON, and it is half the bytes on every hop.
pub fn tool_result(structured: Value, is_error: bool) -> Value {
    let text = structured.to_string();
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": is_error,
    })
}

/// A tool failure the model should read (not a protocol error).
pub fn tool_error(message: impl Into<String>, extra: Value) -> Value {
    let mut s = json!({"status": "error", "error": message.into()});
    if let (Some(o), Value::Object(more)) = (s.as_object_mut(), extra) {
        o.extend(more);
    }
    tool_result(s, true)
}
