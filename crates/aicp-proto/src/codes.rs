//! Every JSON-RPC error code either end writes, in one list: the spec's and
//! MCP's (re-exported from rmcp, whose `ErrorCode` both ends use) and ours,
//! which sit in the implementation-defined range -32000..=-32099. A client
//! branches on these numbers; the message says the rest in words.

pub use rmcp::model::ErrorCode;

pub const PARSE_ERROR: ErrorCode = ErrorCode::PARSE_ERROR;
pub const INVALID_REQUEST: ErrorCode = ErrorCode::INVALID_REQUEST;
pub const METHOD_NOT_FOUND: ErrorCode = ErrorCode::METHOD_NOT_FOUND;
pub const INVALID_PARAMS: ErrorCode = ErrorCode::INVALID_PARAMS;
pub const INTERNAL_ERROR: ErrorCode = ErrorCode::INTERNAL_ERROR;
/// MCP: the resource does not exist.
pub const RESOURCE_NOT_FOUND: ErrorCode = ErrorCode::RESOURCE_NOT_FOUND;

/// Bridge: the hub is unreachable, or the connection was lost before it answered.
pub const HUB_UNAVAILABLE: ErrorCode = ErrorCode(-32000);
/// Bridge: no answer and no progress within `--request-timeout`.
pub const REQUEST_TIMEOUT: ErrorCode = ErrorCode(-32001);
/// Hub: the token lacks the scope this needs (`data.scope`).
pub const FORBIDDEN: ErrorCode = ErrorCode(-32003);
/// Hub: the message (or an id, a URI, an answer) is larger than the hub accepts (`data.maxBytes`).
pub const TOO_LARGE: ErrorCode = ErrorCode(-32013);
/// Hub: a per-connection limit is reached (requests in flight, subscriptions; `data.limit`).
pub const LIMIT_REACHED: ErrorCode = ErrorCode(-32014);
/// Hub: the connection's token bucket is empty (`data.retryAfterMs`).
pub const RATE_LIMITED: ErrorCode = ErrorCode(-32029);

/// Whether an error says the server failed (internal, or ours), as opposed to
/// the request being wrong: what a breaker counts.
pub fn is_server_failure(code: i64) -> bool {
    code == i64::from(INTERNAL_ERROR.0) || (-32099..=-32000).contains(&code)
}
