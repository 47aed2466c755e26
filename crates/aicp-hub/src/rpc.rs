//! The JSON-RPC 2.0 pieces the hub writes: responses, errors (rmcp's
//! `ErrorData`, with codes from `aicp_proto::codes`) that always carry the
//! request's id, notifications, and tool results.

use serde_json::{Value, json};

pub use rmcp::model::ErrorData;

use aicp_proto::codes::{self, ErrorCode};
use aicp_proto::wire::{self, Id};

/// An error without data.
pub(crate) fn err(code: ErrorCode, message: impl Into<String>) -> ErrorData {
    ErrorData::new(code, message.into(), None)
}

pub(crate) fn invalid_params(message: impl Into<String>) -> ErrorData {
    err(codes::INVALID_PARAMS, message)
}

/// What the hub adds to rmcp's `ErrorData`: data in a chain, and the metrics outcome.
pub(crate) trait ErrorDataExt {
    fn with_data(self, data: Value) -> Self;
    fn outcome(&self) -> &'static str;
}

impl ErrorDataExt for ErrorData {
    fn with_data(mut self, data: Value) -> ErrorData {
        self.data = Some(data);
        self
    }

    fn outcome(&self) -> &'static str {
        if self.code == codes::RATE_LIMITED {
            "rate_limited"
        } else {
            "error"
        }
    }
}

// The envelopes are written by the builders both ends share (`aicp_proto::wire`);
// these take the hub's `Value` ids and params.

pub(crate) fn response(id: &Value, result: Value) -> String {
    match Id::from_value(id) {
        Some(id) => wire::response(&id, &result.to_string()),
        None => json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
    }
}

pub(crate) fn error(id: &Value, e: &ErrorData) -> String {
    wire::error(Id::from_value(id).as_ref(), e)
}

pub(crate) fn notification(method: &str, params: Value) -> String {
    wire::notification(method, Some(&params.to_string()))
}

/// A tool's result: the text block for the model plus the same as `structuredContent`.
/// Compact JSON: models read it as well as pretty JSON, and it is half the bytes on every hop.
pub(crate) fn tool_result(structured: Value, is_error: bool) -> Value {
    let text = structured.to_string();
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": is_error,
    })
}

/// A tool failure the model should read (not a protocol error).
pub(crate) fn tool_error(message: impl Into<String>, extra: Value) -> Value {
    let mut s = json!({"status": "error", "error": message.into()});
    if let (Some(o), Value::Object(more)) = (s.as_object_mut(), extra) {
        o.extend(more);
    }
    tool_result(s, true)
}
